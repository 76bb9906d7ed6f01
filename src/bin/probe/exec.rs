//! Running a program other than by execve(PATH): from a memfd copy, through
//! the dynamic loader, and by a file descriptor (execveat with an empty
//! path, or /proc/self/fd/N). An exec allowlist that only looks at the
//! path given to execve misses some of these.
//!
//! Each reports like `exec`: ok = the exec succeeded, value = the
//! program's exit code (null and "signal" if a signal ended it).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys::{self, fork_exec_wait, CArgv};

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  memfd-exec PATH [ARGS...]   loader-exec LOADER PATH [ARGS...]
  execveat-empty PATH [ARGS...]                           exec-proc-fd PATH [ARGS...]";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let path = |i: usize| sys::cstring(a.os(i).map(|s| s.as_os_str()).unwrap_or_default());
    Ok(Some(match op {
        "memfd-exec" | "execveat-empty" | "exec-proc-fd" => {
            a.expect(1, usize::MAX, "PATH [ARGS...]")?;
            let argv = CArgv::new(a.from(0))?;
            match op {
                "memfd-exec" => memfd_exec(&path(0)?, &argv),
                "execveat-empty" => execveat_empty(&path(0)?, &argv),
                _ => exec_proc_fd(&path(0)?, &argv),
            }
        }
        "loader-exec" => {
            a.expect(2, usize::MAX, "LOADER PATH [ARGS...]")?;
            let argv = CArgv::new(a.from(0))?;
            loader_exec(&argv)
        }
        _ => return Ok(None),
    }))
}

fn open(path: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string; the result is checked.
    sys::owned_fd(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) }.into())
}

/// execveat(fd, "", argv, environ, AT_EMPTY_PATH); returns only on failure.
fn execveat_fd(fd: i32, argv: &CArgv) {
    // SAFETY: an empty C string, a NULL-terminated argv that outlives the
    // call, and the process's own environment.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            sys::environ(),
            libc::AT_EMPTY_PATH,
        )
    };
}

/// A memfd that may be executed: MFD_EXEC where the kernel knows it (6.3
/// and later, where `vm.memfd_noexec` may otherwise seal it), plain
/// before.
fn exec_memfd() -> io::Result<OwnedFd> {
    let create = |flags: libc::c_uint| {
        // SAFETY: a valid C string name and flags.
        sys::owned_fd(unsafe { libc::memfd_create(c"sandspec".as_ptr(), flags) }.into())
    };
    match create(libc::MFD_CLOEXEC | libc::MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(libc::MFD_CLOEXEC),
        other => other,
    }
}

/// `memfd-exec PATH [ARGS...]`: copy the file at PATH into a memfd and run
/// the copy with execveat(memfd, "", AT_EMPTY_PATH) (what fexecve does),
/// argv = [PATH, ARGS...]. The program never runs from a path. "stage"
/// says where a failure before the exec was (read, memfd).
pub fn memfd_exec(path: &CString, argv: &CArgv) -> Report {
    const OP: &str = "memfd-exec";
    let mut image = Vec::new();
    let read =
        open(path, libc::O_RDONLY).and_then(|fd| std::fs::File::from(fd).read_to_end(&mut image));
    if let Err(e) = read {
        return Report::os_error(OP, &e).with("stage", Value::from("read"));
    }
    let memfd = match exec_memfd() {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("memfd")),
    };
    let mut off = 0;
    while off < image.len() {
        // SAFETY: the slice is valid for its length.
        let n = unsafe {
            libc::write(
                memfd.as_raw_fd(),
                image[off..].as_ptr().cast(),
                image.len() - off,
            )
        };
        match sys::check(n as libc::c_long) {
            Ok(n) => off += n as usize,
            Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("memfd")),
        }
    }
    fork_exec_wait(OP, || execveat_fd(memfd.as_raw_fd(), argv))
}

/// `loader-exec LOADER PATH [ARGS...]`: exec the dynamic loader with
/// PATH as its argument (`ld.so PATH ARGS`): the kernel checks the
/// loader's exec permission; the loader only maps PATH, as it would a
/// library.
pub fn loader_exec(argv: &CArgv) -> Report {
    fork_exec_wait("loader-exec", || {
        // SAFETY: a NULL-terminated argv of C strings that outlives the
        // call; execv returns only on failure.
        unsafe { libc::execv(*argv.as_ptr(), argv.as_ptr()) };
    })
}

/// `execveat-empty PATH [ARGS...]`: open PATH with O_PATH (no access is
/// checked at open), then execveat(fd, "", AT_EMPTY_PATH).
pub fn execveat_empty(path: &CString, argv: &CArgv) -> Report {
    const OP: &str = "execveat-empty";
    let fd = match open(path, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("open")),
    };
    fork_exec_wait(OP, || execveat_fd(fd.as_raw_fd(), argv))
}

/// `exec-proc-fd PATH [ARGS...]`: open PATH with O_PATH, then execve the
/// magic link /proc/self/fd/N.
pub fn exec_proc_fd(path: &CString, argv: &CArgv) -> Report {
    const OP: &str = "exec-proc-fd";
    let fd = match open(path, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("open")),
    };
    let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    fork_exec_wait(OP, || {
        // SAFETY: a valid C string, a NULL-terminated argv and the
        // process's environment; execve returns only on failure.
        unsafe { libc::execve(link.as_ptr(), argv.as_ptr(), sys::environ()) };
    })
}
