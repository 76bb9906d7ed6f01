//! The reference sandbox as a library: every behaviour of issue 2, checked
//! by its observable effect (what the probe could do, what reached a
//! loopback listener, which pids are left, which files exist on the host).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use rstest::rstest;
use sandspec::policy::{
    Command, Limits, Network, Outcome, PortRules, SetupErrorKind, Size, Timeout,
};

fn ok(out: &sandspec::policy::RunOutput) -> bool {
    report(out)["ok"] == serde_json::json!(true)
}

fn errno(out: &sandspec::policy::RunOutput) -> String {
    report(out)["errno"].as_str().unwrap_or("").to_string()
}

// ---------------------------------------------------------------- files

#[test]
fn read_allowlist_allows_listed_dir_and_denies_sibling() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    std::fs::create_dir(d.path().join("a")).unwrap();
    std::fs::create_dir(d.path().join("b")).unwrap();
    std::fs::write(d.path().join("a/open.txt"), "open").unwrap();
    std::fs::write(d.path().join("b/secret.txt"), "secret").unwrap();
    let mut p = base_policy();
    p.read.push(d.path().join("a"));

    let out = run_probe(&p, &["read", d.path().join("a/open.txt").to_str().unwrap()]);
    assert!(ok(&out), "{:?}", report(&out));
    assert_eq!(report(&out)["value"], 4);

    let out = run_probe(
        &p,
        &["read", d.path().join("b/secret.txt").to_str().unwrap()],
    );
    assert!(!ok(&out));
    assert_eq!(errno(&out), "EACCES");
}

#[test]
fn write_allowlist_allows_create_inside_and_denies_outside() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    std::fs::create_dir(d.path().join("w")).unwrap();
    let mut p = base_policy();
    p.write.push(d.path().join("w"));

    let inside = d.path().join("w/new.txt");
    let out = run_probe(&p, &["write", inside.to_str().unwrap(), "hello"]);
    assert!(ok(&out), "{:?}", report(&out));
    assert_eq!(read(&inside), "hello");

    let outside = d.path().join("escaped.txt");
    let out = run_probe(&p, &["write", outside.to_str().unwrap()]);
    assert!(!ok(&out));
    assert_eq!(errno(&out), "EACCES");
    assert!(
        !outside.exists(),
        "the sandbox wrote outside its write list"
    );
}

#[test]
fn write_implies_read() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    std::fs::write(d.path().join("f.txt"), "readable").unwrap();
    let mut p = base_policy();
    p.write.push(d.path().to_path_buf());
    let out = run_probe(&p, &["read", d.path().join("f.txt").to_str().unwrap()]);
    assert!(ok(&out), "{:?}", report(&out));
}

#[test]
fn read_only_file_rule_does_not_allow_writing_it() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let f = d.path().join("ro.txt");
    std::fs::write(&f, "original").unwrap();
    let mut p = base_policy();
    p.read.push(f.clone());
    assert!(ok(&run_probe(&p, &["read", f.to_str().unwrap()])));
    let out = run_probe(&p, &["write", f.to_str().unwrap(), "changed"]);
    assert!(!ok(&out));
    assert_eq!(read(&f), "original");
}

#[test]
fn dev_null_works_as_a_file_rule() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    let out = run_probe(&p, &["write", "/dev/null"]);
    assert!(!ok(&out), "/dev/null writable without a rule");
    p.write.push(PathBuf::from("/dev/null"));
    let out = run_probe(&p, &["write", "/dev/null"]);
    assert!(ok(&out), "{:?}", report(&out));
}

#[test]
fn exec_needs_an_exec_rule() {
    if !landlock_or_refusal() {
        return;
    }
    let p = base_policy();
    // /usr is readable but not executable.
    let out = run_probe(&p, &["exec", "/bin/true"]);
    assert!(!ok(&out));
    assert_eq!(errno(&out), "EACCES");
    let out = run_probe(&shell_policy(), &["exec", "/bin/true"]);
    assert!(ok(&out), "{:?}", report(&out));
}

#[test]
fn command_outside_the_exec_list_fails_like_env_126() {
    if !landlock_or_refusal() {
        return;
    }
    let out = sandspec::sandbox::run(&base_policy(), &Command::argv(["/bin/true"]));
    assert_eq!(out.outcome, Outcome::Exited { code: 126 });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed to execute /bin/true: refused by the policy's exec rules")
            && err.contains("Permission denied"),
        "{err}"
    );
    let out = sandspec::sandbox::run(&base_policy(), &Command::argv(["/no/such/program"]));
    assert_eq!(out.outcome, Outcome::Exited { code: 127 });
}

