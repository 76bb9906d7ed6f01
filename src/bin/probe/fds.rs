//! Using file descriptors the probe did not open: ones its caller left
//! open (inherited), read, written, or used as a directory to open from.
//! No path of the file itself is looked up, so a path rule never sees
//! these accesses; only closing such descriptors before the command
//! starts keeps them from it.

use std::io;
use std::os::fd::AsRawFd;

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  fd-read FD                  fd-write FD [TEXT]          fd-openat DIRFD NAME";

/// How much `fd-read` and `fd-openat` echo in "text".
const TEXT_MAX: usize = 4096;

fn fd(s: &str) -> Result<i32, String> {
    let n = args::count(s)?;
    i32::try_from(n).map_err(|_| format!("invalid fd {s:?}"))
}

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "fd-read" => {
            a.expect(1, 1, "FD")?;
            fd_read(fd(a.str(0)?)?)
        }
        "fd-write" => {
            a.expect(1, 2, "FD [TEXT]")?;
            let text = a
                .os(1)
                .map(|t| t.as_encoded_bytes())
                .unwrap_or(b"sandspec\n");
            fd_write(fd(a.str(0)?)?, text)
        }
        "fd-openat" => {
            a.expect(2, 2, "DIRFD NAME")?;
            let name = sys::cstring(a.os(1).map(|s| s.as_os_str()).unwrap_or_default())?;
            fd_openat(fd(a.str(0)?)?, &name)
        }
        _ => return Ok(None),
    }))
}

/// Reads `fd` to its end; (bytes, the first TEXT_MAX as lossy text).
fn read_to_end(fd: i32) -> io::Result<(i64, Value)> {
    let mut head = Vec::new();
    let mut total = 0i64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match sys::check(n as libc::c_long) {
            Ok(0) => break,
            Ok(n) => {
                let n = n as usize;
                let keep = n.min(TEXT_MAX.saturating_sub(head.len()));
                head.extend_from_slice(&buf[..keep]);
                total += n as i64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((
        total,
        Value::from(String::from_utf8_lossy(&head).into_owned()),
    ))
}

/// `fd-read FD`: read an already open descriptor to its end. value =
/// bytes, "text" = the first 4096.
pub fn fd_read(fd: i32) -> Report {
    match read_to_end(fd) {
        Ok((n, text)) => Report::ok("fd-read", Some(n)).with("text", text),
        Err(e) => Report::os_error("fd-read", &e),
    }
}

/// `fd-write FD [TEXT]`: write TEXT (default "sandspec\n") to an already
/// open descriptor. value = bytes written.
pub fn fd_write(fd: i32, text: &[u8]) -> Report {
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    match sys::check(n as libc::c_long) {
        Ok(n) => Report::ok("fd-write", Some(n)),
        Err(e) => Report::os_error("fd-write", &e),
    }
}

/// `fd-openat DIRFD NAME`: openat(DIRFD, NAME, O_RDONLY) relative to an
/// already open directory descriptor, then read the file. value = bytes,
/// "text" = the first 4096.
pub fn fd_openat(dirfd: i32, name: &std::ffi::CString) -> Report {
    const OP: &str = "fd-openat";
    // SAFETY: a valid C string; the result is checked.
    let ret = unsafe { libc::openat(dirfd, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let file = match sys::owned_fd(ret.into()) {
        Ok(f) => f,
        Err(e) => return Report::os_error(OP, &e),
    };
    match read_to_end(file.as_raw_fd()) {
        Ok((n, text)) => Report::ok(OP, Some(n)).with("text", text),
        Err(e) => Report::os_error(OP, &e),
    }
}
