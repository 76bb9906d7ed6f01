//! Links, renames, symlinks, /proc/self/fd reopening, metadata changes and
//! file sizes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{assert_fails, assert_ok, code, line, run, with_rlimit};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn cat_echoes_the_head_of_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "secret\n").expect("write");
    let (c, v) = run(&["cat", s(&f)]);
    assert_ok(c, &v, "cat");
    assert_eq!(v["value"], 7);
    assert_eq!(v["text"], "secret\n");

    std::fs::write(&f, "z".repeat(10_000)).expect("write");
    let (_, v) = run(&["cat", s(&f)]);
    assert_eq!(v["value"], 10_000);
    assert_eq!(v["text"].as_str().expect("text").len(), 4096);

    let (c, v) = run(&["cat", s(&dir.path().join("none"))]);
    assert_fails(c, &v, "cat", "ENOENT");
}

#[test]
fn link_and_link_proc_make_a_second_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "x").expect("write");
    let ino = std::fs::metadata(&f).expect("stat").ino();
    for op in ["link", "link-proc"] {
        let dst = dir.path().join(op);
        let (c, v) = run(&[op, s(&f), s(&dst)]);
        assert_ok(c, &v, op);
        assert_eq!(std::fs::metadata(&dst).expect("stat").ino(), ino, "{op}");
    }
    let (c, v) = run(&[
        "link-proc",
        s(&dir.path().join("none")),
        s(&dir.path().join("d")),
    ]);
    assert_fails(c, &v, "link-proc", "ENOENT");
    assert_eq!(v["stage"], "open");
}

#[test]
fn rename_moves_exchanges_or_refuses_to_replace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "A").expect("write");
    std::fs::write(&b, "B").expect("write");

    let (c, v) = run(&["rename", s(&a), s(&b), "exchange"]);
    assert_ok(c, &v, "rename");
    assert_eq!(std::fs::read_to_string(&a).expect("read"), "B");
    assert_eq!(std::fs::read_to_string(&b).expect("read"), "A");

    let (c, v) = run(&["rename", s(&a), s(&b), "noreplace"]);
    assert_fails(c, &v, "rename", "EEXIST");

    let (c, v) = run(&["rename", s(&a), s(&b)]);
    assert_ok(c, &v, "rename");
    assert!(!a.exists());
    assert_eq!(std::fs::read_to_string(&b).expect("read"), "B");
}

#[test]
fn symlink_points_where_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = dir.path().join("l");
    let (c, v) = run(&["symlink", "/etc/hostname", s(&l)]);
    assert_ok(c, &v, "symlink");
    assert_eq!(
        std::fs::read_link(&l).expect("readlink"),
        Path::new("/etc/hostname")
    );
}

#[test]
fn proc_reopen_reads_and_writes_through_an_o_path_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "original text").expect("write");
    let (c, v) = run(&["proc-reopen", s(&f), "read"]);
    assert_ok(c, &v, "proc-reopen");
    assert_eq!(v["text"], "original text");

    let (c, v) = run(&["proc-reopen", s(&f), "write", "new"]);
    assert_ok(c, &v, "proc-reopen");
    assert_eq!(v["value"], 3);
    assert_eq!(
        std::fs::read_to_string(&f).expect("read"),
        "new",
        "truncated"
    );

    let (c, _) = run(&["proc-reopen", s(&f), "read", "extra"]);
    assert_eq!(c, 2);
}

#[test]
fn chmod_and_utimes_change_the_inode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "x").expect("write");
    let (c, v) = run(&["chmod", s(&f), "4751"]);
    assert_ok(c, &v, "chmod");
    assert_eq!(v["mode"], "4751");
    assert_eq!(
        std::fs::metadata(&f).expect("stat").permissions().mode() & 0o7777,
        0o4751
    );

    let (c, v) = run(&["utimes", s(&f), "1000"]);
    assert_ok(c, &v, "utimes");
    assert_eq!(std::fs::metadata(&f).expect("stat").mtime(), 1000);

    let (c, _) = run(&["chmod", s(&f), "999"]);
    assert_eq!(c, 2, "not octal");
}

