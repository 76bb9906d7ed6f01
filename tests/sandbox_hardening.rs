//! The escape classes of docs/threat-model.md, each tried against the
//! reference sandbox as the attacker would, and each with a control: the
//! same attack run bare (no sandbox) must succeed here, or the test proves
//! nothing. Run as root by `cargo test`, and again as `nobody` by .ci/run
//! and the kernel matrix.

mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::*;
use sandspec::policy::{Command, Network, Outcome, PortRules, RunOutput};
use sandspec::sandbox::{Canceller, RunOptions, Sandbox};

/// The probe run with no sandbox at all: the control of every attack.
fn bare(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(probe())
        .args(args)
        .output()
        .expect("failed to run the probe bare");
    probe_json(&out.stdout)
}

fn ok(v: &serde_json::Value) -> bool {
    v["ok"] == serde_json::json!(true)
}

/// Runs the attack bare (must succeed: the control) and sandboxed under
/// `policy` (must fail). Returns the sandboxed report.
fn refused(policy: &sandspec::policy::Policy, args: &[&str]) -> serde_json::Value {
    let control = bare(args);
    assert!(
        ok(&control),
        "control: {args:?} does not work here even without a sandbox, so the test proves nothing: {control}"
    );
    let out = run_probe(policy, args);
    let r = report(&out);
    assert!(!ok(&r), "{args:?} got out of the sandbox: {r}");
    r
}

fn errno_of(v: &serde_json::Value) -> &str {
    v["errno"].as_str().unwrap_or("")
}

// --------------------------------------------------------------- terminal

/// Runs `argv` with a fresh pty as its controlling terminal and stdio (as
/// an interactive shell would run it), then returns what is waiting in
/// the terminal's input queue: bytes injected with TIOCSTI would be read
/// by the shell after the command ends.
fn injected_into_terminal(argv: &[String]) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).expect("failed to open a pty");
    let slave = pty.slave.as_raw_fd();
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for fd in 0..3 {
        let f = std::fs::File::from(pty.slave.try_clone().expect("dup the pty"));
        match fd {
            0 => cmd.stdin(f),
            1 => cmd.stdout(f),
            _ => cmd.stderr(f),
        };
    }
    // SAFETY: async-signal-safe calls only (setsid, ioctl) in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().expect("failed to run under the pty");
    assert!(
        status.code().is_some(),
        "{argv:?} ended by a signal: {status}"
    );
    // What a reader of the terminal would now get (non-canonical, no wait).
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    t.local_flags
        .remove(nix::sys::termios::LocalFlags::ICANON | nix::sys::termios::LocalFlags::ECHO);
    t.control_chars[nix::sys::termios::SpecialCharacterIndices::VMIN as usize] = 0;
    t.control_chars[nix::sys::termios::SpecialCharacterIndices::VTIME as usize] = 0;
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
        .expect("tcsetattr");
    let mut buf = [0u8; 256];
    let mut f = std::fs::File::from(pty.slave);
    let n = f.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

#[test]
fn terminal_injection_never_reaches_the_callers_terminal() {
    if !landlock_or_refusal() {
        return;
    }
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    let probe = probe().to_string_lossy().into_owned();
    let control = injected_into_terminal(&[probe.clone(), "tiocsti".into(), "id\n".into()]);
    if !legacy && control.is_empty() {
        eprintln!(
            "the kernel itself refuses TIOCSTI (dev.tty.legacy_tiocsti = 0): nothing to test"
        );
        return;
    }
    assert_eq!(control, b"id\n", "control: TIOCSTI did not inject bare");
    let mut argv = vec![sandspec().to_string_lossy().into_owned(), "sandbox".into()];
    for p in SYSTEM_READ {
        argv.extend(["--read".into(), p.to_string()]);
    }
    for p in base_policy().exec {
        argv.extend(["--exec".into(), p.to_string_lossy().into_owned()]);
    }
    argv.extend(["--".into(), probe.clone(), "tiocsti".into(), "id\n".into()]);
    assert_eq!(
        injected_into_terminal(&argv),
        b"",
        "the sandboxed command typed into the caller's terminal"
    );
    // The same with the request's upper 32 bits set (CVE-2019-10063).
    let n = argv.len();
    argv[n - 2] = "tiocsti-hibits".into();
    assert_eq!(injected_into_terminal(&argv), b"");
}

