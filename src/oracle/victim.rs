//! The victim: a harness-owned process outside any sandbox that a case
//! must not be able to signal (`${VICTIM_PID}`).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::survivors::proc_state;

/// How long the victim lives if nobody kills it.
const LIFETIME: &str = "300";
/// Upper bound on waiting for a victim that is neither sleeping nor dead
/// to settle (it is starting up, or exiting after a signal).
const SETTLE: Duration = Duration::from_secs(2);

/// A `sleep 300` process in its own process group.
pub struct Victim {
    child: Child,
    /// The harness's own child: never taken for an orphan.
    _own: super::tracker::OwnChild,
}

impl Victim {
    /// Spawns the victim.
    pub fn spawn() -> io::Result<Victim> {
        let child = Command::new("sleep")
            .arg(LIFETIME)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in the harness's group: a signal to the harness's group
            // must not count as the case's doing, nor the reverse.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("failed to spawn the victim process (sleep {LIFETIME}): {e}"),
                )
            })?;
        let own = super::tracker::own_child(child.id());
        Ok(Victim { child, _own: own })
    }

    /// The victim's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the victim is still alive; then kills and reaps it.
    ///
    /// A signal sent just before the run ended may not have finished the
    /// victim yet: kill(2) returns once the signal is queued and the
    /// victim woken, before it exits. An untouched victim sleeps (state
    /// `S`); a woken one runs (`R`/`D`) until it is a zombie, or goes back
    /// to sleep if the signal was harmless. So a victim that is neither
    /// asleep, stopped nor dead is watched until it settles, for at most
    /// [`SETTLE`]; still running then counts as alive.
    pub fn finish(mut self) -> bool {
        let alive = self.settled_alive();
        self.kill_and_reap();
        alive
    }

    fn settled_alive(&mut self) -> bool {
        let pid = self.child.id() as i32;
        let start = Instant::now();
        loop {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            match proc_state(pid) {
                Some('S' | 'T' | 't') => return true,
                Some('Z' | 'X' | 'x') => return false,
                // No /proc: the child is not reaped yet, so it lives.
                None => return true,
                Some(_) if start.elapsed() >= SETTLE => return true,
                Some(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn kill_and_reap(&mut self) {
        // Already dead is fine: the point is that it is gone afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}
