//! Reaching into another process: ptrace, process_vm_readv, its
//! environment in /proc, and stealing one of its file descriptors with
//! pidfd_getfd. Cases aim these at the harness's `victim`.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  ptrace-attach PID [kill]    process-vm-read PID         read-environ PID|parent
  pidfd-getfd PID FD";

fn pid(s: &str) -> Result<i32, String> {
    s.parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid pid {s:?}"))
}

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "ptrace-attach" => {
            a.expect(1, 2, "PID [kill]")?;
            let kill = match a.os(1).map(|_| a.str(1)).transpose()? {
                None => false,
                Some("kill") => true,
                Some(other) => return Err(format!("unexpected {other:?} (only `kill`)")),
            };
            ptrace_attach(pid(a.str(0)?)?, kill)
        }
        "process-vm-read" => {
            a.expect(1, 1, "PID")?;
            process_vm_read(pid(a.str(0)?)?)
        }
        "read-environ" => {
            a.expect(1, 1, "PID|parent")?;
            let target = match a.str(0)? {
                // SAFETY: getppid takes no arguments and cannot fail.
                "parent" => unsafe { libc::getppid() },
                other => pid(other)?,
            };
            read_environ(target)
        }
        "pidfd-getfd" => {
            a.expect(2, 2, "PID FD")?;
            let fd = args::count(a.str(1)?)?;
            let fd = i32::try_from(fd).map_err(|_| format!("invalid fd {fd}"))?;
            pidfd_getfd(pid(a.str(0)?)?, fd)
        }
        _ => return Ok(None),
    }))
}

/// `ptrace(2)` by its syscall number: glibc and musl declare the request
/// with different integer types.
fn ptrace<R: TryInto<libc::c_long>>(req: R, pid: i32, data: libc::c_long) -> io::Result<()> {
    let req: libc::c_long = req.try_into().unwrap_or(-1);
    // SAFETY: the requests used here take no pointer (addr and data are
    // integers or unused).
    let r = unsafe { libc::syscall(libc::SYS_ptrace, req, pid, 0 as libc::c_long, data) };
    sys::check(r).map(drop)
}

/// `ptrace-attach PID [kill]`: PTRACE_ATTACH, wait for the stop, then
/// detach, leaving PID running as before. With `kill`, resume it with
/// SIGKILL injected instead: a signal delivered through ptrace, not
/// kill(2). ok = attached.
pub fn ptrace_attach(pid: i32, kill: bool) -> Report {
    const OP: &str = "ptrace-attach";
    if let Err(e) = ptrace(libc::PTRACE_ATTACH, pid, 0) {
        return Report::os_error(OP, &e);
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; PID is now our tracee.
    let waited = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if waited != pid {
        let e = io::Error::last_os_error();
        return Report::os_error(OP, &e).with("stage", Value::from("wait"));
    }
    let (req, sig) = if kill {
        (libc::PTRACE_CONT, libc::SIGKILL)
    } else {
        (libc::PTRACE_DETACH, 0)
    };
    match ptrace(req, pid, libc::c_long::from(sig)) {
        Ok(()) => Report::ok(OP, None).with("killed", Value::from(kill)),
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("release")),
    }
}

/// The start of PID's first readable mapping, from /proc/PID/maps.
fn readable_address(pid: i32) -> Option<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        rest.starts_with('r')
            .then(|| usize::from_str_radix(range.split_once('-')?.0, 16).ok())
            .flatten()
    })
}

/// An address below every mapping: reading it is EFAULT once the access
/// check has passed, which tells "allowed" from "refused" without /proc.
const UNMAPPED: usize = 0x1000;

/// `process-vm-read PID`: process_vm_readv of 64 bytes from PID, at its
/// first readable mapping when /proc/PID/maps tells one, else at an
/// unmapped address. value = bytes read; "address" = where. EFAULT means
/// the kernel allowed the access and found nothing there ("permitted":
/// true); EPERM or ESRCH mean it refused.
pub fn process_vm_read(pid: i32) -> Report {
    const OP: &str = "process-vm-read";
    let addr = readable_address(pid);
    let mut buf = [0u8; 64];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr.unwrap_or(UNMAPPED) as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes our own live buffer; the remote iovec is
    // only read by the kernel, in the other process.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    let report = match sys::check(n as libc::c_long) {
        Ok(n) => Report::ok(OP, Some(n)),
        Err(e) => {
            let permitted = e.raw_os_error() == Some(libc::EFAULT);
            Report::os_error(OP, &e).with("permitted", Value::from(permitted))
        }
    };
    report.with(
        "address",
        Value::from(format!("{:#x}", addr.unwrap_or(UNMAPPED))),
    )
}

/// `read-environ PID|parent`: read /proc/PID/environ (of getppid() for
/// `parent`); "pid" = whose. value = bytes; "names" =
/// the variables' names only (never their values: a run without a sandbox
/// would otherwise copy the harness's environment into reports).
pub fn read_environ(pid: i32) -> Report {
    const OP: &str = "read-environ";
    let mut data = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/environ"))
        .and_then(|mut f| f.read_to_end(&mut data));
    match read {
        Ok(n) => {
            let names: Vec<Value> = data
                .split(|&b| b == 0)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    let name = v.split(|&b| b == b'=').next().unwrap_or_default();
                    Value::from(String::from_utf8_lossy(name).into_owned())
                })
                .collect();
            Report::ok(OP, Some(n as i64)).with("names", Value::from(names))
        }
        Err(e) => Report::os_error(OP, &e),
    }
    .with("pid", Value::from(pid))
}

/// What kind of file an fd is, from fstat.
fn kind_of(fd: &OwnedFd) -> &'static str {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return "unknown";
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "directory",
        libc::S_IFCHR => "char-device",
        libc::S_IFBLK => "block-device",
        libc::S_IFIFO => "pipe",
        libc::S_IFSOCK => "socket",
        libc::S_IFLNK => "symlink",
        _ => "other",
    }
}

/// `pidfd-getfd PID FD`: pidfd_open(PID) then pidfd_getfd(pidfd, FD): a
/// duplicate of another process's file descriptor. "kind" = what it is
/// (file, pipe, socket, char-device, ...); closed at once.
pub fn pidfd_getfd(pid: i32, fd: i32) -> Report {
    const OP: &str = "pidfd-getfd";
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = match sys::owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        Ok(p) => p,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("pidfd_open")),
    };
    // SAFETY: pidfd_getfd takes two fds and flags.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    match sys::owned_fd(got) {
        Ok(stolen) => Report::ok(OP, None).with("kind", Value::from(kind_of(&stolen))),
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("pidfd_getfd")),
    }
}
