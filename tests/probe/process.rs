//! Reaching other processes (ptrace, process_vm_readv, environ, pidfd),
//! signalling the parent, daemons that hide, exec by other routes, and
//! the new limit operations.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    assert_fails, assert_ok, cargo_bin, code, line, run, session_of, wait_gone, with_rlimit,
};
use sandspec::oracle::survivors;

fn sleeper() -> Child {
    StdCommand::new("sleep")
        .arg("30")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sleep")
}

/// The state letter of `pid` in /proc/PID/stat.
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn ptrace_attach_detaches_and_leaves_the_target_running() {
    let mut victim = sleeper();
    let pid = victim.id() as i32;
    let (c, v) = run(&["ptrace-attach", &pid.to_string()]);
    assert_ok(c, &v, "ptrace-attach");
    assert_eq!(v["killed"], false);
    // The tracee leaves its stop when it next runs, which under an
    // emulated CPU can take a while: look until it sleeps again, and fail
    // only if it is still stopped after 10 s (a detach that left it
    // stopped never ends its stop).
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let s = state_of(pid);
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        if s == Some('S') {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not asleep again 10 s after the detach: states seen {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().expect("kill");
    victim.wait().expect("wait");
}

#[test]
fn ptrace_attach_kill_injects_sigkill() {
    let mut victim = sleeper();
    let (c, v) = run(&["ptrace-attach", &victim.id().to_string(), "kill"]);
    assert_ok(c, &v, "ptrace-attach");
    assert_eq!(victim.wait().expect("wait").signal(), Some(libc::SIGKILL));

    let (c, v) = run(&["ptrace-attach", "2147483647"]);
    assert_fails(c, &v, "ptrace-attach", "ESRCH");
}

#[test]
fn process_vm_read_reads_another_process() {
    let mut victim = sleeper();
    let (c, v) = run(&["process-vm-read", &victim.id().to_string()]);
    assert_ok(c, &v, "process-vm-read");
    assert_eq!(v["value"], 64);
    victim.kill().expect("kill");
    victim.wait().expect("wait");

    let (c, v) = run(&["process-vm-read", "2147483647"]);
    assert_fails(c, &v, "process-vm-read", "ESRCH");
    assert_eq!(v["permitted"], false);
}

#[test]
fn read_environ_names_the_variables_without_their_values() {
    let mut victim = StdCommand::new("sleep")
        .arg("30")
        .env("SANDSPEC_MARK", "value-that-must-not-show")
        .spawn()
        .expect("spawn");
    let out = super::probe()
        .args(["read-environ", &victim.id().to_string()])
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "read-environ");
    let names: Vec<String> = serde_json::from_value(v["names"].clone()).expect("names");
    assert!(names.iter().any(|n| n == "SANDSPEC_MARK"), "{names:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("value-that-must-not-show"));
    victim.kill().expect("kill");
    victim.wait().expect("wait");
}

#[test]
fn pidfd_getfd_steals_a_descriptor() {
    let mut victim = sleeper();
    let (c, v) = run(&["pidfd-getfd", &victim.id().to_string(), "1"]);
    assert_ok(c, &v, "pidfd-getfd");
    assert_eq!(v["kind"], "pipe", "the sleeper's stdout is a pipe");
    let (c, v) = run(&["pidfd-getfd", &victim.id().to_string(), "999"]);
    assert_fails(c, &v, "pidfd-getfd", "EBADF");
    victim.kill().expect("kill");
    victim.wait().expect("wait");
}

/// The probe's path, for shell scripts.
fn probe_path() -> String {
    cargo_bin!("sandspec-probe")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

#[test]
fn kill_parent_checks_by_default_and_signals_when_asked() {
    let (c, v) = run(&["kill-parent"]);
    assert_ok(c, &v, "kill-parent");
    assert_eq!(v["target"], std::process::id(), "this test is the parent");
    assert_eq!(v["signal"], 0);

    let status = StdCommand::new("sh")
        .args(["-c", r#""$0" kill-parent TERM; exit 0"#, &probe_path()])
        .stdout(Stdio::null())
        .status()
        .expect("run sh");
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "the parent shell died"
    );
}

#[test]
fn kill_parent_group_signals_the_parents_group() {
    // The parent is given a group of its own: a test runner started by a
    // bare init (the kernel matrix's guest) has process group 0, which
    // names no group to signal.
    let mut sibling = StdCommand::new("sh")
        .args([
            "-c",
            r#"sleep 30 & "$0" kill-parent-group KILL; wait"#,
            &probe_path(),
        ])
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let status = sibling.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn stop_parent_stops_then_continues_the_parent() {
    let sh = StdCommand::new("sh")
        .args(["-c", r#""$0" stop-parent 0.4; echo resumed"#, &probe_path()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = sh.id() as i32;
    let start = Instant::now();
    let mut seen_stopped = false;
    while start.elapsed() < Duration::from_secs(2) && !seen_stopped {
        seen_stopped = state_of(pid) == Some('T');
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = sh.wait_with_output().expect("wait");
    assert!(seen_stopped, "the parent was stopped");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#""continued":true"#) && text.ends_with("resumed\n"),
        "{text}"
    );
}

#[test]
fn fcntl_setown_and_pidfd_signal_reach_another_process() {
    for (args, want) in [
        (vec!["fcntl-setown"], libc::SIGIO),
        (vec!["fcntl-setown", "", "KILL"], libc::SIGKILL),
        (vec!["pidfd-signal", "", "TERM"], libc::SIGTERM),
    ] {
        let mut victim = sleeper();
        let pid = victim.id().to_string();
        let mut all: Vec<&str> = vec![args[0], &pid];
        all.extend(args.iter().skip(2));
        let (c, v) = run(&all);
        assert_ok(c, &v, args[0]);
        assert_eq!(victim.wait().expect("wait").signal(), Some(want), "{all:?}");
    }
    let (c, v) = run(&["pidfd-signal", "2147483647", "TERM"]);
    assert_fails(c, &v, "pidfd-signal", "ESRCH");

    // A negative pid: the SIGIO goes to the whole process group.
    let mut victim = StdCommand::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("spawn");
    let group = format!("-{}", victim.id());
    let (c, v) = run(&["fcntl-setown", &group, "KILL"]);
    assert_ok(c, &v, "fcntl-setown");
    assert_eq!(victim.wait().expect("wait").signal(), Some(libc::SIGKILL));
}

/// Pids in the report's "pids".
fn pids(v: &Value) -> Vec<i32> {
    serde_json::from_value(v["pids"].clone()).expect("pids")
}

fn cmdline(pid: i32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

fn kill_and_wait(pid: i32) {
    // SAFETY: kill(2) on a daemon this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_gone(pid));
}

#[test]
fn rename_daemon_hides_its_name_and_argv() {
    let (c, v) = run(&["rename-daemon", "kworker-x"]);
    assert_ok(c, &v, "rename-daemon");
    let [child, daemon] = pids(&v)[..] else {
        panic!("two pids: {v}");
    };
    assert!(survivors(&[child]).is_empty(), "the child exited");
    assert_eq!(survivors(&[daemon]), vec![daemon], "the daemon lives");
    assert_eq!(session_of(daemon), child);
    let comm = std::fs::read_to_string(format!("/proc/{daemon}/comm")).expect("comm");
    assert_eq!(comm.trim(), "kworker-x");
    let args = cmdline(daemon);
    assert!(
        args.starts_with(b"kworker-x\0"),
        "{:?}",
        String::from_utf8_lossy(&args)
    );
    let probe = probe_path();
    assert!(
        !String::from_utf8_lossy(&args).contains(probe.as_str()),
        "no trace of the probe's path"
    );
    kill_and_wait(daemon);
}

#[test]
fn exec_daemon_becomes_another_program() {
    let (c, v) = run(&["exec-daemon"]);
    assert_ok(c, &v, "exec-daemon");
    let daemon = pids(&v)[1];
    assert_eq!(cmdline(daemon), b"/bin/sleep\x00300\x00");
    let exe = std::fs::read_link(format!("/proc/{daemon}/exe")).expect("exe");
    let probe = cargo_bin!("sandspec-probe").canonicalize().expect("probe");
    assert_ne!(exe, probe, "another program now");
    kill_and_wait(daemon);

    let (c, v) = run(&["exec-daemon", "/nonexistent/sandspec"]);
    assert_fails(c, &v, "exec-daemon", "ENOENT");
}

/// Pids of live processes whose argv is exactly `argv`.
fn with_argv(argv: &[u8]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| cmdline(*pid) == argv && !matches!(state_of(*pid), Some('Z') | None))
        .collect()
}

#[test]
fn fork_chaser_keeps_changing_pid_until_its_time_is_up() {
    let secs = "6";
    let started = Instant::now();
    let (c, v) = run(&["fork-chaser", secs]);
    assert_ok(c, &v, "fork-chaser");
    let first = v["pids"][1].as_i64().expect("the first link's pid") as i32;
    let mut argv = probe_path().into_bytes();
    for a in ["fork-chaser", secs] {
        argv.push(0);
        argv.extend_from_slice(a.as_bytes());
    }
    argv.push(0);
    // Links from the first one on (pids grow): reading only those keeps a
    // look shorter than a link's 10 ms life even on a slow machine (TCG in
    // the kernel matrix, where a look at the whole table never saw one).
    let links = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid >= first)
            .filter(|pid| cmdline(*pid) == argv && !matches!(state_of(*pid), Some('Z') | None))
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    let looking = Instant::now();
    while seen.len() < 3 && looking.elapsed() < Duration::from_secs(4) {
        seen.extend(links());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen.len() >= 3,
        "a new pid every few milliseconds: {seen:?}"
    );
    // Then it ends on its own after its time. (A look can miss a live
    // chain, whose one link changes every 10 ms while the process table
    // is read, so only looks after the end prove anything.)
    let end = Duration::from_millis(6000 + 1500);
    std::thread::sleep(end.saturating_sub(started.elapsed()));
    for _ in 0..5 {
        assert!(with_argv(&argv).is_empty(), "the chain ends after its time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A non-executable copy of /bin/true.
fn unexecutable_true(dir: &Path) -> String {
    let copy = dir.join("true-copy");
    std::fs::copy("/bin/true", &copy).expect("copy");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    copy.to_str().expect("utf-8").to_owned()
}

#[test]
fn memfd_exec_runs_a_copy_from_memory() {
    let (c, v) = run(&["memfd-exec", "/bin/true"]);
    assert_ok(c, &v, "memfd-exec");
    assert_eq!(v["value"], 0);
    let (c, v) = run(&["memfd-exec", "/bin/sh", "-c", "exit 4"]);
    assert_ok(c, &v, "memfd-exec");
    assert_eq!(v["value"], 4);
    // The copy is executable whatever the file's mode.
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, v) = run(&["memfd-exec", &unexecutable_true(dir.path())]);
    assert_ok(c, &v, "memfd-exec");
    let (c, v) = run(&["memfd-exec", "/nonexistent/sandspec"]);
    assert_fails(c, &v, "memfd-exec", "ENOENT");
    assert_eq!(v["stage"], "read");
}

#[test]
fn loader_exec_runs_a_file_that_is_not_executable() {
    let Some(loader) = sandspec::sandbox::elf_interpreter(Path::new("/bin/true")) else {
        // A static userland (the kernel matrix's busybox) has no loader.
        eprintln!("skipped: /bin/true is statically linked here, there is no loader to use");
        return;
    };
    let loader = loader.to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = unexecutable_true(dir.path());
    let (c, v) = run(&["exec", &copy]);
    assert_fails(c, &v, "exec", "EACCES");
    let (c, v) = run(&["loader-exec", loader, &copy]);
    assert_ok(c, &v, "loader-exec");
    assert_eq!(v["value"], 0, "mapped by the loader, never exec'd");
}

#[test]
fn execveat_empty_and_exec_proc_fd_run_by_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = unexecutable_true(dir.path());
    for op in ["execveat-empty", "exec-proc-fd"] {
        let (c, v) = run(&[op, "/bin/sh", "-c", "exit 5"]);
        assert_ok(c, &v, op);
        assert_eq!(v["value"], 5);
        let (c, v) = run(&[op, &copy]);
        assert_fails(c, &v, op, "EACCES");
    }
}

#[test]
fn threads_start_and_stop_at_the_process_limit() {
    let (c, v) = run(&["threads", "20"]);
    assert_ok(c, &v, "threads");
    assert_eq!(v["value"], 20);
    // RLIMIT_NPROC counts threads too. Root ignores it, so as root the
    // probe becomes an otherwise unused uid with a limit of 3 tasks.
    let mut cmd = super::probe_std();
    cmd.args(["threads", "10"]);
    super::limit_processes(&mut cmd, 3, 3_100_000);
    let out = cmd.output().expect("run the probe");
    let v = line(&out.stdout);
    assert_fails(code(&out), &v, "threads", "EAGAIN");
    assert!(v["value"].as_u64().expect("a count") < 10, "{v}");
}

#[test]
fn mmap_reserves_without_touching_and_meets_the_address_space_limit() {
    let (c, v) = run(&["mmap", "4G"]);
    assert_ok(c, &v, "mmap");
    assert_eq!(v["value"], 4u64 << 30);
    let out = with_rlimit(libc::RLIMIT_AS, 256 << 20, 256 << 20)
        .args(["mmap", "1G"])
        .output()
        .expect("run");
    assert_fails(code(&out), &line(&out.stdout), "mmap", "ENOMEM");
}

/// Whether this process has CAP_SYS_RESOURCE (which lets it raise hard
/// limits).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).expect("hex"))
        .expect("CapEff");
    eff & (1 << 24) != 0
}

#[test]
fn setrlimit_raises_only_with_privilege() {
    let out = with_rlimit(libc::RLIMIT_NOFILE, 256, 512)
        .args(["setrlimit", "nofile", "1024"])
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_eq!(v["soft"], 256);
    assert_eq!(v["hard"], 512);
    if has_cap_sys_resource() {
        assert_ok(code(&out), &v, "setrlimit");
    } else {
        assert_fails(code(&out), &v, "setrlimit", "EPERM");
    }
    let (c, v) = run(&["setrlimit", "nofile", "64"]);
    assert_ok(c, &v, "setrlimit");
    let (c, _) = run(&["setrlimit", "nofiles", "64"]);
    assert_eq!(c, 2);
}

#[test]
fn flood_both_fills_both_streams() {
    let out = super::probe()
        .args(["flood-both", "300K"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout.len(), 300 << 10);
    assert!(out.stdout.iter().all(|&b| b == b'x'));
    let err = String::from_utf8_lossy(&out.stderr);
    let (flood, report) = err.rsplit_once('\n').map_or(("", ""), |_| {
        let t = err.trim_end_matches('\n');
        t.rsplit_once('\n').expect("the report on its own line")
    });
    assert_eq!(flood.len(), 300 << 10);
    assert!(flood.bytes().all(|b| b == b'y'));
    let v: Value = serde_json::from_str(report).expect("JSON");
    assert_eq!(v["op"], "flood-both");
    assert_eq!(v["stdout"], 300 << 10);
    assert_eq!(v["stderr"], 300 << 10);
    assert_eq!(v["value"], 600 << 10);
}

#[test]
fn read_environ_parent_reads_the_callers_environment() {
    let out = super::probe()
        .args(["read-environ", "parent"])
        .env("SANDSPEC_PARENT_MARK", "x")
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "read-environ");
    assert_eq!(v["pid"], std::process::id(), "this test is the parent");
    let names: Vec<String> = serde_json::from_value(v["names"].clone()).expect("names");
    assert!(
        !names.iter().any(|n| n == "SANDSPEC_PARENT_MARK"),
        "the parent's environment, not the probe's own"
    );
    assert!(!names.is_empty());
}