#[test]
fn the_command_has_no_controlling_terminal_and_its_own_session() {
    if !landlock_or_refusal() {
        return;
    }
    let r = report(&run_probe(&base_policy(), &["tty-info"]));
    // SAFETY: getsid has no preconditions.
    let ours = unsafe { libc::getsid(0) } as i64;
    assert_ne!(r["sid"].as_i64(), Some(ours), "{r}");
    assert_eq!(r["ctty"], serde_json::json!(false), "{r}");
    assert_eq!(r["dev_tty"], serde_json::json!(false), "{r}");
}

// ---------------------------------------------------------------- network

#[test]
fn tcp_fast_open_sends_nothing_under_deny_or_past_a_port_list() {
    if !landlock_or_refusal() {
        return;
    }
    let listener = TcpOracle::new();
    let target = format!("127.0.0.1:{}", listener.port());
    let control = bare(&["tcp-fastopen", &target]);
    assert!(ok(&control), "control: {control}");
    assert!(
        listener.count() >= 1,
        "control: nothing reached the listener"
    );
    let mut policies = vec![base_policy()];
    if abi() >= 4 {
        let mut p = base_policy();
        p.network = Network::Ports(PortRules {
            tcp_connect: vec![1],
            tcp_bind: vec![],
        });
        policies.push(p);
    }
    for p in &policies {
        for op in ["tcp-fastopen", "tcp-fastopen-connect"] {
            let r = report(&run_probe(p, &[op, &target]));
            assert!(!ok(&r), "{op} under {:?}: {r}", p.network);
            assert_eq!(
                listener.count(),
                0,
                "{op} under {:?} reached the host",
                p.network
            );
        }
    }
}

#[test]
fn no_listening_socket_appears_under_deny_or_without_a_bind_port() {
    if !landlock_or_refusal() {
        return;
    }
    let r = refused(&base_policy(), &["tcp-listen", "0"]);
    assert_eq!(errno_of(&r), "EPERM", "{r}");
    if abi() >= 4 {
        let mut p = base_policy();
        p.network = Network::Ports(PortRules {
            tcp_connect: vec![1],
            tcp_bind: vec![],
        });
        let r = report(&run_probe(&p, &["tcp-listen", "0"]));
        assert!(
            !ok(&r),
            "listen() auto-bound a port under connect-only rules: {r}"
        );
    }
}

#[test]
fn only_unix_sockets_exist_under_deny_and_only_where_landlock_checks_them() {
    if !landlock_or_refusal() {
        return;
    }
    let p = base_policy();
    for (fam, ty) in [
        ("netlink", "raw"),
        ("inet6", "dgram"),
        ("inet", "stream"),
        ("vsock", "stream"),
        ("alg", "seqpacket"),
    ] {
        let out = run_probe(&p, &["socket", fam, ty]);
        let r = report(&out);
        assert!(!ok(&r), "socket({fam}, {ty}) under deny: {r}");
        assert_eq!(errno_of(&r), "EPERM", "socket({fam}, {ty}): {r}");
    }
    let r = report(&run_probe(&p, &["socket", "unix", "stream"]));
    assert_eq!(
        ok(&r),
        abi() >= 9,
        "unix socket under deny on ABI {}: {r}",
        abi()
    );
}

#[test]
fn a_pathname_unix_socket_outside_the_allowlist_is_out_of_reach() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let path = d.path().join("host.sock");
    let listener = UnixListener::bind(&path).expect("bind a host unix socket");
    listener.set_nonblocking(true).unwrap();
    chmod(&path, 0o777);
    let path = path.to_string_lossy().into_owned();
    let control = bare(&["unix-connect", &path]);
    assert!(ok(&control), "control: {control}");
    assert!(listener.accept().is_ok(), "control: nothing arrived");
    let r = report(&run_probe(&base_policy(), &["unix-connect", &path]));
    assert!(!ok(&r), "{r}");
    assert!(
        listener.accept().is_err(),
        "the sandboxed command reached a host unix socket"
    );
}

// ----------------------------------------------------------- process tree

#[test]
fn the_command_cannot_kill_or_stop_its_supervisor() {
    if !landlock_or_refusal() {
        return;
    }
    for op in ["kill-parent", "stop-parent"] {
        let out = run_probe(&base_policy(), &[op]);
        let r = report(&out);
        assert!(!ok(&r), "{op}: {r}");
        assert_eq!(errno_of(&r), "EPERM", "{op}: {r}");
        assert_eq!(out.outcome, Outcome::Exited { code: 1 }, "{op}");
    }
}

