//! Processes made to outlive the run and to hide from whoever looks for
//! them: a daemon that renames itself, one that becomes another program,
//! and a chain of forks whose pid never stays the same.
//!
//! Each leaves its stdio closed, as a daemon does, so a sandbox's pipes
//! reach EOF without it; what survives must be found by other means.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys::{self, CArgv};

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  rename-daemon NAME [HOLD_SECS]                          exec-daemon [PROG ARGS...]
  fork-chaser SECS";

/// How long the daemons live when nobody kills them.
const DAEMON_LIFETIME_SECS: u32 = 300;
/// How long each generation of `fork-chaser` lives before it forks the next.
const CHASER_STEP_MS: u64 = 10;

/// Where the process's argv strings are (start, length), so a daemon can
/// overwrite them; recorded by `main`.
static ARGV_START: AtomicUsize = AtomicUsize::new(0);
static ARGV_LEN: AtomicUsize = AtomicUsize::new(0);

/// Records the argv area: from argv[0] to the NUL after the last argument
/// (the kernel shows this range as /proc/PID/cmdline).
///
/// # Safety
/// `argv` must hold `argc` valid pointers to NUL-terminated strings, laid
/// out one after the other as the kernel places them.
#[cfg_attr(test, allow(dead_code))]
pub unsafe fn remember_argv(argc: usize, argv: *const *const libc::c_char) {
    if argc == 0 {
        return;
    }
    // SAFETY: per the contract, argv[0] and argv[argc - 1] are valid
    // NUL-terminated strings.
    let (first, last) = unsafe { (*argv, *argv.add(argc - 1)) };
    // SAFETY: as above.
    let last_len = unsafe { libc::strlen(last) };
    let end = last as usize + last_len + 1;
    if end > first as usize {
        ARGV_START.store(first as usize, Ordering::Relaxed);
        ARGV_LEN.store(end - first as usize, Ordering::Relaxed);
    }
}

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "rename-daemon" => {
            a.expect(1, 2, "NAME [HOLD_SECS]")?;
            let name = a.str(0)?;
            if name.is_empty() || name.contains('\0') {
                return Err(format!("invalid name {name:?}"));
            }
            let hold = match a.os(1) {
                Some(_) => args::secs(a.str(1)?)?,
                None => Duration::ZERO,
            };
            rename_daemon(name, hold)
        }
        "exec-daemon" => {
            a.expect(0, usize::MAX, "[PROG ARGS...]")?;
            let argv: Vec<OsString> = if a.from(0).is_empty() {
                vec!["/bin/sleep".into(), DAEMON_LIFETIME_SECS.to_string().into()]
            } else {
                a.from(0).to_vec()
            };
            let argv = CArgv::new(&argv)?;
            exec_daemon(&argv)
        }
        "fork-chaser" => {
            a.expect(1, 1, "SECS")?;
            fork_chaser(args::secs(a.str(0)?)?)
        }
        _ => return Ok(None),
    }))
}

/// Forks a child that calls setsid() and forks `grandchild`, whose pid it
/// sends back before exiting; the grandchild starts with its stdio
/// closed. Returns [child, grandchild] once the child is reaped, or the
/// failure as a report. The grandchild may send one i32 (an errno) through
/// the fd it is given, which is the write end of a pipe of its own (the
/// returned fd reads it): had it shared the child's, its errno could
/// arrive before the child's pid and be taken for it.
fn double_fork(
    op: &str,
    grandchild: impl FnOnce(i32),
) -> Result<(Vec<i32>, std::os::fd::OwnedFd), Box<Report>> {
    let (rd, wr) = sys::cloexec_pipe().map_err(|e| Box::new(Report::os_error(op, &e)))?;
    let (gc_rd, gc_wr) = sys::cloexec_pipe().map_err(|e| Box::new(Report::os_error(op, &e)))?;
    // SAFETY: single-threaded; the child only calls setsid/fork/write/
    // _exit, the grandchild what `grandchild` does.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(Box::new(Report::os_error(
            op,
            &std::io::Error::last_os_error(),
        )));
    }
    if child == 0 {
        let w = wr.as_raw_fd();
        let gc_w = gc_wr.as_raw_fd();
        // SAFETY: in the child: plain syscalls on fds this process owns.
        unsafe {
            libc::setsid();
            let gc = libc::fork();
            if gc == 0 {
                libc::close(w);
                for fd in 0..3 {
                    libc::close(fd);
                }
                grandchild(gc_w);
                libc::_exit(0);
            }
            libc::close(gc_w);
            sys::write_i32(w, if gc < 0 { -sys::errno() } else { gc });
            libc::_exit(0);
        }
    }
    drop(wr);
    drop(gc_wr);
    let got = sys::read_i32(&rd);
    let _ = sys::wait(child);
    match got {
        Ok(Some(gc)) if gc > 0 => Ok((vec![child, gc], gc_rd)),
        Ok(Some(neg)) => Err(Box::new(Report::os_error(
            op,
            &std::io::Error::from_raw_os_error(-neg),
        ))),
        Ok(None) => Err(Box::new(Report::failed(
            op,
            None,
            "failed to learn the grandchild's pid: the child exited without telling".into(),
        ))),
        Err(e) => Err(Box::new(Report::os_error(op, &e))),
    }
}

