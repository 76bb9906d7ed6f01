//! Which processes are still alive, read from /proc.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
}
