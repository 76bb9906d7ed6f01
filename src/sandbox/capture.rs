//! The caller's side of a run's pipes: feeds stdin and the script body and
//! reads stdout and stderr concurrently (one `poll` loop, no threads) with
//! a byte cap each. Output is read straight into the result buffers; past
//! the cap it is read into a scratch buffer (allocated only then) and
//! dropped, so a child writing gigabytes neither blocks nor grows the
//! caller's memory.

use std::os::fd::{AsRawFd, OwnedFd};

/// The caller's pipe ends.
pub struct Pipes {
    /// Write end of the command's stdin (None: inherited or empty).
    pub stdin: Option<OwnedFd>,
    /// Write end of the script pipe.
    pub script: Option<OwnedFd>,
    /// Read end of stdout (None: inherited).
    pub stdout: Option<OwnedFd>,
    /// Read end of stderr (None: inherited).
    pub stderr: Option<OwnedFd>,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Captured {
    /// Up to the cap.
    pub stdout: Vec<u8>,
    /// Up to the cap.
    pub stderr: Vec<u8>,
    /// Either stream went past the cap.
    pub truncated: bool,
}

/// Largest single read (a default pipe holds 64 KiB).
const CHUNK: usize = 1 << 16;
/// First buffer size for an output stream.
const FIRST_CHUNK: usize = 4096;

/// Makes a pipe end the caller created non-blocking. A fresh pipe end has
/// no other status flag, so `F_SETFL` needs no `F_GETFL` first.
fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
}

struct Writer<'a> {
    fd: Option<OwnedFd>,
    data: &'a [u8],
}

impl Writer<'_> {
    /// Writes what the pipe takes; closes it when done or broken.
    fn pump(&mut self) {
        let Some(fd) = &self.fd else { return };
        while !self.data.is_empty() {
            // SAFETY: writing from a live slice to an fd we own.
            let n = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    self.data.as_ptr().cast(),
                    self.data.len().min(1 << 16),
                )
            };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return,
                    // EPIPE: the reader is gone; the rest is not wanted.
                    _ => break,
                }
            }
            self.data = &self.data[n as usize..];
        }
        self.fd = None;
    }
}

struct Reader {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Reader {
    /// Reads what is there; closes on EOF.
    fn pump(&mut self, discard: &mut Option<Box<[u8]>>) {
        let Some(fd) = &self.fd else { return };
        loop {
            let room = self.cap.saturating_sub(self.buf.len());
            let n = if room > 0 {
                // Straight into the buffer: grow it geometrically, never
                // past the cap.
                let want = room.min(self.buf.len().clamp(FIRST_CHUNK, CHUNK));
                self.buf.reserve(want);
                let spare = self.buf.spare_capacity_mut();
                let len = spare.len().min(room);
                // SAFETY: reading at most `len` bytes into the spare
                // capacity of the buffer, from an fd we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
                if n > 0 {
                    // SAFETY: the kernel initialised `n <= len` bytes of the
                    // spare capacity.
                    unsafe { self.buf.set_len(self.buf.len() + n as usize) };
                }
                n
            } else {
                let scratch = discard.get_or_insert_with(|| vec![0u8; CHUNK].into_boxed_slice());
                // SAFETY: reading into a live scratch buffer from an fd we own.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len())
                };
                if n > 0 {
                    self.truncated = true;
                }
                n
            };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return,
                    _ => break,
                }
            }
            if n == 0 {
                break;
            }
        }
        self.fd = None;
    }
}

/// Runs the pipe loop until both outputs are closed (every process holding
/// them is gone) and the inputs are written or refused.
pub fn pump(pipes: Pipes, stdin: &[u8], script: &[u8], cap: usize) -> Captured {
    let mut writers = [
        Writer {
            fd: pipes.stdin,
            data: stdin,
        },
        Writer {
            fd: pipes.script,
            data: script,
        },
    ];
    let mut readers = [pipes.stdout, pipes.stderr].map(|fd| Reader {
        fd,
        buf: Vec::new(),
        cap,
        truncated: false,
    });
    for w in writers.iter().filter_map(|w| w.fd.as_ref()) {
        set_nonblocking(w.as_raw_fd());
    }
    for r in readers.iter().filter_map(|r| r.fd.as_ref()) {
        set_nonblocking(r.as_raw_fd());
    }
    // A reader that exits early must not kill the caller with SIGPIPE.
    let _sigpipe = SigpipeBlock::new(writers.iter().any(|w| w.fd.is_some()));
    let mut discard = None;
    // Most inputs fit in the pipe: write them before the first poll.
    for w in writers.iter_mut() {
        w.pump();
    }
    loop {
        let mut pfds: [libc::pollfd; 4] = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 4];
        let mut n = 0;
        let wanted = writers
            .iter()
            .filter_map(|w| w.fd.as_ref().map(|fd| (fd, libc::POLLOUT)))
            .chain(
                readers
                    .iter()
                    .filter_map(|r| r.fd.as_ref().map(|fd| (fd, libc::POLLIN))),
            );
        for (pfd, (fd, events)) in pfds.iter_mut().zip(wanted) {
            *pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            };
            n += 1;
        }
        if n == 0 {
            break;
        }
        // SAFETY: poll on `n` initialised pollfds in a live array.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for w in writers.iter_mut() {
            w.pump();
        }
        for r in readers.iter_mut() {
            r.pump(&mut discard);
        }
    }
    // Close any pipe to a reader that never read it all.
    drop(writers);
    let [out, err] = readers;
    Captured {
        truncated: out.truncated || err.truncated,
        stdout: out.buf,
        stderr: err.buf,
    }
}

/// Blocks SIGPIPE for this thread while writing to pipes, then discards a
/// pending one and restores the mask.
struct SigpipeBlock {
    old: Option<libc::sigset_t>,
}

impl SigpipeBlock {
    fn new(active: bool) -> Self {
        if !active {
            return SigpipeBlock { old: None };
        }
        // SAFETY: sigset manipulation on live locals; pthread_sigmask on the
        // calling thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            SigpipeBlock { old: Some(old) }
        }
    }
}

impl Drop for SigpipeBlock {
    fn drop(&mut self) {
        let Some(old) = self.old else { return };
        // SAFETY: as in `new`; sigtimedwait with a zero timeout only
        // consumes a pending SIGPIPE of this thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
}
