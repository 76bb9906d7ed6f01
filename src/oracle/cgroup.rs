//! A cgroup per run, for finding what the run started by the kernel's own
//! bookkeeping: a process stays in its cgroup whatever it calls itself,
//! whatever it execs, whoever its parent becomes, unless someone with
//! write access to cgroups moves it.
//!
//! Only cgroup2 is used, and only for membership (no controller is
//! enabled): the hybrid hosts here mount it at /sys/fs/cgroup/unified
//! beside the v1 controllers, the kernel-matrix guests at /sys/fs/cgroup.
//! Runs live under `<cgroup2>/sandspec-runs/`, named
//! `r<harness pid>-<harness start time>-<seq>`: unique for as long as the
//! machine is up, never a bare pid.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The directory every run's cgroup is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    dir: PathBuf,
    /// The cgroup2 mount point, to turn a cgroup path into a directory.
    mount: PathBuf,
}

/// The name of the directory under the cgroup2 root.
pub const PARENT: &str = "sandspec-runs";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The cgroup2 mount point, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

impl CgroupRoot {
    /// Finds the cgroup2 mount and makes (or reuses) `sandspec-runs` in
    /// it; `Err` says why there is none (no cgroup2, not allowed).
    pub fn find() -> Result<CgroupRoot, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let dir = mount.join(PARENT);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("failed to create {}: {e}", dir.display())),
        }
        let root = CgroupRoot { dir, mount };
        root.remove_stale();
        Ok(root)
    }

    /// Where run cgroups are made.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the empty cgroups of harnesses that are gone (a crashed
    /// run's); populated ones are left alone.
    fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix('r')
                .and_then(|r| r.split_once('-'))
                .and_then(|(pid, rest)| {
                    let start = rest.split('-').next()?.parse::<u64>().ok()?;
                    Some((pid.parse::<i32>().ok()?, start))
                });
            let alive = owner.is_some_and(|(pid, start)| {
                super::procs::stat(pid).is_some_and(|p| p.start == start)
            });
            if !alive {
                // Fails (EBUSY) while anything is in it: then it stays.
                let _ = fs::remove_dir(e.path());
            }
        }
    }

    /// A fresh cgroup for one run.
    pub fn create_run(&self) -> io::Result<RunCgroup> {
        let me = std::process::id() as i32;
        let start = super::procs::stat(me).map(|p| p.start).unwrap_or(0);
        loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let dir = self.dir.join(format!("r{me}-{start}-{seq}"));
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Left by someone else: step around it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("failed to create cgroup {}: {e}", dir.display()),
                    ))
                }
            }
            let procs = fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(|e| {
                    let _ = fs::remove_dir(&dir);
                    io::Error::new(
                        e.kind(),
                        format!("failed to open {}/cgroup.procs: {e}", dir.display()),
                    )
                })?;
            let path = format!(
                "/{}",
                dir.strip_prefix(&self.mount).unwrap_or(&dir).display()
            );
            return Ok(RunCgroup {
                dir,
                path,
                procs: procs.into(),
            });
        }
    }
}

/// One run's cgroup; removed on drop (after [`RunCgroup::kill`]).
#[derive(Debug)]
pub struct RunCgroup {
    dir: PathBuf,
    /// The path as /proc/<pid>/cgroup shows it (`/sandspec-runs/r…`).
    path: String,
    procs: OwnedFd,
}

impl RunCgroup {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path as /proc/<pid>/cgroup shows it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The open `cgroup.procs`: a child writes `0` to it (before exec) to
    /// join. It is close-on-exec; a forked child still has it.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Moves `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        write_pid(&self.dir.join("cgroup.procs"), pid)
    }

    /// Whether a /proc/<pid>/cgroup path is this cgroup or below it.
    pub fn holds(&self, cgroup_path: &str) -> bool {
        cgroup_path
            .strip_prefix(&self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The processes in this cgroup and any cgroup below it (a backend
    /// may make its own inside).
    pub fn members(&self) -> Vec<i32> {
        members_of(&self.dir)
    }

    /// Freezes the cgroup (Linux 5.2+): its processes stop where they are,
    /// forks in flight included, so a chain of short-lived processes
    /// cannot move on while it is being listed. Best effort.
    pub fn freeze(&self) {
        let _ = fs::write(self.dir.join("cgroup.freeze"), "1");
    }

    /// Undoes [`RunCgroup::freeze`].
    pub fn thaw(&self) {
        let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
    }

    /// One `cgroup.kill` (Linux 5.14+), not waiting; a no-op before.
    pub fn kill_now(&self) {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// Kills everything in the cgroup: `cgroup.kill` (Linux 5.14+) does it
    /// at once, forks in flight included; before that, freeze, SIGKILL
    /// each member, thaw, until none is left. Waits up to 2 s for the
    /// members to be gone.
    pub fn kill(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let kill_file = self.dir.join("cgroup.kill");
        let has_kill = kill_file.exists();
        loop {
            let members = self.members();
            if members.is_empty() || Instant::now() >= deadline {
                return;
            }
            if !(has_kill && fs::write(&kill_file, "1").is_ok()) {
                let freeze = self.dir.join("cgroup.freeze");
                let frozen = fs::write(&freeze, "1").is_ok();
                for pid in members {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if frozen {
                    let _ = fs::write(&freeze, "0");
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The processes in the cgroup at `dir` and below it.
pub fn members_of(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    collect_members(dir, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

fn collect_members(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_members(&e.path(), out);
            }
        }
    }
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    fs::remove_dir(dir)
}

/// Writes a pid to a `cgroup.procs` file.
pub fn write_pid(procs: &Path, pid: i32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(procs)?;
    f.write_all(pid.to_string().as_bytes())
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // Killed processes leave their cgroup a moment after they die.
        let deadline = Instant::now() + Duration::from_secs(2);
        while remove_tree(&self.dir).is_err() && self.dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_matches_the_cgroup_and_below_only() {
        let cg = RunCgroup {
            dir: PathBuf::from("/x/sandspec-runs/r1-2-3"),
            path: "/sandspec-runs/r1-2-3".into(),
            procs: fs::File::open("/dev/null").unwrap().into(),
        };
        assert!(cg.holds("/sandspec-runs/r1-2-3"));
        assert!(cg.holds("/sandspec-runs/r1-2-3/inner"));
        assert!(!cg.holds("/sandspec-runs/r1-2-30"));
        assert!(!cg.holds("/"));
        std::mem::forget(cg); // no directory to remove
    }

    #[test]
    fn a_child_in_a_run_cgroup_is_a_member_until_killed() {
        let Ok(root) = CgroupRoot::find() else {
            eprintln!("skipped: no writable cgroup2 here (not root?)");
            return;
        };
        let cg = root.create_run().unwrap();
        assert!(cg.dir().starts_with(root.dir()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        cg.add(pid).unwrap();
        assert_eq!(cg.members(), vec![pid]);
        assert!(cg.holds(&super::super::procs::cgroup2_path(pid).unwrap()));
        cg.kill();
        child.wait().unwrap();
        assert!(cg.members().is_empty());
        let dir = cg.dir().to_path_buf();
        drop(cg);
        assert!(!dir.exists());
    }
}
