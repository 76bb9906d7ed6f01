//! Process operations: exec, fork-many, setsid-daemon, kill-outside,
//! signal-self, exit, sleep.
//!
//! The probe is single-threaded, so after fork(2) the child may run any
//! code; children still stick to plain syscalls and `_exit`.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde_json::Value;

use crate::report::Report;
use crate::sys::{
    cloexec_pipe, errno, fork_exec_wait, read_i32, sleep_fully, sleep_ms, wait, write_i32, CArgv,
};

/// How long `setsid-daemon`'s grandchild lives.
const DAEMON_LIFETIME_SECS: u32 = 300;
/// How long each `fork-many` child lives: long enough for all N to exist
/// at once (forking them takes milliseconds), short enough to keep a
/// corpus run quick.
const FORK_CHILD_MS: u64 = 500;

/// `exec PATH [ARGS...]`: fork, execv(PATH, [PATH, ARGS...]), wait. The
/// child sends execv's errno back through a close-on-exec pipe, so ok
/// means exec succeeded; value = the child's exit code (null if it was
/// killed by a signal, then field "signal").
pub fn exec(path: &OsString, args: &[OsString]) -> Report {
    const OP: &str = "exec";
    let argv = match CArgv::new(std::iter::once(path).chain(args)) {
        Ok(a) => a,
        Err(e) => return Report::usage(OP, e),
    };
    fork_exec_wait(OP, || {
        // SAFETY: `argv` is a NULL-terminated array of C strings that
        // outlives the call; execv only returns on failure.
        unsafe { libc::execv(*argv.as_ptr(), argv.as_ptr()) };
    })
}

/// `fork-many N`: fork N children that each sleep 0.5 s; stop at the first
/// failure; reap all. value = forks that succeeded.
pub fn fork_many(n: u64) -> Report {
    const OP: &str = "fork-many";
    let mut children = Vec::new();
    let mut failure = None;
    for _ in 0..n {
        // SAFETY: single-threaded; the child only sleeps and calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            sleep_ms(FORK_CHILD_MS);
            // SAFETY: leaving the child without running the parent's
            // exit handlers or flushing its buffers.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            failure = Some(io::Error::last_os_error());
            break;
        }
        children.push(pid);
    }
    for &pid in &children {
        // A child we cannot reap is already gone; nothing to report.
        let _ = wait(pid);
    }
    let forked = children.len() as i64;
    match failure {
        None => Report::ok(OP, Some(forked)),
        Some(e) => Report::os_error(OP, &e).value(forked),
    }
}

/// `setsid-daemon [HOLD_SECS]`: the child calls setsid() and forks a
/// grandchild that lives 300 s, then exits. The grandchild closes its
/// stdio, as a daemon does, so the sandbox's pipes reach EOF without it;
/// whether it survives is checked by pid. Prints `pids: [child,
/// grandchild]`, then holds for HOLD_SECS.
pub fn setsid_daemon(hold: Duration) -> Report {
    const OP: &str = "setsid-daemon";
    let (rd, wr) = match cloexec_pipe() {
        Ok(p) => p,
        Err(e) => return Report::os_error(OP, &e),
    };
    // SAFETY: single-threaded; the child only calls setsid/fork/close/
    // write/sleep/_exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    if child == 0 {
        let wr = wr.as_raw_fd();
        // SAFETY: in the child: plain syscalls on fds this process owns.
        unsafe {
            libc::setsid();
            let grandchild = libc::fork();
            if grandchild == 0 {
                for fd in 0..3 {
                    libc::close(fd);
                }
                libc::close(wr);
                sleep_fully(DAEMON_LIFETIME_SECS);
                libc::_exit(0);
            }
            // A negative value carries fork's errno.
            write_i32(wr, if grandchild < 0 { -errno() } else { grandchild });
            libc::_exit(0);
        }
    }
    drop(wr);
    let got = read_i32(&rd);
    let _ = wait(child);
    match got {
        Ok(Some(gc)) if gc > 0 => Report::ok(OP, None)
            .with("pids", Value::from(vec![child, gc]))
            .hold(hold),
        Ok(Some(neg)) => Report::os_error(OP, &io::Error::from_raw_os_error(-neg)),
        Ok(None) => Report::failed(
            OP,
            None,
            "failed to learn the grandchild's pid: the child exited without telling".into(),
        ),
        Err(e) => Report::os_error(OP, &e),
    }
}

/// `kill-outside PID [SIGNAL]`: kill(PID, SIGNAL).
pub fn kill_outside(pid: i32, sig: i32) -> Report {
    // SAFETY: kill(2) takes no pointers.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Report::ok("kill-outside", None)
    } else {
        Report::os_error("kill-outside", &io::Error::last_os_error())
    }
}

/// `signal-self SIGNAL`: restore the default action, unblock, raise. The
/// probe turns off core dumps first so a SEGV leaves no core file.
pub fn signal_self(sig: i32) -> Report {
    // SAFETY: prctl/signal/sigprocmask/raise with valid arguments; the
    // sigset is initialised by sigemptyset before use.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if libc::raise(sig) != 0 {
            return Report::os_error("signal-self", &io::Error::last_os_error());
        }
    }
    Report::failed(
        "signal-self",
        None,
        format!("signal {sig} was raised but did not end the probe"),
    )
}

/// `exit CODE`: report ok, then exit with CODE.
pub fn exit(code: u8) -> Report {
    Report::ok("exit", Some(i64::from(code))).exit_with(i32::from(code))
}

/// `sleep SECS`: report at the end.
pub fn sleep(d: Duration) -> Report {
    std::thread::sleep(d);
    Report::ok("sleep", None)
}