#[test]
fn chown_changes_the_owner_only_with_privilege() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "x").expect("write");
    if is_root() {
        let (c, v) = run(&["chown", s(&f), "65534:65534"]);
        assert_ok(c, &v, "chown");
        let md = std::fs::metadata(&f).expect("stat");
        assert_eq!((md.uid(), md.gid()), (65534, 65534));
        assert_eq!(v["uid"], 65534);
    } else {
        let (c, v) = run(&["chown", s(&f), "0"]);
        assert_fails(c, &v, "chown", "EPERM");
    }
}

#[test]
fn setxattr_sets_a_user_attribute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "x").expect("write");
    // Not every filesystem takes user attributes (ramfs does not): the
    // probe must then fail as this test does.
    let own = dir.path().join("own");
    std::fs::write(&own, "x").expect("write");
    let own = std::ffi::CString::new(s(&own)).expect("path");
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::setxattr(
            own.as_ptr(),
            c"user.sandspec".as_ptr(),
            b"m".as_ptr().cast(),
            1,
            0,
        )
    };
    // Read now: running the probe below sets errno again.
    let own_err = std::io::Error::last_os_error();
    let (c, v) = run(&["setxattr", s(&f), "user.sandspec", "marked"]);
    if r != 0 {
        let errno = super::errno_name(own_err);
        assert_fails(c, &v, "setxattr", &errno);
        return;
    }
    assert_ok(c, &v, "setxattr");
    let path = std::ffi::CString::new(s(&f)).expect("path");
    let mut buf = [0u8; 32];
    // SAFETY: valid C strings and a live buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.sandspec".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(
        &buf[..usize::try_from(n).expect("the attribute")],
        b"marked"
    );
}

#[test]
fn truncate_changes_the_size_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "0123456789").expect("write");
    let (c, v) = run(&["truncate", s(&f), "3"]);
    assert_ok(c, &v, "truncate");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "012");
}

#[test]
fn mknod_makes_a_device_node_with_privilege() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("null");
    let (c, v) = run(&["mknod", s(&node), "c", "1", "3"]);
    if is_root() {
        assert_ok(c, &v, "mknod");
        let md = std::fs::symlink_metadata(&node).expect("stat");
        assert_eq!(md.rdev(), libc::makedev(1, 3));
        assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFCHR);
    } else {
        assert_fails(c, &v, "mknod", "EPERM");
        assert!(!node.exists());
    }
}

#[test]
fn write_size_writes_the_size_or_stops_at_the_file_size_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    let (c, v) = run(&["write-size", s(&f), "200K"]);
    assert_ok(c, &v, "write-size");
    assert_eq!(std::fs::metadata(&f).expect("stat").len(), 200 << 10);

    let out = with_rlimit(libc::RLIMIT_FSIZE, 64 << 10, 64 << 10)
        .args(["write-size", s(&f), "1M"])
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_fails(code(&out), &v, "write-size", "EFBIG");
    assert_eq!(v["value"], 64 << 10);
}

/// The probe with `file` open as fd 5 (inherited, as a careless caller
/// would leave it).
fn with_fd5(file: std::fs::File, args: &[&str]) -> (i32, serde_json::Value) {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let fd = OwnedFd::from(file);
    let raw = fd.as_raw_fd();
    let mut cmd = super::probe_std();
    cmd.args(args);
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 leaves fd 5 not
    // close-on-exec, except when the file already is fd 5 (few fds open, as
    // in the kernel matrix's guest): dup2 is then a no-op, so the flag is
    // cleared by hand.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if raw == 5 {
                libc::fcntl(5, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(raw, 5) >= 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    drop(fd);
    (code(&out), line(&out.stdout))
}

#[test]
fn fd_operations_use_inherited_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, "inherited\n").expect("write");

    let (c, v) = with_fd5(std::fs::File::open(&f).expect("open"), &["fd-read", "5"]);
    assert_ok(c, &v, "fd-read");
    assert_eq!(v["text"], "inherited\n");

    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .expect("open");
    let (c, v) = with_fd5(w, &["fd-write", "5", "over"]);
    assert_ok(c, &v, "fd-write");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "overrited\n");

    let d = std::fs::File::open(dir.path()).expect("open dir");
    let (c, v) = with_fd5(d, &["fd-openat", "5", "f"]);
    assert_ok(c, &v, "fd-openat");
    assert_eq!(v["text"], "overrited\n");

    let (c, v) = run(&["fd-read", "77"]);
    assert_fails(c, &v, "fd-read", "EBADF");
}
