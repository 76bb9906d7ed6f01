//! Process-group housekeeping for drivers that spawn children: every child
//! leads its own group, the whole group is killed on timeout or fault, and
//! the group is signalled *before* the leader is reaped (an unreaped leader
//! keeps the group id from being reused by an unrelated process).
//!
//! A process that left the group (`setsid`) but still holds one of the
//! driver's pipes is found by the pipe itself ([`pipe_holders`]): the
//! harness owns the other end, so whatever holds it was started by the
//! driver, whatever it calls itself.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Sends SIGKILL to the process group `pgid`; a group that is already gone
/// is fine.
pub(crate) fn kill_group(pgid: u32) {
    let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
}

/// Waits up to `timeout` for `pid` to exit *without reaping it*; true when
/// it has exited (or is not our child any more).
pub(crate) fn exited_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    // A pidfd wakes us when it exits; without one (before Linux 5.3), poll.
    let fd = crate::pidfd::open(pid as i32);
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) | Err(_) => return true,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match &fd {
            Some(fd) => {
                let ms = left.as_millis().clamp(1, 1000) as u16;
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(5))),
        }
    }
}

/// Kills the group led by `child`, then reaps the leader.
pub(crate) fn kill_and_reap(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    kill_group(child.id());
    child.wait().ok()
}

/// Asks the group led by `child` to stop (SIGTERM), gives the leader
/// `grace` to exit, then kills the group and reaps the leader. A driver
/// gets the chance to tear down what it started (a sandbox's tree) before
/// it is killed.
pub(crate) fn terminate_and_reap(
    child: &mut std::process::Child,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if !grace.is_zero() {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        exited_within(child.id(), grace);
    }
    kill_and_reap(child)
}

/// The inode numbers of pipes, from descriptors of them.
pub(crate) fn pipe_inode(fd: impl AsFd) -> Option<u64> {
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// Processes other than this one with a descriptor on one of the pipes
/// `inodes`, read from /proc/*/fd (only processes this user may inspect,
/// which covers every process a driver of ours started).
pub(crate) fn pipe_holders(inodes: &[u64]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let names: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|t| names.iter().any(|n| t.as_os_str() == n.as_str()))
            })
        })
        .collect();
    found.sort_unstable();
    found
}

/// Kills every process that holds one of the pipes `inodes` and keeps
/// holding it: a holder seen in two scans 50 ms apart. A process forked by
/// another thread of the harness holds copies of every descriptor for the
/// moment until its exec closes them (they are close-on-exec); the second
/// scan keeps it from being mistaken for a leftover. Returns the pids
/// killed.
pub(crate) fn kill_pipe_holders(inodes: &[u64]) -> Vec<i32> {
    let first = pipe_holders(inodes);
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_millis(50));
    let again = pipe_holders(inodes);
    let stay: Vec<i32> = first.into_iter().filter(|p| again.contains(p)).collect();
    for &pid in &stay {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    stay
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    #[test]
    fn a_setsid_process_holding_a_pipe_is_found_and_killed() {
        // Close-on-exec, as std's pipes are: programs other tests start must
        // not inherit it (they would be holders too).
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let ino = pipe_inode(&r).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdout(Stdio::from(w))
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Parent side no longer holds the write end; only the child does.
        // (Another test's fork may hold a copy for a moment: `contains`.)
        assert!(pipe_holders(&[ino]).contains(&pid));
        assert!(kill_pipe_holders(&[ino]).contains(&pid));
        let st = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert!(!pipe_holders(&[ino]).contains(&pid));
        drop(r);
    }

    #[test]
    fn terminate_gives_the_leader_its_grace_then_kills() {
        // A leader that ignores SIGTERM is killed after the grace.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        // Signalled only once the trap is in place.
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
        let t0 = Instant::now();
        let st = terminate_and_reap(&mut child, Duration::from_millis(300)).unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?} {st:?}",
            t0.elapsed()
        );
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    }
}
