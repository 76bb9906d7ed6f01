//! The supervisor S: starts the command, waits for it with the deadline,
//! kills and reaps whatever is left of the tree, reports.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use super::command::command_entry;
use super::raw::*;
use super::{
    ChildPlan, Report, Shared, Stage, FD_CANCEL, FD_CGROUP, FD_FIRST_FREE, FD_RULESET, FD_SCRIPT,
};

// ---------------------------------------------------------------------------
// The supervisor S. Everything from here on runs in S or G: raw syscalls,
// no panics, no heap, no TLS (module docs).

/// S's entry point.
///
/// # Safety
/// `arg` is the region's initialised [`Shared`] block.
pub(super) unsafe extern "C" fn supervisor_entry(arg: *mut c_void) -> ! {
    // SAFETY: the caller initialised the block and the plan it points to,
    // and keeps both alive and unchanged until S is reaped.
    let (shared, plan) = unsafe {
        let shared = &*arg.cast::<Shared>();
        (shared, &*shared.plan.cast::<ChildPlan<'_>>())
    };
    supervisor(plan, shared)
}

fn report(shared: &Shared, r: Report) -> ! {
    shared.wait_status.store(r.wait_status, Ordering::Relaxed);
    shared
        .timed_out
        .store(u32::from(r.timed_out), Ordering::Relaxed);
    shared
        .cancelled
        .store(u32::from(r.cancelled), Ordering::Relaxed);
    shared.stage.store(r.stage as u32, Ordering::Relaxed);
    shared.errno.store(r.errno, Ordering::Relaxed);
    shared.reported.store(1, Ordering::Release);
    exit(0)
}

/// Reports a failure before the command ran, and exits.
fn report_failure(shared: &Shared, stage: Stage, errno: i32) -> ! {
    report(
        shared,
        Report {
            wait_status: 0,
            timed_out: false,
            cancelled: false,
            stage,
            errno,
        },
    )
}

/// What G gets from S: lives in S's frame, which stays put while G runs
/// (S is suspended until G execs or exits; with the fork fallback G has its
/// own copy).
pub(super) struct CommandArgs<'p> {
    pub(super) plan: &'p ChildPlan<'p>,
    pub(super) shared: &'p Shared,
    pub(super) supervisor: isize,
}

fn supervisor(plan: &ChildPlan<'_>, shared: &Shared) -> ! {
    // SAFETY: prctl/getppid with integer arguments.
    unsafe {
        if check(sys!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL)).is_err()
            || sys!(libc::SYS_getppid) != plan.parent_pid as isize
        {
            exit(1);
        }
        if let Err(e) = check(sys!(libc::SYS_prctl, libc::PR_SET_CHILD_SUBREAPER, 1)) {
            report_failure(shared, Stage::Supervisor, e);
        }
    }
    // S waits for its children: a caller that ignores SIGCHLD would have
    // them reaped by the kernel, and their statuses lost.
    set_default(libc::SIGCHLD);
    if let Err(e) = place_fds(plan) {
        report_failure(shared, Stage::Supervisor, e);
    }
    if plan.ctty {
        // SAFETY: setsid and ioctl(TIOCSCTTY) take integers only.
        let r = unsafe {
            check(sys!(libc::SYS_setsid))
                .and_then(|_| check(sys!(libc::SYS_ioctl, 0, libc::TIOCSCTTY, 0)))
        };
        if let Err(e) = r {
            report_failure(shared, Stage::Supervisor, e);
        }
    }
    let deadline = plan.timeout.map(|t| (now(), t));
    let args = CommandArgs {
        plan,
        shared,
        // SAFETY: getpid takes nothing.
        supervisor: unsafe { sys!(libc::SYS_getpid) },
    };
    // SAFETY: G runs `command_entry` on its own stack in the region; with
    // CLONE_VFORK this frame (and `args`) stays untouched until G execs or
    // exits. `command_entry` keeps to the rules of the module docs.
    let r = unsafe {
        start_command(
            shared.command_stack,
            command_entry,
            (&args as *const CommandArgs<'_>).cast_mut().cast(),
        )
    };
    let child = match check(r) {
        Ok(pid) => pid as libc::pid_t,
        Err(e) => report_failure(shared, Stage::Fork, e),
    };
    shared.command_pid.store(child, Ordering::Relaxed);
    // S needs none of its fds but the cancel pipe any more: closing them
    // lets the caller see EOF on the output pipes as soon as the tree is
    // gone.
    close_range(0, FD_CANCEL - 1);
    close_from(FD_CANCEL + 1);

    let ended = wait_command(plan, child, deadline);
    let status = reap(child);
    if plan.on.kill_tree {
        kill_tree(child);
    }
    let stage = shared.command_stage.load(Ordering::Relaxed);
    if stage != Stage::None as u32 {
        let errno = shared.command_errno.load(Ordering::Relaxed);
        report_failure(shared, Stage::from_u32(stage), errno);
    }
    report(
        shared,
        Report {
            wait_status: status,
            timed_out: ended == Ended::TimedOut,
            cancelled: ended == Ended::Cancelled,
            stage: Stage::None,
            errno: 0,
        },
    )
}

