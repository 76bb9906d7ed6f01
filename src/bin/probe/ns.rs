//! Namespaces and mounts: unshare, setns, mount a tmpfs, remount a bind
//! mount read-write, chroot. They change only the probe's own view, and
//! `mount-tmpfs` unmounts what it mounted before reporting, so a run
//! without a sandbox leaves the host as it was.

use std::ffi::CString;
use std::io;

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  unshare FLAGS [OP ARGS...]  setns PATH                  mount-tmpfs DIR
  remount-rw PATH             chroot DIR";

/// Namespace flags by name, for `unshare`.
const FLAGS: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("net", libc::CLONE_NEWNET),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

/// `user,net` → the CLONE_NEW* flags.
pub fn parse_flags(s: &str) -> Result<libc::c_int, String> {
    let mut flags = 0;
    for name in s.split(',') {
        let (_, f) = FLAGS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let known: Vec<&str> = FLAGS.iter().map(|(n, _)| *n).collect();
            format!("unknown namespace {name:?} (known: {})", known.join(","))
        })?;
        flags |= f;
    }
    Ok(flags)
}

/// Runs `op` if it is one of this module's (`unshare` is composed in the
/// probe's dispatcher, which can run a second operation after it).
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let c = |i: usize| sys::cstring(a.os(i).map(|s| s.as_os_str()).unwrap_or_default());
    Ok(Some(match op {
        "setns" => {
            a.expect(1, 1, "PATH")?;
            setns(&c(0)?)
        }
        "mount-tmpfs" => {
            a.expect(1, 1, "DIR")?;
            mount_tmpfs(&c(0)?)
        }
        "remount-rw" => {
            a.expect(1, 1, "PATH")?;
            remount_rw(&c(0)?)
        }
        "chroot" => {
            a.expect(1, 1, "DIR")?;
            chroot(&c(0)?)
        }
        _ => return Ok(None),
    }))
}

fn status(op: &str, ret: libc::c_int) -> Report {
    if ret == 0 {
        Report::ok(op, None)
    } else {
        Report::os_error(op, &io::Error::last_os_error())
    }
}

/// unshare(2) with `flags`; after a new user namespace, maps the probe's
/// uid and gid to 0 in it, best effort (it needs /proc), so that the
/// namespace's root can act on files. Returns whether the maps were
/// written.
pub fn unshare(flags: libc::c_int) -> io::Result<bool> {
    // SAFETY: getuid/getgid/unshare take no pointers.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: as above.
    if unsafe { libc::unshare(flags) } != 0 {
        return sys::last();
    }
    if flags & libc::CLONE_NEWUSER == 0 {
        return Ok(false);
    }
    let mapped = std::fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
        .and_then(|()| std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")))
        .is_ok();
    Ok(mapped)
}

/// The report of `unshare FLAGS` alone.
pub fn unshare_report(spec: &str, flags: libc::c_int) -> Report {
    match unshare(flags) {
        Ok(mapped) => Report::ok("unshare", None)
            .with("namespaces", Value::from(spec))
            .with("mapped", Value::from(mapped)),
        Err(e) => Report::os_error("unshare", &e).with("namespaces", Value::from(spec)),
    }
}

/// `setns PATH`: open a namespace file (e.g. /proc/PID/ns/mnt) and join
/// that namespace (any type).
pub fn setns(path: &CString) -> Report {
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    let fd = match sys::owned_fd(fd.into()) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error("setns", &e).with("stage", Value::from("open")),
    };
    use std::os::fd::AsRawFd;
    // SAFETY: setns takes an fd and a flag.
    status("setns", unsafe { libc::setns(fd.as_raw_fd(), 0) })
}

/// `mount-tmpfs DIR`: mount a 1 MiB tmpfs on DIR; if that worked, detach
/// it again at once, so nothing stays mounted. ok = the mount succeeded.
pub fn mount_tmpfs(dir: &CString) -> Report {
    const OP: &str = "mount-tmpfs";
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            c"sandspec".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"size=1m".as_ptr().cast(),
        )
    };
    if r != 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    // SAFETY: a valid C string.
    let unmounted = unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) } == 0;
    Report::ok(OP, None).with("unmounted", Value::from(unmounted))
}

/// `remount-rw PATH`: mount(NULL, PATH, NULL, MS_REMOUNT | MS_BIND): the
/// bind mount at PATH gets its flags replaced by none, which makes a
/// read-only bind writable. Only that mount point changes, never the
/// filesystem under it; a path that is no mount point is EINVAL.
pub fn remount_rw(path: &CString) -> Report {
    // SAFETY: a valid C string; NULL source, type and data.
    status("remount-rw", unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND,
            std::ptr::null(),
        )
    })
}

/// `chroot DIR`: chroot(2) then chdir("/"); changes only the probe.
pub fn chroot(dir: &CString) -> Report {
    // SAFETY: valid C strings.
    let r = unsafe { libc::chroot(dir.as_ptr()) };
    if r != 0 {
        return Report::os_error("chroot", &io::Error::last_os_error());
    }
    // SAFETY: a valid C string.
    status("chroot", unsafe { libc::chdir(c"/".as_ptr()) })
}
