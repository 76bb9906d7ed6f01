//! Small wrappers over raw syscalls shared by the operations: pipes that
//! carry one integer from a forked child, waiting, sleeping, C strings,
//! and fork-then-exec with exec's errno sent back.
//!
//! The probe is single-threaded (except `threads`, which forks nothing),
//! so after fork(2) the child may run any code; children still stick to
//! plain syscalls and `_exit`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use serde_json::Value;

use crate::report::Report;

/// A pipe whose both ends close on exec.
pub fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Reads one native-endian i32 from `fd`; `None` at EOF.
pub fn read_i32(fd: &OwnedFd) -> io::Result<Option<i32>> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => return Ok(None),
            n if n > 0 => got += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(Some(i32::from_ne_bytes(buf)))
}

/// Writes one i32 to a raw fd (in a forked child; best effort).
pub fn write_i32(fd: i32, v: i32) {
    let buf = v.to_ne_bytes();
    // SAFETY: `buf` is valid for its length; a failed write only loses the
    // message, which the reader sees as EOF.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// waitpid(2), retried on EINTR.
pub fn wait(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The last OS error, as the `Err` of a result.
pub fn last<T>() -> io::Result<T> {
    Err(io::Error::last_os_error())
}

/// A raw return value: negative is the errno's error, else the value.
pub fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        last()
    } else {
        Ok(ret)
    }
}

/// A new fd returned by a syscall, owned from now on.
pub fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: a non-negative return of an fd-creating syscall is a new fd
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sleeps the full `secs` even if signals interrupt (in a child).
pub fn sleep_fully(secs: u32) {
    let mut left = secs;
    while left > 0 {
        // SAFETY: sleep(3) takes no pointers.
        left = unsafe { libc::sleep(left) };
    }
}

/// Sleeps `ms` milliseconds, resuming after signals.
pub fn sleep_ms(ms: u64) {
    let mut req = libc::timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    loop {
        let mut rem = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: nanosleep with two live timespecs.
        if unsafe { libc::nanosleep(&req, &mut rem) } == 0 {
            return;
        }
        req = rem;
    }
}

/// A C string from an argument, or a usage message.
pub fn cstring(s: &OsStr) -> Result<CString, String> {
    CString::new(s.as_bytes()).map_err(|_| format!("argument {s:?} contains a NUL byte"))
}

/// An argv for exec: C strings plus the NULL-terminated pointer array
/// (which points into the strings, so both live together).
pub struct CArgv {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArgv {
    /// `argv` as C strings, or a usage message naming a bad argument.
    pub fn new<'a>(argv: impl IntoIterator<Item = &'a OsString>) -> Result<CArgv, String> {
        let strings = argv
            .into_iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CArgv {
            _strings: strings,
            ptrs,
        })
    }

    /// The NULL-terminated array, valid while `self` lives.
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// The process's own environment, for execve-style calls that take one.
pub fn environ() -> *const *const libc::c_char {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: the C library's `environ` is initialised before main and
    // only read here.
    unsafe { environ }
}

/// Forks; the child resets SIGPIPE to its default and runs `exec`, which
/// only returns if the exec failed; its errno then goes back through a
/// close-on-exec pipe. The parent waits and reports like `exec`: ok means
/// the exec succeeded, value = the child's exit code (null and field
/// "signal" if a signal killed it).
pub fn fork_exec_wait(op: &str, exec: impl FnOnce()) -> Report {
    let (rd, wr) = match cloexec_pipe() {
        Ok(p) => p,
        Err(e) => return Report::os_error(op, &e),
    };
    // SAFETY: the probe is single-threaded, so the child is a full copy
    // that may run ordinary code; `exec` only prepares and calls an exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Report::os_error(op, &io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child. The probe ignores SIGPIPE; the program it
        // runs should start with the default, as it would from a shell.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        exec();
        write_i32(wr.as_raw_fd(), errno());
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(127) };
    }
    drop(wr);
    let exec_errno = read_i32(&rd);
    let (status, maxrss) = match wait_rusage(pid) {
        Ok(s) => s,
        Err(e) => return Report::os_error(op, &e),
    };
    let report = match exec_errno {
        Ok(Some(errno)) => Report::os_error(op, &io::Error::from_raw_os_error(errno)),
        Err(e) => Report::os_error(op, &e),
        Ok(None) if libc::WIFSIGNALED(status) => {
            Report::ok(op, None).with("signal", Value::from(libc::WTERMSIG(status)))
        }
        Ok(None) => Report::ok(op, Some(i64::from(libc::WEXITSTATUS(status)))),
    };
    report.with("maxrss_kib", Value::from(maxrss))
}

/// Waits for `pid`; its wait status and peak resident set (KiB). Forked
/// from the small probe, the child's peak is its own: a child forked from
/// a large process (a test binary) starts with that process's pages.
fn wait_rusage(pid: libc::pid_t) -> io::Result<(libc::c_int, i64)> {
    let mut status = 0;
    loop {
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: live out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((status, ru.ru_maxrss as i64));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Forks a child that runs `f` and exits with its return value, waits,
/// and returns the exit status (for operations that must not change the
/// probe itself, e.g. `chroot` or `setns` followed by a check).
pub fn in_child(f: impl FnOnce() -> i32) -> io::Result<libc::c_int> {
    // SAFETY: single-threaded; the child runs `f` and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return last();
    }
    if pid == 0 {
        let code = f();
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}
