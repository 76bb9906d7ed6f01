//! Read canaries (`expect.host.unread` / `read`): whether the command read
//! a file, seen from the host through its access time. Before the run the
//! harness sets the canary's access time to [`CANARY_ATIME`], far in the
//! past; any read (or, for a directory, listing) moves it, since the kernel
//! updates an access time older than a day even under `relatime`. Nothing
//! the sandboxed command says is involved.
//!
//! Blind spots, which the case's control shows (it lists the same canary
//! under `read`): `noatime` (and `nodiratime` for directories) mounts, and
//! read-only mounts (bubblewrap's `--ro-bind`), where the kernel never
//! updates access times.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The access time a canary is given: 2001-01-01T00:00:00Z.
pub const CANARY_ATIME: i64 = 978_307_200;

/// Sets the canary's access time to [`CANARY_ATIME`], leaving its
/// modification time. Only paths under `scratch` (the case's own files).
pub fn arm(path: &str, scratch: &Path) -> Result<(), String> {
    let p = Path::new(path);
    let dotdot = p.components().any(|c| c == std::path::Component::ParentDir);
    if !p.starts_with(scratch) || dotdot {
        return Err(format!(
            "failed to arm the read canary {path}: canaries must be under ${{SCRATCH}} \
             (the harness changes their access time)"
        ));
    }
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &TimeSpec::new(CANARY_ATIME, 0),
        &TimeSpec::UTIME_OMIT,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| format!("failed to arm the read canary {path}: {e}"))
}

/// True when the canary's access time moved since [`arm`].
pub fn was_read(path: &str) -> std::io::Result<bool> {
    let m = Path::new(path).symlink_metadata()?;
    Ok(m.atime() != CANARY_ATIME || m.atime_nsec() != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_read_or_a_listing_moves_the_canary_and_a_stat_does_not() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("secret");
        std::fs::write(&f, "s").unwrap();
        let (fs, ds) = (f.to_str().unwrap(), d.path().to_str().unwrap());
        arm(fs, d.path()).unwrap();
        arm(ds, d.path()).unwrap();
        let _ = f.metadata().unwrap();
        let _ = std::fs::File::open(&f).unwrap();
        assert!(!was_read(fs).unwrap(), "a stat and an open are not reads");
        let mut s = String::new();
        std::fs::File::open(&f)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(was_read(fs).unwrap());
        assert!(!was_read(ds).unwrap());
        let _ = std::fs::read_dir(d.path()).unwrap().count();
        assert!(was_read(ds).unwrap());
    }

    #[test]
    fn a_canary_outside_the_scratch_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = arm("/etc/passwd", d.path()).unwrap_err();
        assert!(e.contains("under ${SCRATCH}"), "{e}");
        let sneaky = format!("{}/../etc/passwd", d.path().display());
        assert!(arm(&sneaky, d.path()).is_err());
    }
}
