//! `sandspec sandbox` and `sandspec probe` as a person uses them: exit
//! codes, messages, fail-closed behaviour on kernels without Landlock
//! (simulated in the child with a seccomp filter), and the key cases again
//! as an unprivileged user when the tests run as root.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Proc, Output};

use common::*;
use sandspec::corpus::case::SimulatedLandlock;
use sandspec::sandbox::seccomp::Filter;
use sandspec::sandbox::simulate::NoLandlock;

/// `sandspec sandbox` with the probe's base policy as flags, then `args`.
fn sandbox_cmd(extra: &[&str], cmd: &[&str]) -> Proc {
    let mut c = Proc::new(sandspec());
    c.arg("sandbox");
    let p = base_policy();
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in &p.exec {
        c.arg("--exec").arg(e);
    }
    c.args(extra).arg("--").args(cmd);
    c
}

fn probe_s() -> String {
    probe().to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_code_is_the_commands_own() {
    if !landlock_or_refusal() {
        return;
    }
    let o = sandbox_cmd(&[], &[&probe_s(), "exit", "7"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

#[test]
fn timeout_exits_124_with_a_message() {
    if !landlock_or_refusal() {
        return;
    }
    let o = sandbox_cmd(&["--timeout", "200ms"], &[&probe_s(), "sleep", "30"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(124));
    assert!(
        stderr(&o).contains("sandspec: timed out after 200ms"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn signal_exits_128_plus_n() {
    if !landlock_or_refusal() {
        return;
    }
    let o = sandbox_cmd(&[], &[&probe_s(), "signal-self", "KILL"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(128 + 9));
}

#[test]
fn setup_failure_exits_125_with_prefixed_message() {
    if !landlock_or_refusal() {
        return;
    }
    let o = sandbox_cmd(&["--read", "not/absolute"], &[&probe_s(), "exit", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).starts_with("sandspec: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("not absolute"), "{}", stderr(&o));
}

#[test]
fn filtered_path_gets_one_warning_line_each() {
    if !landlock_or_refusal() {
        return;
    }
    let o = sandbox_cmd(
        &["--read", "/nonexistent/one", "--read", "/nonexistent/two"],
        &[&probe_s(), "exit", "0"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let warnings: Vec<_> = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("sandspec: warning: allowlisted path"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 2, "{}", stderr(&o));
    assert!(warnings[0].contains("/nonexistent/one"));
}

#[test]
fn network_is_denied_by_default() {
    if !landlock_or_refusal() {
        return;
    }
    let tcp = TcpOracle::new();
    let o = sandbox_cmd(&[], &[&probe_s(), "tcp-connect", &tcp.addr()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(tcp.count(), 0);
    let o = sandbox_cmd(
        &["--net", "allow"],
        &[&probe_s(), "tcp-connect", &tcp.addr()],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(tcp.count(), 1);
}

// ------------------------------------------------------------ fail closed

/// Runs `sandspec sandbox --write DIR -- probe write DIR/marker` with
/// `filter` installed in the sandspec process; returns its output and
/// whether the marker exists.
fn with_filter(filter: Option<Filter>, nolandlock: Option<NoLandlock>) -> (Output, bool) {
    let d = scratch();
    let marker = d.path().join("marker");
    let mut c = sandbox_cmd(
        &["--write", d.path().to_str().unwrap()],
        &[&probe_s(), "write", marker.to_str().unwrap()],
    );
    // SAFETY: the closure only installs a prebuilt seccomp filter, which is
    // async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            if let Some(f) = &filter {
                f.install()?;
            }
            if let Some(n) = &nolandlock {
                n.install()?;
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    (o, marker.exists())
}

#[test]
fn control_marker_is_written_with_landlock() {
    if !landlock_or_refusal() {
        return;
    }
    let (o, marker) = with_filter(None, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(marker, "the control run did not create the marker");
}

#[test]
fn no_landlock_enosys_is_a_hard_error_and_nothing_runs() {
    let (o, marker) = with_filter(
        None,
        Some(NoLandlock::new(SimulatedLandlock::Enosys).unwrap()),
    );
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("ENOSYS"), "{}", stderr(&o));
    assert!(!marker, "the command ran without Landlock");
}

#[test]
fn landlock_disabled_eopnotsupp_is_a_hard_error_and_nothing_runs() {
    let (o, marker) = with_filter(
        None,
        Some(NoLandlock::new(SimulatedLandlock::Eopnotsupp).unwrap()),
    );
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("EOPNOTSUPP"), "{}", stderr(&o));
    assert!(!marker, "the command ran with Landlock disabled");
}

#[test]
fn restrict_self_failure_is_a_hard_error_and_nothing_runs() {
    if !landlock_or_refusal() {
        return;
    }
    let f = Filter::failing(&[libc::SYS_landlock_restrict_self], libc::EPERM).unwrap();
    let (o, marker) = with_filter(Some(f), None);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("landlock_restrict_self"),
        "{}",
        stderr(&o)
    );
    assert!(!marker);
}

#[test]
fn seccomp_load_failure_is_a_hard_error_and_nothing_runs() {
    if !landlock_or_refusal() {
        return;
    }
    let f = Filter::failing(&[libc::SYS_seccomp], libc::EINVAL).unwrap();
    let (o, marker) = with_filter(Some(f), None);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("seccomp"), "{}", stderr(&o));
    assert!(!marker);
}

// ------------------------------------------------------------ output cap

#[test]
fn flooding_far_past_the_cap_keeps_sandspec_small() {
    if !landlock_or_refusal() {
        return;
    }
    // 256 MiB: 256 times the cap and 4 times the RSS bound below, so a
    // sandspec that kept what it drains could not pass. (1 GiB proves no
    // more and costs seconds under TCG in the kernel matrix.)
    // Started through the probe's `exec` (a small process): a child forked
    // straight from this test binary would start with its resident pages
    // and report them as its own peak.
    let mut c = Proc::new(probe());
    c.arg("exec").arg(sandspec()).arg("sandbox");
    let p = base_policy();
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in &p.exec {
        c.arg("--exec").arg(e);
    }
    c.args(["--max-output", "1M", "--"])
        .args([probe_s().as_str(), "flood", "256M"]);
    let out = c.output().unwrap();
    // The command's capped output comes first, without a newline.
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.rfind("{\"op\"").expect("the probe's report");
    let r = probe_json(text[at..].as_bytes());
    assert_eq!(r["value"], 0, "sandspec failed: {r}");
    let max_rss_kib = r["maxrss_kib"].as_i64().expect("maxrss_kib");
    assert!(
        max_rss_kib < 64 * 1024,
        "sandspec peaked at {max_rss_kib} KiB RSS while capturing a 256 MiB flood"
    );
}

// ---------------------------------------------------------------- probe

#[test]
fn probe_prints_kernel_facts_as_text_and_json() {
    let o = Proc::new(sandspec()).args(["probe"]).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("landlock:"), "{text}");
    let o = Proc::new(sandspec())
        .args(["probe", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    match sandspec::kernel::landlock().abi() {
        Some(abi) => assert_eq!(v["landlock"]["abi"], abi),
        None => assert!(v["landlock"]["abi"].is_null(), "{v}"),
    }
    assert!(v["release"].as_str().is_some_and(|r| !r.is_empty()));
}

// ------------------------------------------------- as an unprivileged user

/// A command run as `nobody` when we are root (where RLIMIT_NPROC and file
/// permissions behave differently); as ourselves otherwise.
fn unprivileged(program: &Path, args: &[String]) -> Proc {
    if is_root() {
        // nobody must be able to reach the binary: every ancestor searchable.
        for dir in program.ancestors().skip(1) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert!(
                mode & 0o001 != 0,
                "nobody cannot reach {} ({} is mode {mode:o}): build with CARGO_TARGET_DIR in a world-searchable directory, as .ci/run does",
                program.display(),
                dir.display()
            );
        }
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("running as root needs runuser to test as an unprivileged user");
        let mut c = Proc::new(runuser);
        c.args(["-u", "nobody", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Proc::new(program);
        c.args(args);
        c
    }
}

fn flags_of(p: &sandspec::policy::Policy) -> Vec<String> {
    let mut v = vec!["sandbox".to_string()];
    for r in &p.read {
        v.push("--read".into());
        v.push(r.to_string_lossy().into_owned());
    }
    for e in &p.exec {
        v.push("--exec".into());
        v.push(e.to_string_lossy().into_owned());
    }
    v
}

/// Runs as `nobody` one at a time: RLIMIT_NPROC counts every task of the
/// uid, so a concurrent `nobody` test would loosen the process limit.
static AS_NOBODY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn as_user(extra: &[&str], cmd: &[&str]) -> Output {
    let _one_at_a_time = AS_NOBODY.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = flags_of(&base_policy());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.push(probe_s());
    args.extend(cmd.iter().map(|s| s.to_string()));
    unprivileged(&sandspec(), &args).output().unwrap()
}

fn last_json(o: &Output) -> serde_json::Value {
    probe_json(&o.stdout)
}

#[test]
fn unprivileged_fs_write_outside_is_denied() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let w = d.path().join("w");
    std::fs::create_dir(&w).unwrap();
    chmod(&w, 0o777);
    let inside = w.join("ok");
    let outside = d.path().join("escaped");
    let o = as_user(
        &["--write", w.to_str().unwrap()],
        &["write", inside.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = as_user(
        &["--write", w.to_str().unwrap()],
        &["write", outside.to_str().unwrap()],
    );
    assert_eq!(last_json(&o)["errno"], "EACCES", "{}", stderr(&o));
    assert!(inside.exists() && !outside.exists());
}

#[test]
fn unprivileged_network_deny_holds() {
    if !landlock_or_refusal() {
        return;
    }
    let tcp = TcpOracle::new();
    let udp = UdpOracle::new();
    let o = as_user(&[], &["tcp-connect", &tcp.addr()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = as_user(&[], &["udp-send", &udp.addr()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!((tcp.count(), udp.count()), (0, 0));
}

#[test]
fn unprivileged_timeout_kills_the_tree() {
    if !landlock_or_refusal() {
        return;
    }
    let o = as_user(&["--timeout", "300ms"], &["setsid-daemon", "60"]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    for pid in last_json(&o)["pids"].as_array().unwrap() {
        assert!(!alive(pid.as_i64().unwrap()), "pid {pid} survived");
    }
}

#[test]
fn unprivileged_process_limit_contains_a_fork_bomb() {
    if !landlock_or_refusal() {
        return;
    }
    let o = as_user(&["--max-procs", "8"], &["fork-many", "64"]);
    let r = last_json(&o);
    assert_eq!(r["ok"], false, "{r} {}", stderr(&o));
    assert!(r["value"].as_i64().unwrap() < 8, "{r}");
}

#[test]
fn unprivileged_memory_and_files_limits_hold() {
    if !landlock_or_refusal() {
        return;
    }
    let o = as_user(&["--memory", "128M"], &["alloc", "512M"]);
    assert_eq!(last_json(&o)["errno"], "ENOMEM", "{}", stderr(&o));
    let o = as_user(
        &["--max-files", "16", "--read", "/dev/null"],
        &["open-many", "64"],
    );
    assert_eq!(last_json(&o)["errno"], "EMFILE", "{}", stderr(&o));
}

#[test]
fn unprivileged_without_landlock_nothing_runs() {
    let d = scratch();
    let marker = d.path().join("marker");
    let mut args = flags_of(&base_policy());
    args.extend(["--write".into(), d.path().to_string_lossy().into_owned()]);
    args.extend(["--".into(), probe_s(), "write".into()]);
    args.push(marker.to_string_lossy().into_owned());
    let mut c = unprivileged(&sandspec(), &args);
    let n = NoLandlock::new(SimulatedLandlock::Enosys).unwrap();
    // SAFETY: installs a prebuilt filter (async-signal-safe); runuser
    // inherits it across exec, as does sandspec.
    unsafe { c.pre_exec(move || n.install()) };
    let o = {
        let _one_at_a_time = AS_NOBODY.lock().unwrap_or_else(|e| e.into_inner());
        c.output().unwrap()
    };
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(!marker.exists());
}

#[test]
fn unprivileged_unopenable_allowlisted_path_is_a_setup_error() {
    if !landlock_or_refusal() {
        return;
    }
    // A directory the (unprivileged) runner cannot search: the path inside
    // exists but cannot be opened, which must not be mistaken for missing.
    let d = scratch();
    let locked = d.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("f"), "x").unwrap();
    chmod(&locked, 0o000);
    let o = as_user(
        &["--read", locked.join("f").to_str().unwrap()],
        &["exit", "0"],
    );
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to open allowlisted path"),
        "{}",
        stderr(&o)
    );
}
