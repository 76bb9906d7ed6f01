//! Resource limits that hold for root and unprivileged users alike.
//!
//! - memory, open files, CPU seconds: rlimits (soft = hard), set in the
//!   child before exec. Root could raise a hard limit back, so as root the
//!   seccomp filter also denies `setrlimit`/`prlimit64` writes.
//! - processes: the kernel does not enforce `RLIMIT_NPROC` for uid 0, and for
//!   other uids it counts every process of the uid, not the sandbox's. As
//!   root — and for a user the pids hierarchy is delegated to — the
//!   sandbox therefore puts the command in a fresh `pids` cgroup
//!   (`pids.max` = N); otherwise it sets `RLIMIT_NPROC` to the uid's
//!   current task count + N (uid-wide: approximate when the uid is busy
//!   elsewhere; [`super::Sandbox::process_limit_is_uid_wide`] says so). No usable
//!   mechanism is a setup error, never an unlimited run.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::SetupError;
use crate::policy::{Limits, SetupErrorKind};

/// The type of an `RLIMIT_*` constant: glibc has its own, musl an int.
#[cfg(target_env = "gnu")]
pub type Resource = libc::__rlimit_resource_t;
/// The type of an `RLIMIT_*` constant: glibc has its own, musl an int.
#[cfg(not(target_env = "gnu"))]
pub type Resource = libc::c_int;

/// One rlimit to set in the child.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    /// `RLIMIT_*`.
    pub resource: Resource,
    /// Soft limit.
    pub soft: libc::rlim_t,
    /// Hard limit.
    pub hard: libc::rlim_t,
}

/// The limits of a policy, prepared for the child (fixed-size, no heap use
/// after fork).
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The rlimits, in `rl[..n]`.
    pub rl: [Option<Rlimit>; 4],
    /// Process limit via a pids cgroup (root).
    pub cgroup_processes: Option<u32>,
    /// Process limit via RLIMIT_NPROC: N more tasks than the uid has at spawn.
    pub nproc_processes: Option<u32>,
}

/// Prepares the rlimits of `limits`; decides how to limit processes.
pub fn prepare(limits: &Limits, euid: u32) -> Result<Prepared, SetupError> {
    let mut p = Prepared::default();
    let mut i = 0;
    let mut push = |r: Rlimit| {
        p.rl[i] = Some(r);
        i += 1;
    };
    if let Some(m) = limits.memory {
        push(Rlimit {
            resource: libc::RLIMIT_AS,
            soft: m.0,
            hard: m.0,
        });
    }
    if let Some(n) = limits.open_files {
        push(Rlimit {
            resource: libc::RLIMIT_NOFILE,
            soft: n,
            hard: n,
        });
    }
    if let Some(s) = limits.cpu_seconds {
        // SIGXCPU at the soft limit, SIGKILL one second later.
        push(Rlimit {
            resource: libc::RLIMIT_CPU,
            soft: s,
            hard: s.saturating_add(1),
        });
    }
    if let Some(n) = limits.processes {
        if n == 0 {
            return Err(SetupError {
                kind: SetupErrorKind::InvalidPolicy,
                message: "invalid policy: limits.processes must be at least 1 (the command itself)"
                    .into(),
            });
        }
        if euid == 0 || delegated_pids_cgroup() {
            p.cgroup_processes = Some(n);
        } else {
            p.nproc_processes = Some(n);
        }
    }
    Ok(p)
}

/// Whether this (non-root) user may make run cgroups in the pids
/// hierarchy: a cgroup delegated to it (systemd's `Delegate=`, or an
/// administrator's chown). Then the process limit counts the run's tasks
/// exactly, as for root, instead of every task of the uid.
fn delegated_pids_cgroup() -> bool {
    let Some(h) = pids_hierarchy() else {
        return false;
    };
    let parent = h.root.join("sandspec");
    let dir = if parent.is_dir() { parent } else { h.root };
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access with a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Tasks (threads included, as `RLIMIT_NPROC` counts them) of real uid `uid`.
pub fn tasks_of_uid(uid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let mut real_uid = None;
        let mut threads = 1;
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                real_uid = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            } else if let Some(rest) = line.strip_prefix("Threads:") {
                threads = rest.trim().parse().unwrap_or(1);
            }
        }
        if real_uid == Some(uid) {
            total += threads;
        }
    }
    total
}

/// A per-run pids cgroup; removed on drop (after the tree is gone).
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    /// The file the child writes "0" to, to join, open for writing:
    /// `tasks` on cgroup v1, `cgroup.procs` on cgroup2. On v1, `tasks`
    /// moves only the writing thread, without the global lock a
    /// `cgroup.procs` write takes (whose first writer after a quiet spell
    /// waits for an RCU grace period: 12–18 ms measured here); the child
    /// is single-threaded when it joins, so the move is the same.
    pub procs: OwnedFd,
}