/// Moves the plan's fds to G's fixed layout (0, 1, 2, script, ruleset,
/// cgroup) and closes every other fd. Returns the errno of a failure.
fn place_fds(plan: &ChildPlan<'_>) -> Result<(), i32> {
    let moves = [
        (plan.stdin, 0, false),
        (plan.stdout, 1, false),
        (plan.stderr, 2, false),
        (plan.script, FD_SCRIPT, false),
        (plan.ruleset, FD_RULESET, true),
        (plan.cgroup_procs, FD_CGROUP, true),
        (plan.cancel, FD_CANCEL, true),
    ];
    // A source inside the target range, not already in place, might be
    // overwritten by an earlier move: lift it out of the range first. Other
    // sources are safe (targets are distinct, and a source in place is no
    // other move's target).
    let mut sources = moves.map(|(src, _, _)| src);
    for (src, &(_, dst, _)) in sources.iter_mut().zip(&moves) {
        if *src >= 0 && *src < FD_FIRST_FREE && *src != dst {
            // SAFETY: fcntl on an fd of this process.
            let r = unsafe { sys!(libc::SYS_fcntl, *src, libc::F_DUPFD_CLOEXEC, FD_FIRST_FREE) };
            *src = check(r)? as i32;
        }
    }
    for (&src, &(_, dst, cloexec)) in sources.iter().zip(&moves) {
        // SAFETY (all three): fd operations on fds of this process.
        let r = if src < 0 {
            // Nothing to place: free the number for the command.
            unsafe { sys!(libc::SYS_close, dst) };
            0
        } else if src == dst {
            let fl = if cloexec { libc::FD_CLOEXEC } else { 0 };
            unsafe { sys!(libc::SYS_fcntl, dst, libc::F_SETFD, fl) }
        } else {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            unsafe { sys!(libc::SYS_dup3, src, dst, fl) }
        };
        check(r)?;
    }
    if plan.on.close_fds {
        close_from(FD_FIRST_FREE);
    }
    Ok(())
}

/// `struct rlimit64` of `prlimit64`.
#[repr(C)]
pub(super) struct Rlimit64 {
    pub(super) cur: u64,
    pub(super) max: u64,
}

/// Closes fds `first..=last`.
fn close_range(first: i32, last: i32) {
    // SAFETY: close_range takes integers only.
    if check(unsafe { sys!(libc::SYS_close_range, first, last, 0) }).is_ok() {
        return;
    }
    // Kernels before 5.9: one by one.
    for fd in first..=last {
        // SAFETY: closing fds this process does not need; harmless if unused.
        unsafe { sys!(libc::SYS_close, fd) };
    }
}

