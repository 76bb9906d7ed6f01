//! Where a run's scratch directories live, with names that cannot collide
//! and nothing left behind by a run that crashed.
//!
//! Each [`Harness`](super::Harness) makes one run directory,
//! `$TMPDIR/sandspec-run-XXXXXX` (random, created exclusively), and holds
//! an exclusive `flock` on its `.lock` file for as long as it lives. Every
//! case's scratch directory and probe link directory is made inside it,
//! with a random name too. The run directory is removed when the harness
//! is dropped (after an interrupt as well); a run killed outright (SIGKILL,
//! a power cut) leaves it, unlocked, and the next harness to start removes
//! it: a lock nobody holds means its run is gone, whatever pids were reused
//! in between. Directories of live runs, of other users, and kept ones
//! (`--keep`, marked by a `.keep` file) are left alone.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The prefix of run directories in the temporary directory.
pub const RUN_PREFIX: &str = "sandspec-run-";
const LOCK: &str = ".lock";
const KEEP: &str = ".keep";

/// A run's directory, locked while it lives.
#[derive(Debug)]
pub struct RunDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// Holds the flock; closed (unlocking) on drop.
    _lock: File,
}

/// Tries an exclusive, non-blocking flock on `f`.
fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor we own, no memory involved.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl RunDir {
    /// Removes stale run directories in `tmp`, then creates and locks a new
    /// one there. `keep`: the directory and everything in it stay after the
    /// run (and later runs leave it alone).
    pub fn create_in(tmp: &Path, keep: bool) -> std::io::Result<RunDir> {
        sweep_stale(tmp);
        let dir = tempfile::Builder::new()
            .prefix(RUN_PREFIX)
            .tempdir_in(tmp)?;
        // Locked before it gets the name a sweep looks for: another
        // harness sweeping now must not find it unlocked (it would take
        // the lock and remove the directory under this run).
        let fresh = dir.path().join(".lock-new");
        let lock = File::create(&fresh)?;
        if !try_lock(&lock) {
            return Err(std::io::Error::other(format!(
                "failed to lock the run directory {}",
                crate::escape::path(dir.path())
            )));
        }
        std::fs::rename(&fresh, dir.path().join(LOCK))?;
        let path = dir.path().to_path_buf();
        let dir = if keep {
            File::create(path.join(KEEP))?;
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(RunDir {
            dir,
            path,
            _lock: lock,
        })
    }

    /// [`RunDir::create_in`] the system's temporary directory.
    pub fn create(keep: bool) -> std::io::Result<RunDir> {
        Self::create_in(&std::env::temp_dir(), keep)
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh directory inside the run directory, named after `what`
    /// (a case id) plus random characters; removed when dropped unless
    /// kept.
    pub fn make(&self, what: &str) -> std::io::Result<tempfile::TempDir> {
        let what: String = what
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .tempdir_in(&self.path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            // A case's command may have left a directory it cannot list
            // (mode 000): make everything writable first, so the removal
            // does not stop half-way.
            open_up(d.path());
            let _ = d.close();
        }
    }
}

/// Gives the owner rwx on every directory below `dir`, so that it can be
/// removed (errors ignored: the removal reports nothing either).
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            let _ = std::fs::set_permissions(
                e.path(),
                std::fs::Permissions::from_mode(m.mode() | 0o700),
            );
            open_up(&e.path());
        }
    }
}

/// Removes every run directory in `tmp` that is this user's, not kept, and
/// whose lock nobody holds. Returns how many it removed.
pub fn sweep_stale(tmp: &Path) -> usize {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(RUN_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(meta) = dir.symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || dir.join(KEEP).exists() {
            continue;
        }
        // No lock file: a run between creating its directory and its lock,
        // or not ours to judge. Left alone.
        let Ok(lock) = File::open(dir.join(LOCK)) else {
            continue;
        };
        if try_lock(&lock) {
            open_up(&dir);
            if std::fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_is_locked_while_it_lives_and_removed_after() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create_in(tmp.path(), false).unwrap();
        let a = run.make("fs.read/one two").unwrap();
        let b = run.make("fs.read/one two").unwrap();
        assert_ne!(a.path(), b.path(), "two scratch dirs for one case collide");
        assert!(a.path().starts_with(run.path()));
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("fs.read_one_two-"), "{name}");
        // Live: another harness's sweep leaves it.
        assert_eq!(sweep_stale(tmp.path()), 0);
        assert!(run.path().exists());
        let p = run.path().to_path_buf();
        drop((a, b));
        drop(run);
        assert!(!p.exists());
    }

    #[test]
    fn concurrent_harnesses_never_sweep_each_others_fresh_directories() {
        // Each creation sweeps first: a directory another thread has just
        // made must never look stale to it (seen in the kernel matrix as
        // "failed to lock the run directory").
        let tmp = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        let run =
                            RunDir::create_in(tmp.path(), false).unwrap_or_else(|e| panic!("{e}"));
                        let made = run.make("c").unwrap_or_else(|e| panic!("{e}"));
                        assert!(made.path().exists());
                    }
                });
            }
        });
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_crashed_runs_directory_is_swept_and_kept_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        // A crash: the directory stays, its lock went with the process.
        let stale = tmp.path().join(format!("{RUN_PREFIX}crashed"));
        let inner = stale.join("case-x");
        std::fs::create_dir_all(inner.join("locked")).unwrap();
        File::create(stale.join(LOCK)).unwrap();
        std::fs::write(inner.join("locked/f"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(inner.join("locked"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        // Not a run directory's shape: no lock file. Left alone.
        let odd = tmp.path().join(format!("{RUN_PREFIX}nolock"));
        std::fs::create_dir(&odd).unwrap();
        let kept = RunDir::create_in(tmp.path(), true).unwrap();
        assert!(!stale.exists(), "the stale run directory was not removed");
        let kept_path = kept.path().to_path_buf();
        drop(kept);
        assert!(kept_path.exists(), "--keep must keep the run directory");
        assert_eq!(sweep_stale(tmp.path()), 0);
        assert!(kept_path.exists(), "a kept run directory was swept");
        assert!(odd.exists());
    }
}
