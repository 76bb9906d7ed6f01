//! Terminal operations: push input into a terminal (TIOCSTI, as in
//! CVE-2017-5226 and CVE-2019-10063) and tell what terminal the probe has.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  tiocsti TEXT [FD|PATH]      tiocsti-hibits TEXT [FD|PATH]
  tty-info";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "tiocsti" | "tiocsti-hibits" => {
            a.expect(1, 2, "TEXT [FD|PATH]")?;
            let text = a.os(0).map(|s| s.as_encoded_bytes()).unwrap_or_default();
            tiocsti(
                op,
                text,
                a.os(1).map(|s| s.as_os_str()),
                op == "tiocsti-hibits",
            )
        }
        "tty-info" => {
            a.expect(0, 0, "")?;
            tty_info()
        }
        _ => return Ok(None),
    }))
}

/// The terminal to push into: a number is an fd the probe already has,
/// anything else a path opened read-write without becoming its
/// controlling terminal (`/dev/tty` is the controlling one).
enum Target {
    Fd(i32),
    Opened(OwnedFd),
}

impl Target {
    fn raw(&self) -> i32 {
        match self {
            Target::Fd(fd) => *fd,
            Target::Opened(f) => f.as_raw_fd(),
        }
    }
}

fn target(arg: Option<&OsStr>) -> io::Result<Target> {
    let Some(arg) = arg else {
        return Ok(Target::Fd(0));
    };
    if let Some(fd) = arg.to_str().and_then(|s| s.parse::<i32>().ok()) {
        return Ok(Target::Fd(fd));
    }
    let path = sys::cstring(arg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    sys::owned_fd(fd.into()).map(Target::Opened)
}

/// `tiocsti TEXT [FD|PATH]`: push TEXT, byte by byte, into the terminal's
/// input queue with ioctl(TIOCSTI), as if typed (default fd 0). value =
/// bytes pushed before the first failure. `tiocsti-hibits` passes the
/// request with the upper 32 bits of the register set: the kernel reads
/// the request as 32 bits and still sees TIOCSTI, a filter comparing all
/// 64 bits does not (CVE-2019-10063).
pub fn tiocsti(op: &str, text: &[u8], to: Option<&OsStr>, hibits: bool) -> Report {
    let target = match target(to) {
        Ok(t) => t,
        Err(e) => return Report::os_error(op, &e),
    };
    // glibc and musl type the request differently: widen it first.
    let base = libc::TIOCSTI as u32 as u64;
    let request = if hibits {
        base | 0xffff_ffff_0000_0000
    } else {
        base
    };
    let mut pushed = 0i64;
    for b in text {
        // SAFETY: ioctl(TIOCSTI) reads one byte through the pointer, which
        // points at a live byte of `text`; other arguments are plain ints.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_ioctl,
                libc::c_long::from(target.raw()),
                request as libc::c_long,
                b as *const u8,
            )
        };
        if ret < 0 {
            return Report::os_error(op, &io::Error::last_os_error()).value(pushed);
        }
        pushed += 1;
    }
    Report::ok(op, Some(pushed))
}

/// `tty-info`: which of fds 0-2 are terminals ("ttys"), whether one of
/// them is the probe's controlling terminal ("ctty": TIOCGSID works only
/// there), whether /dev/tty opens ("dev_tty"), and the probe's "pid",
/// "sid" and "pgid". value = how many of fds 0-2 are terminals. Always ok.
pub fn tty_info() -> Report {
    let mut ttys = Vec::new();
    let mut ctty = false;
    for fd in 0..3 {
        // SAFETY: isatty takes an int.
        if unsafe { libc::isatty(fd) } == 1 {
            ttys.push(fd);
            let mut sid: libc::pid_t = 0;
            // SAFETY: TIOCGSID writes one pid_t through the pointer.
            if unsafe { libc::ioctl(fd, libc::TIOCGSID, &mut sid) } == 0 {
                ctty = true;
            }
        }
    }
    // SAFETY: a valid C string literal; the fd, if any, is closed at once.
    let dev_tty = unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    };
    // SAFETY: getpid/getsid/getpgid take no pointers.
    let (pid, sid, pgid) = unsafe { (libc::getpid(), libc::getsid(0), libc::getpgid(0)) };
    Report::ok("tty-info", Some(ttys.len() as i64))
        .with("ttys", Value::from(ttys))
        .with("ctty", Value::from(ctty))
        .with("dev_tty", Value::from(dev_tty))
        .with("pid", Value::from(pid))
        .with("sid", Value::from(sid))
        .with("pgid", Value::from(pgid))
}