/// Closes every fd from `first` up.
fn close_from(first: i32) {
    // SAFETY: close_range takes integers only.
    if check(unsafe { sys!(libc::SYS_close_range, first, u32::MAX, 0) }).is_ok() {
        return;
    }
    // Kernels before 5.9: one by one up to the fd limit.
    let mut rl = Rlimit64 { cur: 0, max: 0 };
    // SAFETY: prlimit64 reading into a live local.
    let r = unsafe {
        sys!(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            0,
            &mut rl as *mut Rlimit64
        )
    };
    let max = if r == 0 {
        rl.cur.min(1 << 20) as i32
    } else {
        1024
    };
    for fd in first..max {
        // SAFETY: closing fds this process does not need; harmless if unused.
        unsafe { sys!(libc::SYS_close, fd) };
    }
}

fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe {
        sys!(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC,
            &mut ts as *mut libc::timespec
        )
    };
    ts
}

fn nanos(t: libc::timespec) -> i128 {
    (t.tv_sec as i128)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as i128)
}

/// Remaining time until `start + timeout`, or `None` when it has passed.
fn remaining(start: libc::timespec, timeout: libc::timespec) -> Option<libc::timespec> {
    let left = nanos(start)
        .saturating_add(nanos(timeout))
        .saturating_sub(nanos(now()));
    if left <= 0 {
        return None;
    }
    Some(libc::timespec {
        tv_sec: (left / 1_000_000_000) as _,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    })
}

/// Reaps `child`; returns its wait status.
fn reap(child: libc::pid_t) -> i32 {
    let mut status = 0i32;
    loop {
        // SAFETY: wait4 on our child with a live status pointer.
        let r = unsafe { sys!(libc::SYS_wait4, child, &mut status as *mut i32, 0, 0) };
        if check(r) != Err(libc::EINTR) {
            return status;
        }
    }
}

/// How the wait for the command ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The command exited (or S has nothing to wait with: no deadline, no
    /// cancel pipe; [`reap`] blocks then).
    Exited,
    /// The deadline fired; the command's group was killed.
    TimedOut,
    /// A cancel signal came; it was forwarded, and after the grace the
    /// command's group was killed.
    Cancelled,
}

/// SIGKILLs the command's process group and the command.
fn kill_command(child: libc::pid_t) {
    // SAFETY: kill with integers; the group is the command's.
    unsafe {
        sys!(libc::SYS_kill, -child, libc::SIGKILL);
        sys!(libc::SYS_kill, child, libc::SIGKILL);
    }
}