#[test]
fn a_cancelled_run_forwards_the_signal_and_leaves_nothing_behind() {
    if !landlock_or_refusal() {
        return;
    }
    let sb = Sandbox::new(&base_policy()).expect("sandbox");
    let cancel = Canceller::new().expect("canceller");
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel(libc::SIGTERM);
    });
    let started = Instant::now();
    let probe = probe().to_string_lossy().into_owned();
    let out = sb.run_opts(
        &Command::argv([probe.as_str(), "setsid-daemon", "30"]),
        &RunOptions {
            cancel: Some(cancel.clone()),
            grace: Duration::from_millis(500),
            ..Default::default()
        },
    );
    t.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run outlived its cancel"
    );
    let r = report(&out);
    for pid in r["pids"].as_array().expect("daemon pids") {
        assert!(
            !alive(pid.as_i64().unwrap()),
            "daemon {pid} survived the cancel"
        );
    }
    // Cancelling is sticky: a run started afterwards ends at once.
    let out = sb.run_opts(
        &Command::argv([probe.as_str(), "sleep", "30"]),
        &RunOptions {
            cancel: Some(cancel),
            grace: Duration::from_millis(100),
            ..Default::default()
        },
    );
    assert_eq!(
        out.outcome,
        Outcome::Signaled {
            signal: libc::SIGTERM
        },
        "{out:?}"
    );
}

// ------------------------------------------------------------------- root

#[test]
fn the_command_holds_no_capability() {
    if !landlock_or_refusal() {
        return;
    }
    let r = report(&run_probe(&base_policy(), &["caps"]));
    for set in ["cap_inh", "cap_prm", "cap_eff", "cap_amb"] {
        assert_eq!(r[set].as_str(), Some("0000000000000000"), "{set}: {r}");
    }
    if is_root() {
        // Emptied for root, who holds the full set outside.
        assert_eq!(r["cap_bnd"].as_str(), Some("0000000000000000"), "{r}");
    }
}

#[test]
fn write_access_does_not_make_device_nodes() {
    if !landlock_or_refusal() || !is_root() {
        return;
    }
    let d = scratch();
    let mut p = base_policy();
    p.write.push(d.path().to_path_buf());
    let node = d.path().join("mem");
    let node = node.to_string_lossy();
    let control = bare(&["mknod", &node, "c", "1", "3"]);
    assert!(ok(&control), "control: {control}");
    std::fs::remove_file(&*node).unwrap();
    let r = report(&run_probe(&p, &["mknod", &node, "c", "1", "3"]));
    assert!(!ok(&r), "{r}");
    assert!(!std::path::Path::new(&*node).exists());
}

#[test]
fn set_id_bits_are_refused_and_root_changes_no_metadata() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let f = d.path().join("tool");
    std::fs::write(&f, "x").unwrap();
    chmod(&f, 0o777);
    let mut p = base_policy();
    p.write.push(d.path().to_path_buf());
    let fs = f.to_string_lossy();
    let r = report(&run_probe(&p, &["chmod", &fs, "4755"]));
    assert!(!ok(&r), "{r}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o777
    );
    let r = report(&run_probe(&p, &["chmod", &fs, "0700"]));
    assert_eq!(ok(&r), !is_root(), "plain chmod inside the write path: {r}");
}

// ------------------------------------------------------------ exec bypass

#[test]
fn a_binary_copied_into_a_memfd_does_not_run() {
    if !landlock_or_refusal() {
        return;
    }
    let truebin = if std::path::Path::new("/usr/bin/true").exists() {
        "/usr/bin/true"
    } else {
        "/bin/true"
    };
    let r = refused(&base_policy(), &["memfd-exec", truebin]);
    assert_eq!(errno_of(&r), "EPERM", "{r}");
}

// ---------------------------------------------------------- kernel surface

#[test]
fn host_wide_ipc_and_keyrings_are_refused_and_nothing_is_left_behind() {
    if !landlock_or_refusal() {
        return;
    }
    let before = std::fs::read_dir("/dev/mqueue")
        .map(|d| d.count())
        .unwrap_or(0);
    for op in [
        &["sysv-shm"][..],
        &["sysv-msg"],
        &["sysv-sem"],
        &["keyctl-add", "sandspec-test"],
    ] {
        let r = refused(&base_policy(), op);
        assert_eq!(errno_of(&r), "EPERM", "{op:?}: {r}");
    }
    if std::path::Path::new("/dev/mqueue").is_dir() {
        let r = refused(&base_policy(), &["mq-open", "/sandspec-hardening-test"]);
        assert_eq!(errno_of(&r), "EPERM", "{r}");
        let after = std::fs::read_dir("/dev/mqueue")
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(after, before, "a message queue was left on the host");
    }
}

