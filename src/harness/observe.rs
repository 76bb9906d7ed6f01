//! What the harness watches around one run, besides the oracles: the
//! processes the run starts ([`RunTracker`]), the listening sockets it opens
//! (the inbound oracle), the kernel objects it leaves, and the files it is
//! handed (inherited fds).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::MutexGuard;
use std::time::Duration;

use crate::corpus::case::{Expect, FdOpen, InheritedFd, OracleKind};
use crate::driver::Attach;
use crate::oracle::inbound::Inbound;
use crate::oracle::objects::{self, Object, Snapshot};
use crate::oracle::tracker::{RunTracker, Survivor};
use crate::oracle::{Observations, Oracles};

/// The lowest number an inherited fd gets.
pub const FIRST_INHERITED: RawFd = 10;

/// File descriptors reserved for a run's inherited fds: their numbers are
/// known before the case's templates are expanded (`${FD_i}`), the files
/// are opened onto them after the setup made them.
#[derive(Debug, Default)]
pub struct InheritedFds {
    fds: Vec<OwnedFd>,
}

impl InheritedFds {
    /// Reserves `n` numbers (each a close-on-exec `/dev/null` for now),
    /// from [`FIRST_INHERITED`] up: below it a backend may keep fds of its
    /// own at fixed numbers (the reference puts its script pipe at 3).
    pub fn reserve(n: usize) -> Result<InheritedFds, String> {
        let mut fds = Vec::with_capacity(n);
        for _ in 0..n {
            let f = std::fs::File::open("/dev/null")
                .map_err(|e| format!("failed to reserve an fd number: {e}"))?;
            // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new one (or -1).
            let high =
                unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FIRST_INHERITED) };
            if high < 0 {
                return Err(format!(
                    "failed to reserve an fd number: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `high` was just returned by the kernel; nothing else owns it.
            fds.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) });
        }
        Ok(InheritedFds { fds })
    }

    /// The reserved numbers, in order (`FD_0`, `FD_1`…).
    pub fn numbers(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Opens each file as asked onto its reserved number (still
    /// close-on-exec: a driver makes it inheritable for its command only).
    pub fn open(&mut self, specs: &[InheritedFd]) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        for (spec, slot) in specs.iter().zip(&self.fds) {
            let mut o = std::fs::OpenOptions::new();
            let custom = match spec.open {
                FdOpen::Read => {
                    o.read(true);
                    0
                }
                FdOpen::Write => {
                    o.write(true);
                    0
                }
                FdOpen::ReadWrite => {
                    o.read(true).write(true);
                    0
                }
                FdOpen::Directory => {
                    o.read(true);
                    libc::O_DIRECTORY
                }
                FdOpen::Path => {
                    o.read(true);
                    libc::O_PATH
                }
            };
            let f = o
                .custom_flags(custom)
                .open(&spec.path)
                .map_err(|e| format!("failed to open inherited fd {}: {e}", spec.path))?;
            // SAFETY: both descriptors are open and owned here; dup3 makes
            // `slot`'s number refer to the file, atomically.
            let r = unsafe { libc::dup3(f.as_raw_fd(), slot.as_raw_fd(), libc::O_CLOEXEC) };
            if r < 0 {
                return Err(format!(
                    "failed to place inherited fd {}: {}",
                    spec.path,
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }
}

/// The observers of one run, started before the driver is asked.
pub struct Observers {
    tracker: RunTracker,
    inbound: Option<Inbound>,
    objects: Option<(MutexGuard<'static, ()>, Result<Snapshot, String>, u64)>,
}

/// What the observers saw after the run.
#[derive(Debug, Default)]
pub struct Observed {
    /// Processes the run left alive (killed since).
    pub survivors: Vec<Survivor>,
    /// The kernel objects it left (removed since), when the case asked.
    pub objects_left: Option<Result<Vec<Object>, String>>,
}

impl Observers {
    /// Starts tracking the run; `marker` is its `${PROBE}` link's directory.
    /// Kernel objects are listed first when `expect` checks them (and the
    /// run then holds [`objects::lock`] until it ends).
    pub fn start(marker: &std::path::Path, expect: &Expect) -> Observers {
        let objects = expect
            .host
            .as_ref()
            .and_then(|h| h.objects_left.as_ref())
            .map(|_| {
                let guard = objects::lock();
                let since = objects::since_now();
                (guard, Snapshot::take(), since)
            });
        Observers {
            tracker: RunTracker::start(Some(marker)),
            inbound: None,
            objects,
        }
    }

    /// An external driver (its pid) is about to run the command.
    pub fn attach_driver(&mut self, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.tracker.attach_driver(pid);
        }
    }

    /// Starts the inbound oracle when the case lists it (after
    /// [`Observers::attach_driver`], so it sees the driver's new processes).
    pub fn start_inbound(&mut self, kinds: &[OracleKind]) -> Result<(), String> {
        if kinds.contains(&OracleKind::Inbound) {
            let members = self.tracker.members_fn();
            self.inbound = Some(
                Inbound::start(members)
                    .map_err(|e| format!("failed to start the inbound oracle: {e}"))?,
            );
        }
        Ok(())
    }

    /// What to hand an in-process driver: the terminal, inherited fds and
    /// the run's cgroup.
    pub fn attach<'a>(&'a self, oracles: &'a Oracles, fds: &'a [RawFd]) -> Attach<'a> {
        Attach {
            terminal: oracles.terminal(),
            fds,
            cgroup_procs: self.tracker.cgroup().map(|c| c.procs_fd()),
            spawner: Some(self.tracker.spawner()),
        }
    }

    /// Stops the inbound oracle (its report goes into `seen`), sweeps the
    /// survivors and the kernel objects.
    pub fn finish(self, seen: &mut Observations, grace: Duration) -> Observed {
        seen.inbound = self.inbound.map(Inbound::finish);
        let survivors = self.tracker.finish(grace).survivors;
        let objects_left = self.objects.map(|(guard, before, since)| {
            let left = before.and_then(|b| b.left_by_run(since));
            if let Ok(left) = &left {
                for o in left {
                    // Best effort: a failure here leaves a named object,
                    // and the case fails naming it anyway.
                    let _ = o.remove();
                }
            }
            drop(guard);
            left
        });
        Observed {
            survivors,
            objects_left,
        }
    }
}