#[test]
fn symlink_to_outside_does_not_widen_the_rules() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    std::fs::create_dir(d.path().join("a")).unwrap();
    std::fs::write(d.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret.txt"), d.path().join("a/link")).unwrap();
    let mut p = base_policy();
    p.read.push(d.path().join("a"));
    let out = run_probe(&p, &["read", d.path().join("a/link").to_str().unwrap()]);
    assert!(!ok(&out), "a symlink led out of the allowlisted dir");
}

#[test]
fn missing_paths_are_filtered_reported_and_other_rules_still_hold() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    std::fs::create_dir(d.path().join("a")).unwrap();
    std::fs::write(d.path().join("a/x"), "x").unwrap();
    std::fs::write(d.path().join("other"), "o").unwrap();
    let missing = d.path().join("does/not/exist");
    let mut p = base_policy();
    p.read.push(missing.clone());
    p.read.push(d.path().join("a"));

    let out = run_probe(&p, &["read", d.path().join("a/x").to_str().unwrap()]);
    assert!(ok(&out));
    assert_eq!(out.filtered_paths, vec![missing]);
    let out = run_probe(&p, &["read", d.path().join("other").to_str().unwrap()]);
    assert!(!ok(&out), "filtering a path widened the sandbox");
}

#[test]
fn relative_paths_are_an_invalid_policy() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.read.push(PathBuf::from("relative/dir"));
    let out = run_probe(&p, &["exit", "0"]);
    assert!(
        matches!(
            out.outcome,
            Outcome::SetupError {
                kind: SetupErrorKind::InvalidPolicy,
                ..
            }
        ),
        "{:?}",
        out.outcome
    );
}

#[test]
fn tcp_port_rules_need_abi_4_and_say_so() {
    let p = sandspec::policy::Policy {
        network: Network::Ports(PortRules {
            tcp_connect: vec![80],
            tcp_bind: vec![],
        }),
        ..Default::default()
    };
    let err =
        sandspec::sandbox::landlock::compile(&p, 3, sandspec::sandbox::landlock::Mechanisms::ALL)
            .unwrap_err();
    assert_eq!(err.kind, SetupErrorKind::AbiTooLow);
    assert!(err.message.contains("ABI 4"), "{}", err.message);
    let p = sandspec::policy::Policy {
        scope: vec![sandspec::policy::ScopeKind::Signal],
        ..Default::default()
    };
    let err =
        sandspec::sandbox::landlock::compile(&p, 5, sandspec::sandbox::landlock::Mechanisms::ALL)
            .unwrap_err();
    assert_eq!(err.kind, SetupErrorKind::AbiTooLow);
}

// -------------------------------------------------------------- network

#[test]
fn network_deny_blocks_tcp_and_udp_to_loopback() {
    if !landlock_or_refusal() {
        return;
    }
    let tcp = TcpOracle::new();
    let udp = UdpOracle::new();
    let p = base_policy();
    let t = run_probe(&p, &["tcp-connect", &tcp.addr()]);
    let u = run_probe(&p, &["udp-send", &udp.addr()]);
    assert!(!ok(&t) && !ok(&u));
    assert_eq!(tcp.count(), 0, "a TCP connection got through network: deny");
    assert_eq!(udp.count(), 0, "a datagram got through network: deny");
}

/// Where UDP is refused depends on the kernel: Landlock controls UDP from
/// ABI 10, so there the socket is made and the send refused by Landlock;
/// below it the seccomp filter refuses socket(2) itself. The kernel matrix
/// runs both paths (7.2 and 7.3 the first, the other Landlock rows the second).
#[test]
fn udp_is_refused_at_socket_under_deny_on_every_abi() {
    if !landlock_or_refusal() {
        return;
    }
    // Under `network: deny` seccomp lets no socket but AF_UNIX be created,
    // whatever Landlock controls (from ABI 10 it controls UDP too): one
    // rule for every kernel, and the families Landlock never checks
    // (raw, packet, netlink, SCTP...) are closed by the same rule.
    let udp = UdpOracle::new();
    let p = base_policy();
    let sock = run_probe(&p, &["udp-socket"]);
    let send = run_probe(&p, &["udp-send", &udp.addr()]);
    assert!(!ok(&send), "{:?}", report(&send));
    assert_eq!(udp.count(), 0, "a datagram got through network: deny");
    assert!(
        !ok(&sock),
        "ABI {}: UDP must be refused at socket(2): {:?}",
        abi(),
        report(&sock)
    );
    assert!(
        ["EPERM", "EACCES"].contains(&errno(&sock).as_str()),
        "{:?}",
        report(&sock)
    );
}

