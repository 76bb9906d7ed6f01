//! Survivors, found by the host's own means: what a run started and left
//! alive, whatever it calls itself (a renamed argv[0], `prctl` names) and
//! whatever it runs (it may have exec'd another program).
//!
//! Four finders, each recorded in [`Survivor::found_by`]:
//! - **cgroup**: where one can be made (root, cgroup2), every run has its
//!   own ([`super::cgroup`]). The `none` driver's command joins it before
//!   exec; an external driver is moved into it for the run and out again,
//!   so everything it forks meanwhile lands there.
//! - **tree**: an external driver's descendants that did not exist before
//!   the run; the descendants of everything the other finders found.
//! - **orphan**: the harness is a child subreaper, so a process whose
//!   parent died is re-parented to the harness instead of init, and stays
//!   findable: a child of the harness's main thread that the harness did
//!   not start itself ([`own_child`]). Which run it came from is told by
//!   its cgroup when it has one; otherwise by its start time, which must
//!   fall within the run's window. With runs in parallel and no cgroup, an
//!   orphan that started while several ran is blamed on each of them
//!   (never on none: a survivor is never missed).
//! - **argv**: processes carrying the run's `${PROBE}` link in their argv
//!   (the finder from before; one more, cheap, witness).
//!
//! After the run ([`RunTracker::finish`]) every survivor is listed (pid,
//! comm, finders), killed, and, when it is the harness's child, reaped.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::{CgroupRoot, RunCgroup};
use super::procs::{self, ProcInfo, ProcKey};
use super::survivors::{processes_naming, sigkill_pending};

/// How a survivor was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// It was in the run's cgroup.
    Cgroup,
    /// It descended from the run's driver, or from another survivor.
    Tree,
    /// It was re-parented to the harness, and started during the run.
    Orphan,
    /// Its argv carried the run's `${PROBE}` link.
    Argv,
}

/// A process a run left alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Survivor {
    /// The host pid.
    pub pid: i32,
    /// Its name (`comm`) when found.
    pub comm: String,
    /// Every finder that saw it.
    pub found_by: Vec<FoundBy>,
}

impl std::fmt::Display for Survivor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how: Vec<String> = self
            .found_by
            .iter()
            .map(crate::corpus::vocab::name_of)
            .collect();
        write!(f, "{} ({}, by {})", self.pid, self.comm, how.join("+"))
    }
}

/// What the harness can use to find survivors on this host, decided once.
#[derive(Debug)]
pub struct Tracking {
    cgroups: Result<CgroupRoot, String>,
    /// The harness is a child subreaper and can list its main thread's
    /// children: orphans are found.
    orphans: Result<(), String>,
}

/// Live runs' windows and the orphans seen so far (for blaming an orphan on
/// every run whose window holds its start, see the module docs).
#[derive(Default)]
struct Ledger {
    next: u64,
    /// Run id → (start tick, end tick once finished).
    windows: BTreeMap<u64, (u64, Option<u64>)>,
    /// Orphans found (and killed) by a sweep, with their names.
    orphans: BTreeMap<ProcKey, String>,
}

