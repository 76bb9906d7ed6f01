//! Which processes are still alive, read from /proc.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The state letter of `pid` from /proc/<pid>/stat (`R`, `S`, `Z`...), or
/// `None` if there is no such process (or /proc cannot tell).
pub(crate) fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain spaces and parentheses, so the
    // state is the first field after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Whether `pid` is a live process: it exists and is neither a zombie nor
/// dead. A zombie has finished running; it only waits to be reaped.
pub(crate) fn is_alive(pid: i32) -> bool {
    pid > 0 && !matches!(proc_state(pid), None | Some('Z' | 'X' | 'x'))
}

/// The pids among `pids` that are still alive (not gone, not zombies), for
/// the no-survivors check.
///
/// Pids are the host's: this reads the harness's /proc, so pids reported
/// from inside a sandbox with its own pid namespace are not comparable.
/// A pid may also have been reused by an unrelated process since it was
/// reported; that reads as a survivor. The window is small (the check runs
/// right after the run) and the error is on the safe side: a spurious
/// failure, never a missed survivor.
pub fn survivors(pids: &[i32]) -> Vec<i32> {
    pids.iter().copied().filter(|&pid| is_alive(pid)).collect()
}

/// Live processes (host pids) with an argument that is `marker` or a path
/// below it, read from every /proc/<pid>/cmdline the harness can see.
///
/// The harness runs each case's `${PROBE}` through a path of its own (a
/// link in a fresh directory, `marker`), so whatever a case's command starts
/// from the probe carries that path in its argv: this finds it by the
/// host's pids even when the backend runs the command in a pid namespace,
/// where pids the probe reports mean nothing to the host. Processes of
/// other users whose cmdline cannot be read are not seen (a sandbox runs
/// the command as the harness's user).
pub fn processes_naming(marker: &Path) -> Vec<i32> {
    let marker = marker.as_os_str().as_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline.split(|&b| b == 0).any(|arg| {
                    arg.strip_prefix(marker)
                        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
                })
            })
        })
        .filter(|&pid| is_alive(pid))
        .collect();
    found.sort_unstable();
    found
}

/// How long a process the backend has already sent SIGKILL may take to
/// be gone before it counts as a survivor. Such a process runs no code of
/// its own again; it only waits for a CPU to finish dying (tens of
/// milliseconds seen on a loaded machine).
pub const DYING_GRACE: Duration = Duration::from_secs(2);

/// Whether a /proc/<pid>/status text shows SIGKILL pending, for the thread
/// (`SigPnd`) or the whole process (`ShdPnd`).
fn sigkill_pending_in(status: &str) -> bool {
    let bit = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        ["SigPnd:", "ShdPnd:"].iter().any(|field| {
            line.strip_prefix(field)
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & bit != 0)
        })
    })
}

/// Whether `pid` has a SIGKILL pending: it is being killed.
pub(crate) fn sigkill_pending(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| sigkill_pending_in(&status))
}

/// Whether `pid` (alive just now) has exited by `deadline`. With a pidfd
/// the answer comes from the process itself: once it has exited, a new
/// process given the same pid cannot pass for it.
fn exits_by(pid: i32, deadline: Instant) -> bool {
    let Some(fd) = crate::pidfd::open(pid) else {
        // Gone already, or a kernel without pidfd_open: ask /proc.
        while is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        return !is_alive(pid);
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(u128::from(u16::MAX)) as u16;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Err(nix::errno::Errno::EINTR) => {}
            _ if left.is_zero() => return false,
            _ => {}
        }
    }
}

