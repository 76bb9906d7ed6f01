//! Process-group housekeeping for drivers that spawn children: every child
//! leads its own group, the whole group is killed on timeout or fault, and
//! the group is signalled *before* the leader is reaped (an unreaped leader
//! keeps the group id from being reused by an unrelated process).

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
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
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) | Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the group led by `child`, then reaps the leader.
pub(crate) fn kill_and_reap(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    kill_group(child.id());
    child.wait().ok()
}