fn ledger() -> std::sync::MutexGuard<'static, Ledger> {
    static L: OnceLock<Mutex<Ledger>> = OnceLock::new();
    L.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn own() -> std::sync::MutexGuard<'static, HashSet<i32>> {
    static OWN: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    OWN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A child the harness started itself (a driver, a victim, a command it
/// spawns): never taken for an orphan while the guard lives.
#[derive(Debug)]
pub struct OwnChild(i32);

/// Registers `pid` as the harness's own child until the guard drops.
pub fn own_child(pid: u32) -> OwnChild {
    let pid = pid as i32;
    own().insert(pid);
    OwnChild(pid)
}

impl Drop for OwnChild {
    fn drop(&mut self) {
        own().remove(&self.0);
    }
}

static TRACKING: OnceLock<Tracking> = OnceLock::new();

impl Tracking {
    /// The tracking in use, if a harness started it in this process.
    pub fn started() -> Option<&'static Tracking> {
        TRACKING.get()
    }

    /// Probes the host once: makes the harness a child subreaper and finds
    /// a cgroup2 hierarchy to make run cgroups in.
    pub fn get() -> &'static Tracking {
        TRACKING.get_or_init(|| {
            let me = std::process::id() as i32;
            let orphans = if procs::thread_children(me, me).is_none() {
                Err("this kernel does not list a thread's children (CONFIG_PROC_CHILDREN)".into())
            } else {
                // SAFETY: prctl with integer arguments only.
                let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
                if r == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "failed to become a child subreaper: {}",
                        std::io::Error::last_os_error()
                    ))
                }
            };
            // The directory may exist (made by root) and still be closed
            // to this user: try one run cgroup.
            let cgroups = CgroupRoot::find().and_then(|root| {
                root.create_run()
                    .map(drop)
                    .map(|()| root)
                    .map_err(|e| e.to_string())
            });
            Tracking { cgroups, orphans }
        })
    }

    /// Whether runs get cgroups.
    pub fn has_cgroups(&self) -> bool {
        self.cgroups.is_ok()
    }

    /// One line for reports: which finders work here, and what the
    /// fallback cannot do.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.cgroups {
            Ok(root) => parts.push(format!("a cgroup per run (under {})", root.dir().display())),
            Err(why) => parts.push(format!("no cgroup per run ({why})")),
        }
        parts.push(
            "process trees (the none driver's keeper, external drivers made subreapers, the \
             reference's supervisor)"
                .into(),
        );
        match (&self.orphans, &self.cgroups) {
            (Ok(()), Ok(_)) => parts.push(
                "orphans that escape those reach the harness (a child subreaper), told apart by \
                 cgroup"
                    .into(),
            ),
            (Ok(()), Err(_)) => parts.push(
                "orphans that escape those reach the harness (a child subreaper) and are told \
                 apart by start time only: with runs in parallel such an orphan is blamed on \
                 every run in progress when it started"
                    .into(),
            ),
            (Err(why), _) => parts.push(format!(
                "no orphan tracking ({why}): a process whose parent and every subreaper above \
                 it died goes to init, and is found only by cgroup or argv"
            )),
        }
        parts.push("the probe's argv".into());
        parts.join("; ")
    }
}

/// Tracks one run: start it before the driver runs anything.
#[derive(Debug)]
pub struct RunTracker {
    id: u64,
    start: u64,
    cgroup: Option<RunCgroup>,
    cgroup_error: Option<String>,
    marker: Option<PathBuf>,
    /// An external driver: (its pid, its cgroup before the run, the
    /// descendants it had before the run).
    driver: Option<(i32, Option<String>, BTreeSet<ProcKey>)>,
    /// The thread an in-process driver forks the command from (0: none
    /// yet): its children and their descendants are the run's.
    spawner: Arc<AtomicI32>,
}

/// What a run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// The survivors, by pid; each has been killed.
    pub survivors: Vec<Survivor>,
}

