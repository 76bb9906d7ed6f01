//! A plain spawn through a *keeper*: a small process of the harness's that
//! is a child subreaper and the command's parent. Whatever the command
//! orphans (a double-forked daemon) is re-parented to the keeper, not to
//! the harness, so it stays in the run's own process tree, where the
//! harness finds it without a cgroup and without mixing it up with another
//! run's (`crate::oracle::tracker`). The keeper restricts nothing and kills
//! nothing: it reports the command's pid and exit status, reaps what dies,
//! and exits when released, after the harness has swept the run.
//!
//! Both the keeper and the command start as forks of the multi-threaded
//! harness, so until `execve` they run only async-signal-safe system calls
//! on data prepared before the fork (no allocation, no locks).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::oracle::tracker::{own_child, OwnChild};
use crate::sandbox::simulate::NoLandlock;

/// What the keeper says on its status pipe: `[tag, value]`, two i32s.
pub const TAG_PID: i32 = 1;
/// The command's wait status.
pub const TAG_STATUS: i32 = 2;
/// The command could not be started: the errno of the failing step.
pub const TAG_FAILED: i32 = 3;

/// How to start the command.
pub struct Plan {
    /// The program, resolved already.
    pub path: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// The whole environment.
    pub envp: Vec<CString>,
    /// The working directory.
    pub cwd: CString,
    /// fds 0, 1 and 2 of the command.
    pub stdio: [RawFd; 3],
    /// A new session with stdin as its controlling terminal.
    pub terminal: bool,
    /// fds to keep open across exec.
    pub inherit: Vec<RawFd>,
    /// `cgroup.procs` to join before exec.
    pub cgroup: Option<RawFd>,
    /// A seccomp filter simulating a kernel without Landlock.
    pub filter: Option<Arc<NoLandlock>>,
}

/// A running keeper.
#[derive(Debug)]
pub struct Keeper {
    pub(super) pid: libc::pid_t,
    release: Option<OwnedFd>,
    /// The harness's own child: never taken for an orphan.
    _own: OwnChild,
}

/// A started command: its keeper, and the read end of the status pipe.
pub struct Started {
    /// The keeper.
    pub keeper: Keeper,
    /// `[tag, value]` messages (see the `TAG_*` constants).
    pub status: OwnedFd,
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((r, w))
}

fn nul_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Writes one message (async-signal-safe).
fn say(fd: RawFd, tag: i32, value: i32) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&tag.to_ne_bytes());
    buf[4..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: a write from a live stack buffer; a lost message reads as
    // EOF to the harness, which then reports the keeper as gone.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

fn errno() -> i32 {
    // SAFETY: reads the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Starts the keeper, which starts the command.
pub fn spawn(plan: &Plan) -> io::Result<Started> {
    let (status_r, status_w) = cloexec_pipe()?;
    let (release_r, release_w) = cloexec_pipe()?;
    let argv = nul_terminated(&plan.argv);
    let envp = nul_terminated(&plan.envp);
    let st = status_w.as_raw_fd();
    let rel = release_r.as_raw_fd();
    // SAFETY: fork in a multi-threaded process: the child runs only
    // `keeper_main`, which makes async-signal-safe system calls on memory
    // prepared above and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the forked child, as described above.
        unsafe { keeper_main(plan, &argv, &envp, st, rel) }
    }
    let own = own_child(pid as u32);
    drop(status_w);
    drop(release_r);
    Ok(Started {
        keeper: Keeper {
            pid,
            release: Some(release_w),
            _own: own,
        },
        status: status_r,
    })
}

impl Keeper {
    /// Lets the keeper go: it reaps what has died and exits (a process
    /// still alive then is re-parented to the harness). Reaps the keeper.
    pub fn release(mut self) {
        self.release_and_reap();
    }

    fn release_and_reap(&mut self) {
        if self.release.take().is_some() {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a live local.
            while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0 && errno() == libc::EINTR {
            }
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.release_and_reap();
    }
}

/// The keeper: becomes a subreaper, forks the command, reports on it, reaps.
///
/// # Safety
/// Only in a child just forked from the harness; never returns.
unsafe fn keeper_main(
    plan: &Plan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    st: RawFd,
    rel: RawFd,
) -> ! {
    // SAFETY (whole function): async-signal-safe system calls on integers,
    // live locals and the caller's prepared, unchanging data.
    unsafe {
        // A group of its own: a signal to the harness's group is not for it.
        libc::setpgid(0, 0);
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            say(st, TAG_FAILED, errno());
            libc::_exit(127);
        }
        let cmd = libc::fork();
        if cmd < 0 {
            say(st, TAG_FAILED, errno());
            libc::_exit(127);
        }
        if cmd == 0 {
            command_main(plan, argv, envp, st);
        }
        say(st, TAG_PID, cmd);
        // Keep only the status and release pipes: the command's pipes must
        // reach EOF when the command's tree is done with them.
        let (lo, hi) = (st.min(rel), st.max(rel));
        for (a, b) in [(0, lo - 1), (lo + 1, hi - 1), (hi + 1, i32::MAX)] {
            if a <= b && libc::syscall(libc::SYS_close_range, a as u32, b as u32, 0) != 0 {
                // Before Linux 5.9: one by one, up to the fd limit.
                let top = b.min(libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 65536) as i32);
                for fd in a..=top {
                    libc::close(fd);
                }
            }
        }
        let pidfd = libc::syscall(libc::SYS_pidfd_open, cmd, 0) as i32;
        let mut done = false;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: rel,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if done { -1 } else { pidfd },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Without a pidfd (before Linux 5.3), look every 5 ms.
            let timeout = if done || pidfd >= 0 { 100 } else { 5 };
            libc::poll(fds.as_mut_ptr(), 2, timeout);
            loop {
                let mut status = 0;
                let r = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if r <= 0 {
                    break;
                }
                if r == cmd {
                    say(st, TAG_STATUS, status);
                    done = true;
                }
            }
            if fds[0].revents != 0 {
                break;
            }
        }
        libc::_exit(0)
    }
}

/// The command: its stdio, session, cgroup and fds, then exec.
///
/// # Safety
/// Only in the keeper's forked child; never returns.
unsafe fn command_main(
    plan: &Plan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    st: RawFd,
) -> ! {
    let fail = || failed(st);
    // SAFETY (whole function): as for `keeper_main`.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        if let Some(fd) = plan.cgroup {
            // Writing "0" moves the writer itself.
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail();
            }
        }
        if plan.terminal {
            if libc::setsid() < 0 {
                fail();
            }
        } else if libc::setpgid(0, 0) != 0 {
            fail();
        }
        for (i, &fd) in plan.stdio.iter().enumerate() {
            // dup2 onto itself is a no-op that keeps close-on-exec: a
            // harness started with fd 0-2 closed may hold a pipe there.
            let ok = if fd == i as i32 {
                libc::fcntl(fd, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, i as i32) >= 0
            };
            if !ok {
                fail();
            }
        }
        if plan.terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            fail();
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail();
        }
        for &fd in &plan.inherit {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                fail();
            }
        }
        // As a plain spawn: no blocked signals, SIGPIPE back to default
        // (the harness ignores it, and an ignored signal stays ignored
        // across exec).
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if let Some(f) = &plan.filter {
            if f.install().is_err() {
                fail();
            }
        }
        libc::execve(plan.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail()
    }
}

/// Reports the failed step's errno and exits (in the command's child).
fn failed(st: RawFd) -> ! {
    say(st, TAG_FAILED, errno());
    // SAFETY: _exit ends the process at once; always sound.
    unsafe { libc::_exit(127) }
}
