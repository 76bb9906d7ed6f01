//! The terminal oracle: a pty the harness owns, which a driver gives the
//! command as its stdin and controlling terminal, as an interactive shell
//! would. After the run, whatever sits in the terminal's input queue is
//! what the next reader of the terminal (the shell, in real life) would
//! take for typed input: TIOCSTI pushes bytes there (CVE-2017-5226).
//!
//! The terminal is in raw mode from the start (no echo, no line editing,
//! no signal characters): an injected ^C must not signal anyone, and input
//! without a newline must still be readable. It is put back in raw mode
//! before the queue is read, in case the command changed it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::termios::{self, SetArg, SpecialCharacterIndices};

/// A harness-owned pty.
#[derive(Debug)]
pub struct Terminal {
    /// Kept open for the whole run: a pty whose master is closed hangs up
    /// its slave, and TIOCSTI then fails.
    master: OwnedFd,
    slave: OwnedFd,
    path: String,
}

/// What the terminal saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalInput {
    /// The bytes queued as input (at most [`KEEP`] of them kept).
    pub bytes: Vec<u8>,
    /// How many were queued.
    pub count: u64,
}

/// How many queued bytes are kept for the failure message.
pub const KEEP: usize = 256;

fn raw(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut t = termios::tcgetattr(fd)?;
    termios::cfmakeraw(&mut t);
    // Reads return at once, with whatever is queued.
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    termios::tcsetattr(fd, SetArg::TCSANOW, &t)?;
    Ok(())
}

impl Terminal {
    /// Opens a pty pair (both ends close-on-exec) in raw mode.
    pub fn open() -> io::Result<Terminal> {
        let fail = |e: nix::Error| io::Error::other(format!("failed to open a pty: {e}"));
        let pty = nix::pty::openpty(None, None).map_err(fail)?;
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd.as_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(fail)?;
        }
        raw(pty.slave.as_fd())
            .map_err(|e| io::Error::other(format!("failed to set the pty raw: {e}")))?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Terminal {
            master: pty.master,
            slave: pty.slave,
            path,
        })
    }

    /// The slave end: the command's terminal.
    pub fn slave(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }

    /// The slave's path (`/dev/pts/N`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Reads what is queued on the terminal's input side, then closes it.
    pub fn finish(self) -> TerminalInput {
        let mut out = TerminalInput::default();
        if raw(self.slave.as_fd()).is_err() {
            return out;
        }
        let mut buf = [0u8; 4096];
        loop {
            // VMIN = VTIME = 0: returns 0 at once when nothing is queued.
            match nix::unistd::read(self.slave.as_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.count += n as u64;
                    let room = KEEP.saturating_sub(out.bytes.len());
                    out.bytes.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        drop(self.master);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TIOCSTI as the probe does it: byte by byte into the slave.
    fn inject(fd: BorrowedFd<'_>, text: &[u8]) -> io::Result<()> {
        for b in text {
            // SAFETY: TIOCSTI reads one byte from the pointer we pass.
            let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSTI, b as *const u8) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    #[test]
    fn an_untouched_terminal_has_nothing_queued() {
        let t = Terminal::open().unwrap();
        assert!(t.path().starts_with("/dev/pts/"), "{}", t.path());
        assert_eq!(t.finish(), TerminalInput::default());
    }

    #[test]
    fn input_written_to_the_master_is_seen_as_queued() {
        let t = Terminal::open().unwrap();
        nix::unistd::write(&t.master, b"typed\n").unwrap();
        // The line discipline delivers asynchronously (a workqueue).
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got = t.finish();
        assert_eq!((got.count, got.bytes.as_slice()), (6, &b"typed\n"[..]));
    }

    #[test]
    fn injected_input_is_seen_when_tiocsti_is_allowed() {
        let t = Terminal::open().unwrap();
        match inject(t.slave(), b"id\n") {
            Ok(()) => {
                let got = t.finish();
                assert_eq!(got.bytes, b"id\n");
            }
            // Not our controlling terminal and no CAP_SYS_ADMIN, or
            // dev.tty.legacy_tiocsti = 0: nothing to see here.
            Err(e) => eprintln!("TIOCSTI refused ({e}); skipped"),
        }
    }
}