#[test]
fn network_allow_lets_tcp_and_udp_through() {
    if !landlock_or_refusal() {
        return;
    }
    let tcp = TcpOracle::new();
    let udp = UdpOracle::new();
    let mut p = base_policy();
    p.network = Network::Allow;
    assert!(ok(&run_probe(&p, &["tcp-connect", &tcp.addr()])));
    assert!(ok(&run_probe(&p, &["udp-send", &udp.addr()])));
    assert_eq!(tcp.count(), 1);
    assert_eq!(udp.count(), 1);
}

#[test]
fn tcp_connect_allowlist_reaches_only_the_listed_port() {
    if !landlock_or_refusal() {
        return;
    }
    let allowed = TcpOracle::new();
    let other = TcpOracle::new();
    let udp = UdpOracle::new();
    let mut p = base_policy();
    p.network = Network::Ports(PortRules {
        tcp_connect: vec![allowed.port()],
        tcp_bind: vec![],
    });
    if abi() < 4 {
        let out = run_probe(&p, &["tcp-connect", &allowed.addr()]);
        assert!(matches!(
            out.outcome,
            Outcome::SetupError {
                kind: SetupErrorKind::AbiTooLow,
                ..
            }
        ));
        return;
    }
    assert!(ok(&run_probe(&p, &["tcp-connect", &allowed.addr()])));
    let out = run_probe(&p, &["tcp-connect", &other.addr()]);
    assert!(!ok(&out));
    assert!(!ok(&run_probe(&p, &["udp-send", &udp.addr()])));
    assert_eq!(allowed.count(), 1);
    assert_eq!(other.count(), 0);
    assert_eq!(udp.count(), 0);
}

#[rstest]
#[case::raw_socket(&["raw-socket"])]
#[case::io_uring(&["io-uring"])]
fn seccomp_denies(#[case] args: &[&str]) {
    if !landlock_or_refusal() {
        return;
    }
    let out = run_probe(&base_policy(), args);
    assert!(!ok(&out), "{:?}", report(&out));
    assert!(
        ["EPERM", "EACCES"].contains(&errno(&out).as_str()),
        "{:?}",
        report(&out)
    );
}

/// The `Seccomp_filters:` count of a /proc/<pid>/status text.
fn seccomp_filters(status: &str) -> u32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Seccomp_filters line in {status:?}"))
}

/// The filter is loaded on every run, the network allowed or not: it
/// carries the default-deny kernel surface (io_uring, BPF, keyrings, IPC,
/// namespaces…), which no policy field grants. Exactly one: the sandbox
/// adds no second filter for the network.
#[test]
fn seccomp_filter_is_loaded_whatever_the_network() {
    if !landlock_or_refusal() {
        return;
    }
    let own = seccomp_filters(&std::fs::read_to_string("/proc/self/status").expect("own status"));
    let filters_under = |network: Network| {
        let mut p = shell_policy();
        p.read.push(PathBuf::from("/proc"));
        p.network = network;
        let out = sandspec::sandbox::run(
            &p,
            &Command::argv(["/bin/sh", "-c", "cat /proc/self/status"]),
        );
        assert_eq!(out.outcome, Outcome::Exited { code: 0 }, "{out:?}");
        seccomp_filters(&String::from_utf8_lossy(&out.stdout))
    };
    assert_eq!(filters_under(Network::Allow), own + 1);
    assert_eq!(filters_under(Network::Deny), own + 1);
}

// ---------------------------------------------------------- fail closed