/// The processes among `pids` (found alive just now) that outlive the
/// run. A process the backend is already killing (SIGKILL pending) is
/// waited for, up to `grace` in all, and is a survivor only if it has not
/// exited by then: a backend that kills the tree as the command ends
/// (sandlock) may return while the kill is still on its way. Any other
/// live process is a survivor at once, without waiting.
pub fn outliving(pids: Vec<i32>, grace: Duration) -> Vec<i32> {
    let deadline = Instant::now() + grace;
    pids.into_iter()
        .filter(|&pid| {
            if sigkill_pending(pid) {
                !exits_by(pid, deadline)
            } else {
                is_alive(pid)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep")
    }

    #[test]
    fn a_running_child_survives() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        assert_eq!(survivors(&[pid]), vec![pid]);
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn a_reaped_child_does_not_survive() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(survivors(&[pid]), Vec::<i32>::new());
    }

    #[test]
    fn a_zombie_does_not_survive() {
        let mut child = sleeper();
        let pid = child.id() as i32;
        child.kill().expect("kill");
        // Not reaped yet: wait (without reaping) until it is a zombie.
        // SAFETY: siginfo_t is plain data, valid when zeroed; waitid with
        // WNOWAIT fills it and leaves the child unreaped.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(proc_state(pid), Some('Z'));
        assert!(survivors(&[pid]).is_empty());
        child.wait().expect("wait");
    }

    #[test]
    fn only_the_live_ones_are_reported() {
        let mut live = sleeper();
        let mut dead = sleeper();
        dead.kill().expect("kill");
        dead.wait().expect("wait");
        let (l, d) = (live.id() as i32, dead.id() as i32);
        assert_eq!(survivors(&[d, l, 0, -1]), vec![l]);
        live.kill().expect("kill");
        live.wait().expect("wait");
    }

    #[test]
    fn processes_naming_finds_a_command_by_an_argument_under_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("probe");
        // A shell waiting in its builtin `read` (on a pipe this test holds
        // open), with the marker as its $0: one process that never forks.
        // (A shell running `sleep` would fork, and the child carries the
        // shell's argv until it execs, which a scan can catch; `sleep`
        // with the marker as argv[0] is no good either: busybox picks its
        // applet by argv[0].)
        let mut child = Command::new("sh")
            .args(["-c", "read -r x"])
            .arg(&marker)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        let mut found = Vec::new();
        // /proc shows the new argv once exec is done: a moment after spawn.
        for _ in 0..200 {
            found = processes_naming(dir.path());
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(found, vec![pid]);
        assert_eq!(processes_naming(&marker), vec![pid]);
        // A path that is only a prefix of the argument's name is no match.
        assert!(processes_naming(&dir.path().join("pro")).is_empty());
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(processes_naming(dir.path()).is_empty());
    }

    #[test]
    fn sigkill_pending_is_read_from_either_mask() {
        let status = |sig: &str, shd: &str| format!("Name:\tx\nSigPnd:\t{sig}\nShdPnd:\t{shd}\n");
        assert!(!sigkill_pending_in(&status(
            "0000000000000000",
            "0000000000000000"
        )));
        assert!(sigkill_pending_in(&status(
            "0000000000000100",
            "0000000000000000"
        )));
        assert!(sigkill_pending_in(&status(
            "0000000000000000",
            "0000000000000100"
        )));
        // SIGTERM (bit 15) and SIGUSR1 (bit 10) pending: not a kill.
        assert!(!sigkill_pending_in(&status(
            "0000000000004200",
            "0000000000000000"
        )));
        assert!(!sigkill_pending_in("Name:\tx\n"));
    }

    #[test]
    fn a_live_process_outlives_at_once_and_a_killed_one_does_not() {
        let mut live = sleeper();
        let mut killed = sleeper();
        let (l, k) = (live.id() as i32, killed.id() as i32);
        assert!(!sigkill_pending(l));
        killed.kill().expect("kill");
        // Not reaped: a zombie, or still dying with SIGKILL pending; either
        // way it does not outlive. The live one is listed without waiting
        // (the grace is an hour: were it waited for, this would hang, not
        // pass quietly).
        assert_eq!(outliving(vec![l, k], Duration::from_secs(3600)), vec![l]);
        live.kill().expect("kill");
        live.wait().expect("wait");
        killed.wait().expect("wait");
    }
}
