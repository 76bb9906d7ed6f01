//! Signals that leave the sandbox by routes other than kill(PID): to the
//! parent (a sandbox's supervisor), to the parent's process group, through
//! SIGIO ownership (F_SETOWN), and through a pidfd.
//!
//! `kill-parent` and `kill-parent-group` default to signal 0, which checks
//! permission and delivers nothing: without a sandbox the parent is the
//! harness itself. `stop-parent` really stops the parent, for a bounded
//! time, and continues it afterwards.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  kill-parent [SIGNAL]        kill-parent-group [SIGNAL]  stop-parent [SECS]
  fcntl-setown [-]PID [SIGNAL]                            pidfd-signal PID SIGNAL";

fn pid(s: &str) -> Result<i32, String> {
    s.parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid pid {s:?}"))
}

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let sig = |i: usize, default: i32| match a.os(i) {
        Some(_) => args::signal(a.str(i)?),
        None => Ok(default),
    };
    Ok(Some(match op {
        "kill-parent" => {
            a.expect(0, 1, "[SIGNAL]")?;
            kill_parent(sig(0, 0)?, false)
        }
        "kill-parent-group" => {
            a.expect(0, 1, "[SIGNAL]")?;
            kill_parent(sig(0, 0)?, true)
        }
        "stop-parent" => {
            a.expect(0, 1, "[SECS]")?;
            let hold = match a.os(0) {
                Some(_) => args::secs(a.str(0)?)?,
                None => Duration::from_secs(1),
            };
            stop_parent(hold)
        }
        "fcntl-setown" => {
            a.expect(1, 2, "PID [SIGNAL]")?;
            // A negative PID names a process group, as F_SETOWN takes it.
            let target = a.str(0)?;
            let owner = match target.strip_prefix('-') {
                Some(group) => -pid(group)?,
                None => pid(target)?,
            };
            fcntl_setown(owner, sig(1, 0)?)
        }
        "pidfd-signal" => {
            a.expect(2, 2, "PID SIGNAL")?;
            pidfd_signal(pid(a.str(0)?)?, sig(1, 0)?)
        }
        _ => return Ok(None),
    }))
}

fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes no pointers.
    sys::check(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// `kill-parent [SIGNAL]`: kill(getppid(), SIGNAL), default 0 (only the
/// permission check). `kill-parent-group` signals the parent's process
/// group instead. "target" = the pid (negative: a group) signalled.
pub fn kill_parent(sig: i32, group: bool) -> Report {
    let op = if group {
        "kill-parent-group"
    } else {
        "kill-parent"
    };
    // SAFETY: getppid/getpgid take no pointers.
    let ppid = unsafe { libc::getppid() };
    let target =
        if group {
            // SAFETY: as above.
            match unsafe { libc::getpgid(ppid) } {
                pg if pg > 0 => -pg,
                0 => return Report::failed(
                    op,
                    None,
                    "the parent is in process group 0 (started by a bare init): no group to signal"
                        .into(),
                ),
                _ => return Report::os_error(op, &io::Error::last_os_error()),
            }
        } else {
            ppid
        };
    let report = match kill(target, sig) {
        Ok(()) => Report::ok(op, None),
        Err(e) => Report::os_error(op, &e),
    };
    report
        .with("target", Value::from(target))
        .with("signal", Value::from(sig))
}

/// `stop-parent [SECS]`: SIGSTOP to getppid(), hold SECS (default 1),
/// then SIGCONT, so even a run without a sandbox resumes its parent. A
/// sandbox's deadline must not wait for a stopped supervisor.
pub fn stop_parent(hold: Duration) -> Report {
    const OP: &str = "stop-parent";
    // SAFETY: getppid takes no pointers.
    let ppid = unsafe { libc::getppid() };
    if let Err(e) = kill(ppid, libc::SIGSTOP) {
        return Report::os_error(OP, &e).with("target", Value::from(ppid));
    }
    std::thread::sleep(hold);
    let continued = kill(ppid, libc::SIGCONT).is_ok();
    Report::ok(OP, None)
        .with("target", Value::from(ppid))
        .with("continued", Value::from(continued))
}

/// fcntl's F_SETSIG (linux/fcntl.h; not in every libc binding).
const F_SETSIG: libc::c_int = 10;

/// `fcntl-setown [-]PID [SIGNAL]`: make PID (-PID: that process group)
/// the owner of a pipe's SIGIO
/// (F_SETOWN, F_SETSIG SIGNAL, O_ASYNC) and write to the pipe: the kernel,
/// not kill(2), then signals PID (SIGIO unless SIGNAL). ok = every call
/// succeeded; a refused delivery is silent, so the victim tells.
pub fn fcntl_setown(pid: i32, sig: i32) -> Report {
    const OP: &str = "fcntl-setown";
    let (rd, wr) = match sys::cloexec_pipe() {
        Ok(p) => p,
        Err(e) => return Report::os_error(OP, &e),
    };
    let fd = rd.as_raw_fd();
    // SAFETY: fcntl on our own pipe with integer arguments.
    let steps = unsafe {
        [
            ("F_SETOWN", libc::fcntl(fd, libc::F_SETOWN, pid)),
            ("F_SETSIG", libc::fcntl(fd, F_SETSIG, sig)),
            (
                "F_SETFL",
                libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK),
            ),
        ]
    };
    for (stage, r) in steps {
        if r != 0 {
            return Report::os_error(OP, &io::Error::last_os_error())
                .with("stage", Value::from(stage));
        }
    }
    // SAFETY: one byte from a static buffer.
    let n = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    match sys::check(n as libc::c_long) {
        Ok(_) => {
            // Delivery is synchronous with the write; the pause only lets
            // a dying target finish before the probe reports.
            sys::sleep_ms(50);
            Report::ok(OP, None)
        }
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("write")),
    }
}

/// `pidfd-signal PID SIGNAL`: pidfd_open(PID), pidfd_send_signal(SIGNAL).
pub fn pidfd_signal(pid: i32, sig: i32) -> Report {
    const OP: &str = "pidfd-signal";
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = match sys::owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        Ok(p) => p,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("pidfd_open")),
    };
    // SAFETY: NULL siginfo asks for the kill(2)-like default.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match sys::check(r) {
        Ok(_) => Report::ok(OP, None),
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("send")),
    }
}