#[test]
fn without_landlock_nothing_runs() {
    // Simulated in child processes by `tests/cli_sandbox.rs`; here, the
    // classification of each kernel answer.
    use sandspec::kernel::LandlockSupport;
    use sandspec::sandbox::landlock::require_landlock;
    let e = require_landlock(LandlockSupport::NotBuilt).unwrap_err();
    assert_eq!(e.kind, SetupErrorKind::LandlockUnavailable);
    assert!(e.message.contains("ENOSYS"));
    let e = require_landlock(LandlockSupport::Disabled).unwrap_err();
    assert_eq!(e.kind, SetupErrorKind::LandlockDisabled);
    assert!(e.message.contains("EOPNOTSUPP"));
    assert_eq!(require_landlock(LandlockSupport::Abi(7)).unwrap(), 7);
}

// --------------------------------------------------------------- process

#[test]
fn timeout_kills_setsid_grandchild_and_keeps_output() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.timeout = Some(Timeout(Duration::from_millis(300)));
    let out = run_probe(&p, &["setsid-daemon", "60"]);
    assert_eq!(out.outcome, Outcome::Timeout);
    let r = report(&out); // written before the deadline, kept
    let pids: Vec<i64> = r["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the timeout");
    }
}

#[test]
fn leftover_daemon_dies_when_the_command_exits() {
    if !landlock_or_refusal() {
        return;
    }
    let out = run_probe(&base_policy(), &["setsid-daemon", "0"]);
    assert_eq!(out.outcome, Outcome::Exited { code: 0 });
    for pid in report(&out)["pids"].as_array().unwrap() {
        let pid = pid.as_i64().unwrap();
        assert!(!alive(pid), "pid {pid} outlived the sandboxed command");
    }
}

#[test]
fn exit_codes_and_signals_are_reported_exactly() {
    if !landlock_or_refusal() {
        return;
    }
    let p = base_policy();
    assert_eq!(
        run_probe(&p, &["exit", "42"]).outcome,
        Outcome::Exited { code: 42 }
    );
    assert_eq!(
        run_probe(&p, &["signal-self", "KILL"]).outcome,
        Outcome::Signaled { signal: 9 }
    );
    assert_eq!(
        run_probe(&p, &["signal-self", "SEGV"]).outcome,
        Outcome::Signaled { signal: 11 }
    );
}

#[test]
fn environment_is_cleared_except_listed_and_minimal_path() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.env.insert("ONLY".into(), "this".into());
    let out = run_probe(&p, &["env"]);
    let env = report(&out)["env"].clone();
    let keys: Vec<&String> = env.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ONLY", "PATH"]);
    assert_eq!(env["PATH"], sandspec::policy::DEFAULT_PATH);
}

#[test]
fn cwd_is_honoured() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let mut p = base_policy();
    p.cwd = Some(d.path().to_path_buf());
    let out = run_probe(&p, &["cwd"]);
    assert_eq!(report(&out)["cwd"], d.path().to_str().unwrap());
}

#[test]
fn stdin_bytes_are_passed_through() {
    if !landlock_or_refusal() {
        return;
    }
    let input = b"line one\nline two\n".to_vec();
    let argv = vec![probe().to_string_lossy().into_owned(), "stdin".into()];
    let out = sandspec::sandbox::run(
        &base_policy(),
        &Command::argv(argv).with_stdin(input.clone()),
    );
    let r = report(&out);
    assert_eq!(r["value"], input.len());
    assert_eq!(r["text"], "line one\nline two\n");
}

#[test]
fn large_script_body_is_not_passed_through_argv() {
    if !landlock_or_refusal() {
        return;
    }
    // 4 MiB of shell, past ARG_MAX (2 MiB here) and far past its
    // per-argument limit (128 KiB). Comment lines: the shell reads every
    // byte but runs one command (a million `x=1` took 9 s under TCG).
    let mut body = format!("#{}\n", "x".repeat(62)).repeat(1 << 16);
    body.push_str("echo last-line-ran\n");
    let out = sandspec::sandbox::run(&shell_policy(), &Command::script("/bin/sh", body));
    assert_eq!(
        out.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"last-line-ran\n");
}

// ----------------------------------------------------------------- limits

#[test]
fn memory_limit_makes_large_allocations_fail() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.limits = Limits {
        memory: Some(Size(128 << 20)),
        ..Default::default()
    };
    let out = run_probe(&p, &["alloc", "512M"]);
    assert!(!ok(&out));
    assert_eq!(errno(&out), "ENOMEM");
    assert!(
        ok(&run_probe(&p, &["alloc", "16M"])),
        "control allocation failed"
    );
}