impl RunTracker {
    /// Opens the run's window (and cgroup, where possible). `marker` is
    /// the directory of the run's `${PROBE}` link.
    pub fn start(marker: Option<&Path>) -> RunTracker {
        let tracking = Tracking::get();
        let (cgroup, cgroup_error) = match &tracking.cgroups {
            Ok(root) => match root.create_run() {
                Ok(cg) => (Some(cg), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(why) => (None, Some(why.clone())),
        };
        let start = procs::now_ticks();
        let id = {
            let mut l = ledger();
            l.next += 1;
            let id = l.next;
            l.windows.insert(id, (start, None));
            id
        };
        RunTracker {
            id,
            start,
            cgroup,
            cgroup_error,
            marker: marker.map(Path::to_path_buf),
            driver: None,
            spawner: Arc::new(AtomicI32::new(0)),
        }
    }

    /// Where an in-process driver says which thread forks the command (see
    /// `crate::driver::Attach::spawner`).
    pub fn spawner(&self) -> &AtomicI32 {
        &self.spawner
    }

    /// The run's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&RunCgroup> {
        self.cgroup.as_ref()
    }

    /// Why the run has no cgroup.
    pub fn cgroup_error(&self) -> Option<&str> {
        self.cgroup_error.as_deref()
    }

    /// An external driver is about to run the command: remember what it
    /// already had running, and move it into the run's cgroup.
    pub fn attach_driver(&mut self, pid: u32) {
        let pid = pid as i32;
        let table = procs::table();
        let before = procs::descendants(&table, &[pid])
            .into_iter()
            .filter_map(|p| table.get(&p).map(ProcInfo::key))
            .collect();
        let mut home = None;
        if let Some(cg) = &self.cgroup {
            home = procs::cgroup2_path(pid);
            if cg.add(pid).is_err() {
                home = None;
            }
        }
        self.driver = Some((pid, home, before));
    }

    /// The driver answered: move it back where it was, so what it forks
    /// between runs is not counted.
    pub fn detach_driver(&mut self) {
        let (Some((pid, Some(home), _)), Some(cg)) = (&self.driver, &self.cgroup) else {
            return;
        };
        if let Some(mount) = mount_of(cg) {
            let target = mount
                .join(home.trim_start_matches('/'))
                .join("cgroup.procs");
            let _ = super::cgroup::write_pid(&target, *pid);
        }
    }

    /// A function listing the run's live processes at the moment it is
    /// called (for the inbound oracle, on its own thread): the cgroup's
    /// members, the driver's new descendants, the marked ones, and what
    /// those started.
    pub fn members_fn(&self) -> super::inbound::Members {
        let cgroup_dir = self.cgroup.as_ref().map(|c| c.dir().to_path_buf());
        let driver = self
            .driver
            .as_ref()
            .map(|(pid, _, before)| (*pid, before.clone()));
        let marker = self.marker.clone();
        let spawner = Arc::clone(&self.spawner);
        Box::new(move || {
            let table = procs::table();
            let mut found: BTreeSet<i32> = BTreeSet::new();
            found.extend(spawned(&table, spawner.load(Ordering::Acquire)));
            if let Some(dir) = &cgroup_dir {
                found.extend(super::cgroup::members_of(dir));
            }
            if let Some((pid, before)) = &driver {
                found.extend(
                    procs::descendants(&table, &[*pid])
                        .into_iter()
                        .filter(|p| table.get(p).is_some_and(|i| !before.contains(&i.key()))),
                );
            }
            if let Some(m) = &marker {
                found.extend(processes_naming(m));
            }
            let roots: Vec<i32> = found.iter().copied().collect();
            found.extend(procs::descendants(&table, &roots));
            if let Some((pid, _)) = &driver {
                found.remove(pid);
            }
            found.into_iter().collect()
        })
    }

    /// Closes the window, finds every survivor, kills it and reaps what is
    /// the harness's child. A process with SIGKILL pending (the backend is
    /// already killing it) is given up to `grace` to be gone first.
    ///
    /// A survivor is a process of the run seen alive after the run ended,
    /// even if it is gone a moment later: a chain of processes that fork
    /// the next one and exit every few milliseconds is never the same pid
    /// twice. So the run's cgroup is frozen first (its chain stops), and
    /// finding and killing repeat until a look finds nothing of the run
    /// alive (or 2 s have passed).
    pub fn finish(mut self, grace: Duration) -> Sweep {
        self.detach_driver();
        let end = procs::now_ticks();
        {
            let mut l = ledger();
            l.windows.insert(self.id, (self.start, Some(end)));
        }
        if let Some(cg) = &self.cgroup {
            cg.freeze();
        }
        let deadline = Instant::now() + SWEEP_LIMIT;
        let mut seen: BTreeMap<ProcKey, (String, BTreeSet<FoundBy>)> = BTreeMap::new();
        let mut dying: BTreeMap<ProcKey, (String, BTreeSet<FoundBy>)> = BTreeMap::new();
        let mut quiet = 0;
        let mut quiet_since = Instant::now();
        for round in 0.. {
            // The argv scan reads the whole process table: first and every
            // tenth look, and the look that would end the sweep (a chain
            // seen only by its argv can be missed by one scan: its one live
            // link changes pid while the table is read).
            let full = round % 10 == 0 || quiet + 1 >= QUIET_LOOKS;
            let (live, gone) = self.find(end, full);
            // Killed by another run's sweep, but this run's survivor too.
            for (k, v) in gone {
                seen.entry(k).or_insert(v);
            }
            // One empty look may fall between a process's fork and its
            // child's first appearance: done after several in a row,
            // longer than a chain step in all.
            if live.is_empty() {
                if quiet == 0 {
                    quiet_since = Instant::now();
                }
                quiet += 1;
            } else {
                quiet = 0;
            }
            // After a chase (something was found and killed), quiet must
            // also last CHASE_QUIET: on a slow machine (TCG in the kernel
            // matrix) a chain's fork takes far longer than its 10 ms step,
            // and a link left mid-fork goes on into the next run.
            let chased = !seen.is_empty() || !dying.is_empty();
            let settled = quiet >= QUIET_LOOKS && (!chased || quiet_since.elapsed() >= CHASE_QUIET);
            if settled || Instant::now() >= deadline {
                break;
            }
            for (k, v) in live {
                if seen.contains_key(&k) || dying.contains_key(&k) {
                    continue;
                }
                if sigkill_pending(k.pid) {
                    dying.insert(k, v);
                } else {
                    kill(k);
                    seen.insert(k, v);
                }
            }
            if let Some(cg) = &self.cgroup {
                cg.kill_now();
            }
            std::thread::sleep(LOOK_PAUSE);
        }
        // The backend was killing these: each gets the grace to be gone.
        let grace_end = Instant::now() + grace;
        for (k, v) in dying {
            if !exits_by(k, grace_end) {
                kill(k);
                seen.insert(k, v);
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.kill();
            cg.thaw();
        }
        for k in seen.keys() {
            reap(k.pid);
        }
        let mut l = ledger();
        l.windows.remove(&self.id);
        // An orphan can only still be blamed on a run that was open when
        // it started.
        let oldest_open = l.windows.values().map(|(s, _)| *s).min();
        l.orphans
            .retain(|k, _| oldest_open.is_some_and(|s| k.start + 2 >= s));
        Sweep {
            survivors: seen
                .into_iter()
                .map(|(k, (comm, how))| Survivor {
                    pid: k.pid,
                    comm,
                    found_by: how.into_iter().collect(),
                })
                .collect(),
        }
    }

    /// Every process of this run alive now, with its finders; and the
    /// orphans of this run's window another run's sweep killed already.
    #[allow(clippy::type_complexity)]
    fn find(
        &self,
        end: u64,
        full_scan: bool,
    ) -> (
        BTreeMap<ProcKey, (String, BTreeSet<FoundBy>)>,
        BTreeMap<ProcKey, (String, BTreeSet<FoundBy>)>,
    ) {
        let mut found: BTreeMap<i32, BTreeSet<FoundBy>> = BTreeMap::new();
        fn add(found: &mut BTreeMap<i32, BTreeSet<FoundBy>>, pid: i32, how: FoundBy) {
            found.entry(pid).or_default().insert(how);
        }
        // Below `roots`: by the children files (quick), or the whole table.
        let below = |roots: &[i32]| {
            procs::descendants_walk(roots)
                .unwrap_or_else(|| procs::descendants(&procs::table(), roots))
        };
        if let Some(cg) = &self.cgroup {
            for p in cg.members() {
                add(&mut found, p, FoundBy::Cgroup);
            }
        }
        if let Some((pid, _, before)) = &self.driver {
            for p in below(&[*pid]) {
                if procs::stat(p).is_some_and(|i| !before.contains(&i.key())) {
                    add(&mut found, p, FoundBy::Tree);
                }
            }
        }
        if full_scan {
            if let Some(m) = &self.marker {
                for p in processes_naming(m) {
                    add(&mut found, p, FoundBy::Argv);
                }
            }
        }
        let tid = self.spawner.load(Ordering::Acquire);
        if tid != 0 {
            let me = std::process::id() as i32;
            let own = own().clone();
            let children = procs::thread_children(me, tid).unwrap_or_default();
            for &p in children.iter().filter(|p| !own.contains(p)) {
                add(&mut found, p, FoundBy::Tree);
            }
            // What a keeper (the harness's own) holds is the run's.
            for p in below(&children) {
                add(&mut found, p, FoundBy::Tree);
            }
        }
        let mut ledger_hits = Vec::new();
        // Orphans blamed by their start time alone: other runs whose
        // window holds it must be told (see `Ledger`).
        let mut by_window = BTreeSet::new();
        if Tracking::get().orphans.is_ok() {
            let (lo, hi) = (self.start.saturating_sub(2), end + 2);
            let me = std::process::id() as i32;
            let own = own().clone();
            for p in procs::thread_children(me, me).unwrap_or_default() {
                if own.contains(&p) {
                    continue;
                }
                let Some(info) = procs::stat(p) else { continue };
                let in_window = (lo..=hi).contains(&info.start);
                let blame = match procs::cgroup2_path(p) {
                    // In a run cgroup: that run's, and only that run's.
                    Some(path) if path.contains(&format!("/{}/", super::cgroup::PARENT)) => {
                        self.cgroup.as_ref().is_some_and(|cg| cg.holds(&path))
                    }
                    _ => {
                        if in_window {
                            by_window.insert(p);
                        }
                        in_window
                    }
                };
                if blame && info.is_live() {
                    add(&mut found, p, FoundBy::Orphan);
                }
            }
            let l = ledger();
            for (k, comm) in &l.orphans {
                if (lo..=hi).contains(&k.start) && !found.contains_key(&k.pid) {
                    ledger_hits.push((*k, comm.clone()));
                }
            }
        }
        // Whatever the survivors started belongs to the run too.
        let roots: Vec<i32> = found.keys().copied().collect();
        for p in below(&roots) {
            add(&mut found, p, FoundBy::Tree);
        }
        if let Some((pid, _, _)) = &self.driver {
            found.remove(pid);
        }
        found.remove(&(std::process::id() as i32));
        let mut out = BTreeMap::new();
        let mut orphans_seen = Vec::new();
        for (pid, how) in found {
            let Some(info) = procs::stat(pid) else {
                continue;
            };
            if !info.is_live() {
                continue;
            }
            if by_window.contains(&pid) {
                orphans_seen.push((info.key(), info.comm.clone()));
            }
            out.insert(info.key(), (info.comm, how));
        }
        let mut l = ledger();
        for (k, comm) in orphans_seen {
            l.orphans.insert(k, comm);
        }
        drop(l);
        // Blamed on another run that swept first: still this run's
        // survivor (it is killed already).
        let gone = ledger_hits
            .into_iter()
            .filter(|(k, _)| !out.contains_key(k))
            .map(|(k, comm)| (k, (comm, BTreeSet::from([FoundBy::Orphan]))))
            .collect();
        (out, gone)
    }
}

/// The processes below the harness's thread `tid` (0: none): its children
/// and their descendants, but not the harness's own children themselves (a
/// victim, a keeper: what a keeper holds is the run's).
fn spawned(table: &BTreeMap<i32, ProcInfo>, tid: i32) -> Vec<i32> {
    if tid == 0 {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let own = own().clone();
    let children = procs::thread_children(me, tid).unwrap_or_default();
    let mut out: Vec<i32> = children
        .iter()
        .copied()
        .filter(|p| !own.contains(p))
        .collect();
    out.extend(procs::descendants(table, &children));
    out
}

fn mount_of(cg: &RunCgroup) -> Option<PathBuf> {
    let dir = cg.dir().to_string_lossy().into_owned();
    let rel = cg.path();
    dir.strip_suffix(rel).map(PathBuf::from)
}

/// Whether `key` is gone by `deadline`.
fn exits_by(key: ProcKey, deadline: Instant) -> bool {
    loop {
        match procs::stat(key.pid) {
            Some(p) if p.start == key.start && p.is_live() => {}
            _ => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long a sweep goes on finding and killing a run's processes.
const SWEEP_LIMIT: Duration = Duration::from_secs(5);

/// Looks in a row that find nothing alive before a sweep ends, and the
/// pause between looks: together longer than a fork chain's step (10 ms).
const QUIET_LOOKS: u32 = 4;
const LOOK_PAUSE: Duration = Duration::from_millis(3);

/// How long nothing may be found after a run had survivors before its
/// sweep ends (runs without survivors end after `QUIET_LOOKS`).
const CHASE_QUIET: Duration = Duration::from_millis(150);

/// SIGKILL, through a pidfd checked against the start time, so a reused
/// pid is never signalled.
fn kill(key: ProcKey) {
    let Some(fd) = crate::pidfd::open(key.pid) else {
        return;
    };
    if procs::stat(key.pid).is_none_or(|p| p.start != key.start) {
        return;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes an fd we own, a signal number and
    // null info.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Reaps `pid` if it is the harness's child (an orphan re-parented to it):
/// waits for it to be a zombie (it was just killed), then collects it.
fn reap(pid: i32) {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match procs::stat(pid) {
            Some(p) if p.ppid == me && !own().contains(&pid) => {
                if !p.is_live() {
                    let _ = nix::sys::wait::waitpid(
                        nix::unistd::Pid::from_raw(pid),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    );
                    return;
                }
            }
            _ => return,
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests;
