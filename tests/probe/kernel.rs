//! IPC objects and keys, namespaces and mounts, BPF, perf, userfaultfd
//! and capabilities.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::process::Command as StdCommand;

use serde_json::Value;

use super::{assert_fails, assert_ok, cargo_bin, code, line, run};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn unique(tag: &str) -> String {
    format!("sandspec-test-{tag}-{}", std::process::id())
}

#[test]
fn mq_open_creates_the_queue_and_removes_it_unless_kept() {
    let name = unique("mq");
    let c_name = CString::new(format!("/{name}")).expect("name");
    let exists = || {
        // SAFETY: a valid C string; a returned descriptor is closed.
        let mq = unsafe { libc::mq_open(c_name.as_ptr(), libc::O_RDONLY) };
        if mq >= 0 {
            // SAFETY: closing the descriptor just opened.
            unsafe { libc::mq_close(mq) };
        }
        mq >= 0
    };
    let (c, v) = run(&["mq-open", &name]);
    assert_ok(c, &v, "mq-open");
    assert_eq!(v["name"], format!("/{name}"));
    assert!(!exists(), "removed again");

    let (c, v) = run(&["mq-open", &name, "keep"]);
    assert_ok(c, &v, "mq-open");
    assert!(exists(), "left for a leak check");
    let (c, v) = run(&["mq-open", &name]);
    assert_fails(c, &v, "mq-open", "EEXIST");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mq_unlink(c_name.as_ptr()) }, 0);

    // A path makes a name: inner slashes become underscores.
    let (c, v) = run(&["mq-open", &format!("/tmp/{name}")]);
    assert_ok(c, &v, "mq-open");
    assert_eq!(v["name"], format!("/tmp_{name}"));
}

/// Whether a System V object with this id exists (IPC_STAT works).
fn sysv_exists(op: &str, id: i32) -> bool {
    // SAFETY: the *_ds structs are plain data the kernel fills.
    unsafe {
        match op {
            "sysv-shm" => {
                let mut ds: libc::shmid_ds = std::mem::zeroed();
                libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0
            }
            "sysv-msg" => {
                let mut ds: libc::msqid_ds = std::mem::zeroed();
                libc::msgctl(id, libc::IPC_STAT, &mut ds) == 0
            }
            _ => libc::semctl(id, 0, libc::GETVAL) >= 0,
        }
    }
}

fn sysv_remove(op: &str, id: i32) {
    // SAFETY: IPC_RMID ignores the buffer argument.
    unsafe {
        match op {
            "sysv-shm" => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            "sysv-msg" => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            _ => libc::semctl(id, 0, libc::IPC_RMID),
        }
    };
}

#[test]
fn sysv_objects_are_created_and_removed_unless_kept() {
    for op in ["sysv-shm", "sysv-msg", "sysv-sem"] {
        let (c, v) = run(&[op]);
        assert_ok(c, &v, op);
        let id = v["value"].as_i64().expect("an id") as i32;
        assert!(!sysv_exists(op, id), "{op} {id} removed");

        let (c, v) = run(&[op, "keep"]);
        assert_ok(c, &v, op);
        let id = v["value"].as_i64().expect("an id") as i32;
        assert!(sysv_exists(op, id), "{op} {id} kept");
        sysv_remove(op, id);
    }
}

const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEYCTL_INVALIDATE: libc::c_long = 21;

fn key_exists(serial: i64) -> bool {
    let mut buf = [0u8; 256];
    // SAFETY: a live buffer of the length given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            serial,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    r >= 0
}

#[test]
fn keyctl_add_adds_a_key_and_invalidates_it_unless_kept() {
    let desc = unique("key");
    let (c, v) = run(&["keyctl-add", &desc, "user"]);
    assert_ok(c, &v, "keyctl-add");
    let serial = v["value"].as_i64().expect("a serial");
    assert!(!key_exists(serial), "invalidated");

    let (c, v) = run(&["keyctl-add", &desc, "user", "keep"]);
    assert_ok(c, &v, "keyctl-add");
    let serial = v["value"].as_i64().expect("a serial");
    assert!(key_exists(serial), "kept in the user keyring");
    // SAFETY: keyctl with integer arguments.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, serial) };

    let (c, v) = run(&["request-key", "user", &unique("missing")]);
    assert_fails(c, &v, "request-key", "ENOKEY");
}

#[test]
fn unshare_runs_the_next_operation_in_new_namespaces() {
    let (c, v) = run(&["unshare", "user,net", "netlink-route-dump"]);
    if v["op"] == "unshare" {
        // No user namespaces for this user here: say so, as the kernel does.
        assert_fails(c, &v, "unshare", v["errno"].as_str().unwrap_or("EPERM"));
        eprintln!("skipped: unshare(user) refused here: {v}");
        return;
    }
    assert_ok(c, &v, "netlink-route-dump");
    assert_eq!(
        v["links"],
        serde_json::json!(["lo"]),
        "a fresh network namespace"
    );
    assert_eq!(v["unshared"], "user,net");

    let (c, v) = run(&["unshare", "user"]);
    assert_ok(c, &v, "unshare");
    assert_eq!(v["mapped"], true);
    let (c, _) = run(&["unshare", "users"]);
    assert_eq!(c, 2);
    let (c, _) = run(&["unshare", "net", "nope"]);
    assert_eq!(c, 2, "the inner operation is checked");
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &std::path::Path) -> bool {
    let d = std::fs::metadata(dir).expect("stat").dev();
    let p = std::fs::metadata(dir.parent().expect("parent"))
        .expect("stat")
        .dev();
    d != p
}