#[test]
fn process_limit_contains_a_fork_bomb() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.limits.processes = Some(8);
    let out = run_probe(&p, &["fork-many", "64"]);
    let r = report(&out);
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["value"].as_i64().unwrap() < 8, "{r}");
    let mut p = base_policy();
    p.limits.processes = Some(80);
    assert!(ok(&run_probe(&p, &["fork-many", "16"])), "control failed");
}

#[test]
fn each_run_of_one_sandbox_gets_the_whole_process_limit() {
    if !landlock_or_refusal() {
        return;
    }
    // As root the limit is a pids cgroup, which the sandbox reuses once a
    // run's tree is gone: a leftover of one run must not count in the next.
    let mut p = base_policy();
    p.limits.processes = Some(4);
    let sb = sandspec::sandbox::Sandbox::new(&p).expect("sandbox");
    let probe_cmd = |args: &[&str]| {
        let mut argv = vec![probe().to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        Command::argv(argv)
    };
    let daemon = sb.run(&probe_cmd(&["setsid-daemon", "0"]));
    assert_eq!(daemon.outcome, Outcome::Exited { code: 0 });
    for _ in 0..2 {
        let r = report(&sb.run(&probe_cmd(&["fork-many", "8"])));
        assert_eq!(r["ok"], false, "{r}");
        let forked = r["value"].as_i64().unwrap();
        if is_root() {
            // The probe itself plus 3 children make the 4 the cgroup allows.
            assert_eq!(forked, 3, "{r}");
        } else {
            assert!(forked <= 3, "{r}");
        }
    }
}

#[test]
fn open_files_limit_holds() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.read.push(PathBuf::from("/dev/null")); // what open-many opens
    p.limits.open_files = Some(16);
    let out = run_probe(&p, &["open-many", "64"]);
    let r = report(&out);
    assert_eq!(r["ok"], false);
    assert!(r["value"].as_i64().unwrap() < 16);
    assert_eq!(r["errno"], "EMFILE");
}

#[test]
fn cpu_seconds_limit_kills_a_busy_loop() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.limits.cpu_seconds = Some(1);
    let out = run_probe(&p, &["cpu-burn", "30"]);
    assert!(
        matches!(out.outcome, Outcome::Signaled { signal } if signal == libc::SIGXCPU || signal == libc::SIGKILL),
        "{:?}",
        out.outcome
    );
}

#[test]
fn output_is_capped_and_marked_truncated() {
    if !landlock_or_refusal() {
        return;
    }
    let mut p = base_policy();
    p.limits.output_bytes = Some(Size(1 << 20));
    let out = run_probe(&p, &["flood", "64M"]);
    assert_eq!(out.outcome, Outcome::Exited { code: 0 });
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.output_truncated);
    let done = probe_json(&out.stderr);
    assert_eq!(done["value"], 64 << 20, "the child could not write it all");
}

#[test]
fn both_pipes_are_drained_concurrently() {
    if !landlock_or_refusal() {
        return;
    }
    // 1 MiB on stderr before anything on stdout: a reader that drained
    // stdout first would deadlock against the 64 KiB pipe buffer.
    let body = "head -c 1048576 /dev/zero >&2; echo done";
    let mut p = shell_policy();
    p.read.push(PathBuf::from("/dev/zero"));
    let out = sandspec::sandbox::run(&p, &Command::script("/bin/sh", body));
    assert_eq!(
        out.outcome,
        Outcome::Exited { code: 0 },
        "{:?}",
        String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(200)])
    );
    assert_eq!(out.stderr.len(), 1 << 20);
    assert_eq!(out.stdout, b"done\n");
}

#[test]
fn io_uring_is_denied_whatever_the_network() {
    if !landlock_or_refusal() {
        return;
    }
    // Control: the probe creates an io_uring when run bare.
    let bare = std::process::Command::new(probe())
        .arg("io-uring")
        .output()
        .expect("run the probe bare");
    let bare_report = probe_json(&bare.stdout);
    assert_eq!(
        bare_report["ok"],
        serde_json::json!(true),
        "control: io_uring unavailable here even without a sandbox: {bare_report}"
    );
    for network in [Network::Deny, Network::Allow] {
        let mut p = base_policy();
        p.network = network.clone();
        let out = run_probe(&p, &["io-uring"]);
        assert!(!ok(&out), "io_uring under {network:?}: {:?}", report(&out));
        assert_eq!(errno(&out), "EPERM");
    }
}