static CGROUP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A writable pids hierarchy.
#[derive(Debug, Clone)]
struct Hierarchy {
    root: PathBuf,
    /// cgroup v1 (a `pids` mount), not the cgroup2 root.
    v1: bool,
}

/// [`find_pids_hierarchy`], looked up once per process (it reads
/// mountinfo, which costs more than the rest of a cgroup's creation).
fn pids_hierarchy() -> Option<Hierarchy> {
    static FOUND: OnceLock<Option<Hierarchy>> = OnceLock::new();
    FOUND.get_or_init(find_pids_hierarchy).clone()
}

/// Where a writable pids hierarchy is mounted: a cgroup v1 `pids` mount, or
/// the cgroup2 root when `pids` is in its subtree_control.
fn find_pids_hierarchy() -> Option<Hierarchy> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2 = None;
    for line in mountinfo.lines() {
        // ... mount_point ... - fstype source super_options
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let opts = r.nth(1).unwrap_or("");
        if fstype == "cgroup" && opts.split(',').any(|o| o == "pids") {
            return Some(Hierarchy {
                root: PathBuf::from(mount_point),
                v1: true,
            });
        }
        if fstype == "cgroup2" && v2.is_none() {
            let ctl =
                std::fs::read_to_string(Path::new(mount_point).join("cgroup.subtree_control"))
                    .unwrap_or_default();
            if ctl.split_whitespace().any(|c| c == "pids") {
                v2 = Some(Hierarchy {
                    root: PathBuf::from(mount_point),
                    v1: false,
                });
            }
        }
    }
    v2
}

impl PidsCgroup {
    /// Creates `<pids hierarchy>/sandspec/<pid>-<seq>-<random>` with
    /// `pids.max = max`.
    pub fn create(max: u32) -> Result<PidsCgroup, SetupError> {
        let fail = |why: String| {
            SetupError {
            kind: SetupErrorKind::RestrictFailed,
            message: format!("failed to limit processes (a pids cgroup is needed as root, where RLIMIT_NPROC is not enforced): {why}"),
        }
        };
        let hierarchy = pids_hierarchy().ok_or_else(|| {
            fail("no writable pids cgroup hierarchy (no cgroup v1 pids mount, and pids is not enabled in the cgroup2 root's subtree_control)".into())
        })?;
        let parent = hierarchy.root.join("sandspec");
        match std::fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(format!("{}: {e}", parent.display()))),
        }
        if !hierarchy.v1 {
            // On cgroup2 a controller reaches a cgroup only when its parent
            // enables it for its children: without this, pids.max does not
            // exist in the run's cgroup.
            let ctl = parent.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&ctl).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "pids") {
                std::fs::write(&ctl, "+pids")
                    .map_err(|e| fail(format!("{}: enabling pids: {e}", ctl.display())))?;
            }
        }
        sweep_stale(&parent);
        // pid, sequence and a random part: a directory left behind by a
        // crashed run whose pid comes round again cannot collide.
        let mut dir;
        let mut tries = 0;
        loop {
            dir = parent.join(format!(
                "{}-{}-{:08x}",
                std::process::id(),
                CGROUP_SEQ.fetch_add(1, Ordering::Relaxed),
                fastrand::u32(..)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                Err(e) => return Err(fail(format!("{}: {e}", dir.display()))),
            }
        }
        let cg = |procs| PidsCgroup {
            dir: dir.clone(),
            procs,
        };
        std::fs::write(dir.join("pids.max"), max.to_string()).map_err(|e| {
            let _ = std::fs::remove_dir(&dir);
            fail(format!("{}/pids.max: {e}", dir.display()))
        })?;
        let join = if hierarchy.v1 {
            "tasks"
        } else {
            "cgroup.procs"
        };
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(join))
            .map_err(|e| {
                let _ = std::fs::remove_dir(&dir);
                fail(format!("{}/{join}: {e}", dir.display()))
            })?;
        Ok(cg(procs.into()))
    }

    /// The raw fd of the file to join through (`tasks` or `cgroup.procs`).
    pub fn procs_fd(&self) -> i32 {
        self.procs.as_raw_fd()
    }
}

/// Removes, once per process, the empty run cgroups of processes that no
/// longer exist (a run killed before it could remove its own). A cgroup
/// with tasks in it cannot be removed, so a live run's is never touched.
fn sweep_stale(parent: &Path) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(dir) = std::fs::read_dir(parent) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    });
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The tree has been reaped by now; a cgroup with no tasks can go.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A C string for a path (no interior NUL).
pub fn cpath(p: &Path) -> Result<CString, SetupError> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| SetupError {
        kind: SetupErrorKind::InvalidPolicy,
        message: format!("invalid policy: path {} contains a NUL byte", p.display()),
    })
}
