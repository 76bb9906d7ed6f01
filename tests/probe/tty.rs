//! Terminal operations, under a pseudo-terminal the test owns.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use serde_json::Value;

use super::{assert_fails, assert_ok, code, line, probe_std};

/// A pty pair: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let p = nix::pty::openpty(None, None).expect("openpty");
    (p.master, p.slave)
}

/// Runs the probe with the pty's slave as stdin. With `ctty`, the probe
/// runs in a new session whose controlling terminal the slave is (what
/// an interactive shell gives the programs it starts).
fn run_on(slave: &OwnedFd, ctty: bool, args: &[&str]) -> (i32, Value) {
    let mut cmd = probe_std();
    cmd.args(args)
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::piped());
    if ctty {
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().expect("run the probe");
    (code(&out), line(&out.stdout))
}

/// What is waiting in the terminal's input queue, read on the slave side.
fn pending_input(slave: &OwnedFd) -> Vec<u8> {
    let fd = slave.as_raw_fd();
    let mut buf = [0u8; 256];
    // SAFETY: fcntl and read on an fd this test owns, into a live buffer.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::fcntl(fd, libc::F_SETFL, flags);
        buf[..usize::try_from(n).unwrap_or(0)].to_vec()
    }
}

/// TIOCSTI is refused to processes without CAP_SYS_ADMIN when the kernel
/// has `dev.tty.legacy_tiocsti = 0` (Linux 6.2+).
fn tiocsti_refused_here() -> bool {
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    // SAFETY: geteuid cannot fail.
    !legacy && unsafe { libc::geteuid() } != 0
}

#[test]
fn tiocsti_pushes_input_into_the_controlling_terminal() {
    for op in ["tiocsti", "tiocsti-hibits"] {
        let (_master, slave) = pty();
        let (c, v) = run_on(&slave, true, &[op, "id\n"]);
        if tiocsti_refused_here() {
            assert_fails(c, &v, op, "EIO");
            assert_eq!(pending_input(&slave), b"");
            continue;
        }
        assert_ok(c, &v, op);
        assert_eq!(v["value"], 3);
        assert_eq!(
            pending_input(&slave),
            b"id\n",
            "{op}: typed as if by the user"
        );
    }
}

#[test]
fn tiocsti_by_path_opens_the_terminal() {
    let (_master, slave) = pty();
    let name = nix::unistd::ttyname(&slave).expect("ttyname");
    // A whole line: the terminal is canonical, a read sees only lines.
    let (c, v) = run_on(
        &slave,
        true,
        &["tiocsti", "x\n", name.to_str().expect("utf-8")],
    );
    if tiocsti_refused_here() {
        assert_fails(c, &v, "tiocsti", "EIO");
        return;
    }
    assert_ok(c, &v, "tiocsti");
    assert_eq!(pending_input(&slave), b"x\n");
}

#[test]
fn tiocsti_on_something_else_is_enotty() {
    let out = probe_std()
        .args(["tiocsti", "x"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_fails(code(&out), &v, "tiocsti", "ENOTTY");
    assert_eq!(v["value"], 0);
}

#[test]
fn tty_info_tells_a_controlling_terminal_from_a_plain_one() {
    let (_master, slave) = pty();
    let (c, v) = run_on(&slave, true, &["tty-info"]);
    assert_ok(c, &v, "tty-info");
    assert_eq!(v["ttys"], serde_json::json!([0]));
    assert_eq!(v["ctty"], true, "{v}");
    assert_eq!(v["sid"], v["pid"], "a session leader");

    let (c, v) = run_on(&slave, false, &["tty-info"]);
    assert_ok(c, &v, "tty-info");
    assert_eq!(v["ttys"], serde_json::json!([0]));
    assert_eq!(v["ctty"], false, "a terminal, but not the probe's own: {v}");

    let out = probe_std()
        .arg("tty-info")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_eq!(v["value"], 0);
    assert_eq!(v["ctty"], false);
}