#[test]
fn mount_tmpfs_mounts_and_unmounts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8");
    let (c, v) = run(&["mount-tmpfs", path]);
    if is_root() {
        assert_ok(c, &v, "mount-tmpfs");
        assert_eq!(v["unmounted"], true);
    } else {
        assert_fails(c, &v, "mount-tmpfs", "EPERM");
    }
    assert!(!is_mount_point(dir.path()), "nothing left mounted");

    let (c, v) = run(&["unshare", "user,mnt", "mount-tmpfs", path]);
    if v["op"] == "mount-tmpfs" {
        assert_ok(c, &v, "mount-tmpfs");
    }
}

#[test]
fn remount_rw_makes_a_read_only_bind_writable() {
    if !is_root() {
        eprintln!("skipped: making the read-only bind mount needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8").to_owned();
    let probe = cargo_bin!("sandspec-probe")
        .to_str()
        .expect("utf-8")
        .to_owned();
    // In a private mount namespace: bind the directory onto itself
    // read-only, then let the probe remount it and write through it.
    // Exit 99: the read-only bind could not be made here (no util-linux).
    let script = r#"{ mount --make-rprivate / && mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"; } || exit 99
        ! "$0" write "$1/before" && "$0" remount-rw "$1" && "$0" write "$1/after""#;
    let Ok(out) = StdCommand::new("unshare")
        .args(["--mount", "sh", "-c", script, &probe, &d])
        .output()
    else {
        eprintln!("skipped: no unshare(1) here");
        return;
    };
    if out.status.code() == Some(99) {
        eprintln!(
            "skipped: could not make a read-only bind mount here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let last = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{last}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(last.contains(r#""op":"remount-rw","ok":true"#), "{last}");
    assert!(!dir.path().join("before").exists(), "read-only at first");
    assert!(
        dir.path().join("after").exists(),
        "written after the remount"
    );

    let (c, v) = run(&["remount-rw", &d]);
    assert_fails(c, &v, "remount-rw", "EINVAL");
}

#[test]
fn chroot_and_setns_need_privilege() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, v) = run(&["chroot", dir.path().to_str().expect("utf-8")]);
    let (c2, v2) = run(&["setns", "/proc/self/ns/net"]);
    if is_root() {
        assert_ok(c, &v, "chroot");
        assert_ok(c2, &v2, "setns");
    } else {
        assert_fails(c, &v, "chroot", "EPERM");
        assert_fails(c2, &v2, "setns", "EPERM");
    }
    let (c, v) = run(&["setns", "/nonexistent"]);
    assert_fails(c, &v, "setns", "ENOENT");
    assert_eq!(v["stage"], "open");
}

fn sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn bpf_prog_load_loads_a_socket_filter_where_allowed() {
    let (c, v) = run(&["bpf-prog-load"]);
    let unprivileged = sysctl("kernel/unprivileged_bpf_disabled") == Some(0);
    if is_root() || unprivileged {
        assert_ok(c, &v, "bpf-prog-load");
    } else {
        assert_fails(c, &v, "bpf-prog-load", "EPERM");
    }
}

#[test]
fn perf_open_counts_the_probe_where_allowed() {
    let (c, v) = run(&["perf-open"]);
    if is_root() || sysctl("kernel/perf_event_paranoid").unwrap_or(2) <= 2 {
        assert_ok(c, &v, "perf-open");
    } else {
        assert_fails(c, &v, "perf-open", "EACCES");
    }
    let (c, _) = run(&["perf-open", "instructions"]);
    assert_eq!(c, 2);
}

#[test]
fn userfaultfd_opens_in_user_mode_at_least() {
    let (c, v) = run(&["userfaultfd"]);
    assert_ok(c, &v, "userfaultfd");
    assert!(v["user_mode_only"].is_boolean());
}

/// A field of this test process's /proc/self/status.
fn status_field(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .expect("the field")
        .trim()
        .to_owned()
}

#[test]
fn caps_match_what_proc_says_of_the_same_user() {
    let (c, v) = run(&["caps"]);
    assert_ok(c, &v, "caps");
    // The probe is exec'd by this process's user, without file
    // capabilities: it gets this process's bounding set, and its
    // effective set is full for root and empty for anyone else.
    assert_eq!(v["cap_bnd"], status_field("CapBnd"));
    assert_eq!(v["cap_amb"], status_field("CapAmb"));
    if is_root() {
        assert_eq!(v["cap_eff"], status_field("CapBnd"));
    } else {
        assert_eq!(v["cap_eff"], "0000000000000000");
    }
    assert_eq!(v["no_new_privs"], status_field("NoNewPrivs") == "1");
    let ones = u64::from_str_radix(v["cap_eff"].as_str().expect("hex"), 16).expect("hex");
    assert_eq!(v["value"], Value::from(ones.count_ones()));
}

#[test]
fn caps_after_no_new_privs_say_so() {
    let mut cmd = super::probe_std();
    cmd.arg("caps");
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "caps");
    assert_eq!(v["no_new_privs"], true);
}