/// Overwrites the argv area with `name` followed by NULs.
fn overwrite_argv(name: &str) {
    let start = ARGV_START.load(Ordering::Relaxed);
    let len = ARGV_LEN.load(Ordering::Relaxed);
    if start == 0 || len == 0 {
        return;
    }
    let p = start as *mut u8;
    let n = name.len().min(len - 1);
    // SAFETY: [start, start + len) is the process's own argv area recorded
    // at start-up, writable stack memory; `n < len`.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
    }
}

/// `rename-daemon NAME [HOLD_SECS]`: like `setsid-daemon`, but the
/// grandchild renames itself before it sleeps 300 s: PR_SET_NAME (its
/// `comm`) and its argv area overwritten with NAME, so neither its name
/// nor /proc/PID/cmdline shows the probe's path any more. "pids" =
/// [child, grandchild]; then holds HOLD_SECS.
pub fn rename_daemon(name: &str, hold: Duration) -> Report {
    const OP: &str = "rename-daemon";
    let comm = std::ffi::CString::new(name).unwrap_or_default();
    let result = double_fork(OP, |w| {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated by
        // the kernel to 15 bytes).
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
        overwrite_argv(name);
        // Renamed: closing the pipe tells the probe, which reports only
        // then, so no observer can see the daemon under its old name.
        // SAFETY: closing our copy of the pipe, which this daemon never uses.
        unsafe { libc::close(w) };
        sys::sleep_fully(DAEMON_LIFETIME_SECS);
    });
    // EOF once the daemon has renamed itself.
    let result = result.map(|(pids, rd)| {
        let _ = sys::read_i32(&rd);
        (pids, rd)
    });
    match result {
        Ok((pids, _)) => Report::ok(OP, None)
            .with("pids", Value::from(pids))
            .with("name", Value::from(name))
            .hold(hold),
        Err(r) => *r,
    }
}

/// `exec-daemon [PROG ARGS...]`: like `setsid-daemon`, but the grandchild
/// execs PROG (default `/bin/sleep 300`), so nothing of the probe is left
/// in its argv or its executable. ok = the exec succeeded; "pids" =
/// [child, grandchild].
pub fn exec_daemon(argv: &CArgv) -> Report {
    const OP: &str = "exec-daemon";
    let result = double_fork(OP, |w| {
        // SAFETY: `argv` is a NULL-terminated array of C strings alive in
        // this copy of the process; execv returns only on failure.
        unsafe { libc::execv(*argv.as_ptr(), argv.as_ptr()) };
        sys::write_i32(w, sys::errno());
    });
    let (pids, rd) = match result {
        Ok(r) => r,
        Err(r) => return *r,
    };
    // EOF: the exec closed the pipe; a number: exec's errno.
    match sys::read_i32(&rd) {
        Ok(None) => Report::ok(OP, None).with("pids", Value::from(pids)),
        Ok(Some(errno)) => Report::os_error(OP, &std::io::Error::from_raw_os_error(errno))
            .with("pids", Value::from(pids)),
        Err(e) => Report::os_error(OP, &e),
    }
}

/// `fork-chaser SECS`: a chain of processes, each of which lives 10 ms,
/// forks the next one into a new session and exits, until SECS have
/// passed since the start; stdio closed. Killing a pid, a process group
/// or a session found a moment earlier misses the live one. "pids" = the
/// first link; the probe itself returns at once.
pub fn fork_chaser(secs: Duration) -> Report {
    const OP: &str = "fork-chaser";
    let deadline = Instant::now() + secs;
    let result = double_fork(OP, |w| {
        // SAFETY: closing our copy of the pipe, which the chain never uses.
        unsafe { libc::close(w) };
        loop {
            sys::sleep_ms(CHASER_STEP_MS);
            if Instant::now() >= deadline {
                return;
            }
            // SAFETY: single-threaded; the child goes on with this loop.
            let next = unsafe { libc::fork() };
            if next != 0 {
                // The parent (or a failed fork) ends its link.
                return;
            }
            // SAFETY: setsid takes no arguments; a fresh child is no group
            // leader, so it succeeds.
            unsafe { libc::setsid() };
        }
    });
    match result {
        Ok((pids, _)) => Report::ok(OP, None).with("pids", Value::from(pids)),
        Err(r) => *r,
    }
}