/// Waits for `child` to exit, the deadline to pass or a cancel byte to
/// come. The command is not reaped here.
fn wait_command(
    plan: &ChildPlan<'_>,
    child: libc::pid_t,
    deadline: Option<(libc::timespec, libc::timespec)>,
) -> Ended {
    let mut cancel = if plan.cancel >= 0 { FD_CANCEL } else { -1 };
    if deadline.is_none() && cancel < 0 {
        return Ended::Exited;
    }
    // SAFETY: pidfd_open takes integers only.
    let pidfd = check(unsafe { sys!(libc::SYS_pidfd_open, child, 0) })
        .map(|fd| fd as i32)
        .unwrap_or(-1);
    loop {
        let left = match deadline {
            Some((start, timeout)) => match remaining(start, timeout) {
                Some(left) => Some(left),
                None => {
                    kill_command(child);
                    return Ended::TimedOut;
                }
            },
            None => None,
        };
        // Without a pidfd (kernel < 5.3) look every millisecond.
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        let wait = if pidfd < 0 { Some(tick) } else { left };
        let mut fds = [
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: cancel,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll(&mut fds, wait.as_ref());
        if fds[0].revents != 0 || (pidfd < 0 && exited(child)) {
            return Ended::Exited;
        }
        if fds[1].revents != 0 {
            let mut sig = 0u8;
            // SAFETY: peek at one byte into a live local (other runs watch
            // the same canceller: the byte stays for them).
            let r = unsafe {
                sys!(
                    libc::SYS_recvfrom,
                    FD_CANCEL,
                    &mut sig as *mut u8,
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    0,
                    0
                )
            };
            if check(r) != Ok(1) {
                // The canceller is gone without cancelling: nothing to watch.
                cancel = -1;
                continue;
            }
            forward(child, i32::from(sig));
            let grace = match left {
                Some(l) if nanos(l) < nanos(plan.grace) => l,
                _ => plan.grace,
            };
            let start = now();
            while let Some(rest) = remaining(start, grace) {
                let mut p = [libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let wait = if pidfd < 0 { tick } else { rest };
                poll(&mut p, Some(&wait));
                if p[0].revents != 0 || (pidfd < 0 && exited(child)) {
                    break;
                }
            }
            kill_command(child);
            return Ended::Cancelled;
        }
    }
}

/// `ppoll` on `fds` (negative fds are ignored), up to `timeout`.
fn poll(fds: &mut [libc::pollfd], timeout: Option<&libc::timespec>) {
    let t = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: ppoll on live pollfds with a live (or null) timespec and no
    // signal mask.
    unsafe {
        sys!(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len(),
            t,
            0,
            SIGSET_SIZE
        )
    };
}

/// Whether `child` has exited, without reaping it.
fn exited(child: libc::pid_t) -> bool {
    // SAFETY: a zeroed siginfo is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with WNOWAIT fills a live siginfo.
    let r = unsafe {
        sys!(
            libc::SYS_waitid,
            libc::P_PID,
            child,
            &mut info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            0
        )
    };
    // SAFETY: si_pid is valid for a filled (or zeroed) siginfo.
    r == 0 && unsafe { info.si_pid() } == child
}

/// Sends a cancel signal to the command's group, the command, and every
/// orphan S holds (processes that left the group, e.g. with setsid).
fn forward(child: libc::pid_t, sig: i32) {
    let sig = if (1..=64).contains(&sig) {
        sig
    } else {
        libc::SIGTERM
    };
    // SAFETY: kill with integers; the group is the command's.
    unsafe {
        sys!(libc::SYS_kill, -child, sig);
        sys!(libc::SYS_kill, child, sig);
    }
    signal_children(sig);
}

/// Kills and reaps every remaining process of the tree. S is a subreaper,
/// so every descendant whose parent died is its child: when S has no child
/// left the tree is gone, and killing all its children, over and over,
/// ends it (SIGKILLed processes do not fork, and their orphans come to S).
fn kill_tree(leader: libc::pid_t) {
    let mut group_killed = false;
    loop {
        loop {
            // SAFETY: reap without blocking; status not needed.
            let r = unsafe { sys!(libc::SYS_wait4, -1i32, 0, libc::WNOHANG, 0) };
            match check(r) {
                Err(libc::ECHILD) => return,
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if !group_killed && leader > 0 {
            // SAFETY: kill with integers; the group is the command's.
            unsafe { sys!(libc::SYS_kill, -leader, libc::SIGKILL) };
            group_killed = true;
        }
        signal_children(libc::SIGKILL);
        // SAFETY: block until one of them is gone (or, for a child that
        // could not be listed, until it exits).
        unsafe { sys!(libc::SYS_wait4, -1i32, 0, 0, 0) };
    }
}

/// Sends `sig` to every pid in `/proc/thread-self/children`.
fn signal_children(sig: i32) {
    const PATH: &[u8] = b"/proc/thread-self/children\0";
    // SAFETY: openat with a NUL-terminated static path.
    let r = unsafe {
        sys!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            PATH.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0
        )
    };
    let Ok(fd) = check(r) else { return };
    let kill = |pid: u32| {
        let pid = pid as i32;
        if pid > 0 {
            // SAFETY: kill with integers, on a positive pid (never a group).
            unsafe { sys!(libc::SYS_kill, pid, sig) };
        }
    };
    let mut buf = [0u8; 4096];
    let mut cur: Option<u32> = None;
    loop {
        // SAFETY: read into a live buffer of its length.
        let r = unsafe { sys!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        let n = match check(r) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &c in buf.iter().take(n) {
            if c.is_ascii_digit() {
                let digit = u32::from(c.wrapping_sub(b'0'));
                cur = Some(cur.unwrap_or(0).wrapping_mul(10).wrapping_add(digit));
            } else if let Some(pid) = cur.take() {
                kill(pid);
            }
        }
    }
    if let Some(pid) = cur {
        kill(pid);
    }
    // SAFETY: closing our fd.
    unsafe { sys!(libc::SYS_close, fd) };
}
