//! Cancelling a run from outside: an interrupt (SIGINT, SIGTERM, SIGHUP in
//! the CLI), or a watchdog that gives up on a run.
//!
//! A [`Canceller`] is a connected pair of unix stream sockets. The run's
//! supervisor watches one end; [`Canceller::cancel`] writes one byte into
//! the other, the signal to forward. Supervisors only peek at the byte
//! (`MSG_PEEK`), so every run watching the same canceller sees it. The
//! supervisor sends it to the command's tree, waits up to the run's grace,
//! then kills and reaps everything, as on a deadline. `cancel` is one
//! `write(2)`: safe to call from a signal handler, and from any thread.
//!
//! Cancelling is sticky: the byte stays, so a run started with a cancelled
//! canceller is cancelled at once. Use one per run, or one for every run
//! an interrupt must stop.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// A handle that cancels the runs it is given to.
#[derive(Debug, Clone)]
pub struct Canceller {
    inner: Arc<Pipe>,
}

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Canceller {
    /// A fresh canceller (the writing end non-blocking, so that `cancel`
    /// never blocks).
    pub fn new() -> std::io::Result<Canceller> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (read, write) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Canceller {
            inner: Arc::new(Pipe { read, write }),
        })
    }

    /// Cancels: the tree of every run given this canceller gets `signal`
    /// (SIGTERM when it is not a signal number), then SIGKILL after the
    /// grace. Async-signal-safe.
    pub fn cancel(&self, signal: i32) {
        let byte = u8::try_from(signal).unwrap_or(libc::SIGTERM as u8);
        // SAFETY: write of one byte from a live local to a socket we own;
        // a full buffer (EAGAIN) already holds a cancel.
        unsafe { libc::write(self.inner.write.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }

    /// The raw write end, for a signal handler that cannot reach the
    /// `Canceller` (write one byte, the signal number, to it).
    pub fn raw_write_fd(&self) -> i32 {
        self.inner.write.as_raw_fd()
    }

    pub(crate) fn read_fd(&self) -> i32 {
        self.inner.read.as_raw_fd()
    }
}