#[test]
fn namespaces_bpf_perf_and_userfaultfd_are_refused() {
    if !landlock_or_refusal() {
        return;
    }
    let mut attacks: Vec<&[&str]> = vec![
        &["unshare", "user"],
        &["perf-open", "task-clock"],
        &["userfaultfd"],
    ];
    if is_root() {
        attacks.push(&["bpf-prog-load"]);
        attacks.push(&["unshare", "net"]);
    }
    for a in attacks {
        let control = bare(a);
        if !ok(&control) {
            // Refused by the host itself (a sysctl): the kernel closes it.
            eprintln!("{a:?} is refused here even bare ({control}); the host closes it");
            continue;
        }
        let r = report(&run_probe(&base_policy(), a));
        assert!(!ok(&r), "{a:?}: {r}");
        assert_eq!(errno_of(&r), "EPERM", "{a:?}: {r}");
    }
}

#[test]
fn foreign_syscall_abis_kill_the_command_instead_of_bypassing_the_filter() {
    if !landlock_or_refusal() || !cfg!(target_arch = "x86_64") {
        return;
    }
    let control = bare(&["compat-socket", "i386"]);
    if !ok(&control) {
        eprintln!("no i386 syscall entry on this kernel ({control}): nothing to bypass");
        return;
    }
    let out: RunOutput = run_probe(&base_policy(), &["compat-socket", "i386"]);
    let r = report(&out);
    assert!(!ok(&r), "{r}");
    assert_eq!(r["signal"], serde_json::json!(libc::SIGSYS), "{r}");
}

// ------------------------------------------------------------- leftovers

/// The run cgroups of a crashed run (its pid gone) are removed by the next
/// process that makes one, so a reused pid can never collide with them.
#[test]
fn stale_run_cgroups_of_dead_processes_are_swept() {
    if !landlock_or_refusal() || !is_root() {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(root) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mp = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let opts = r.nth(1).unwrap_or("");
        (fstype == "cgroup" && opts.split(',').any(|o| o == "pids")).then(|| mp.to_string())
    }) else {
        eprintln!("no cgroup v1 pids hierarchy here; the cgroup2 path is the same code");
        return;
    };
    let parent = std::path::Path::new(&root).join("sandspec");
    std::fs::create_dir_all(&parent).unwrap();
    // pid_max is at most 2^22: this pid cannot exist.
    let stale = parent.join("4194999-0");
    let _ = std::fs::create_dir(&stale);
    assert!(stale.is_dir());
    let mut cmd = std::process::Command::new(sandspec());
    cmd.arg("sandbox");
    for p in SYSTEM_READ {
        cmd.args(["--read", p]);
    }
    for p in base_policy().exec {
        cmd.arg("--exec").arg(p);
    }
    let st = cmd
        .args(["--max-procs", "4", "--"])
        .arg(probe())
        .args(["exit", "0"])
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    assert!(
        !stale.exists(),
        "the stale cgroup {} is still there",
        stale.display()
    );
}

/// Below Landlock ABI 6 the seccomp fallback guards the supervisor, with
/// the run's pids patched into a copy of the filter on the command's
/// stack. Kernels of that age run it for real (the kernel matrix's 6.1
/// row); here the mutant without Landlock scoping takes the same path, so
/// the patching is exercised on every kernel.
#[test]
fn without_signal_scoping_the_seccomp_fallback_guards_the_supervisor() {
    if !landlock_or_refusal() {
        return;
    }
    let sb = Sandbox::new_mutant(&base_policy(), sandspec::sandbox::Mutant::LandlockScope)
        .expect("sandbox");
    let run = |args: &[&str]| {
        let mut argv = vec![probe().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        report(&sb.run(&Command::argv(argv)))
    };
    assert!(ok(&run(&["exit", "0"])), "a run with the patched filter");
    for op in ["kill-parent", "stop-parent", "kill-parent-group"] {
        let r = run(&[op]);
        assert!(!ok(&r), "{op}: {r}");
        assert_eq!(errno_of(&r), "EPERM", "{op}: {r}");
    }
}

/// Root's process limit is a pids cgroup (this run's tasks only); a user
/// without a delegated cgroup gets RLIMIT_NPROC, counted over the whole
/// uid, and the sandbox says so.
#[test]
fn the_process_limit_says_when_it_counts_the_whole_uid() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.limits.processes = Some(4);
    let sb = Sandbox::new(&p).expect("sandbox");
    if is_root() {
        assert!(!sb.process_limit_is_uid_wide());
    }
    let unlimited = Sandbox::new(&base_policy()).expect("sandbox");
    assert!(!unlimited.process_limit_is_uid_wide());
}
