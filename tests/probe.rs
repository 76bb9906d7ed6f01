//! The probe binary, run outside any sandbox: every operation, its success
//! and its failure paths, and the JSON line contract.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::{cargo_bin, cargo_bin_cmd};
use assert_cmd::Command;
use serde_json::{json, Value};

use sandspec::corpus::case::OracleKind;
use sandspec::oracle::{survivors, Oracles};

fn probe() -> Command {
    cargo_bin_cmd!("sandspec-probe")
}

fn probe_std() -> StdCommand {
    StdCommand::new(cargo_bin!("sandspec-probe"))
}

/// The single JSON line in `bytes`.
fn line(bytes: &[u8]) -> Value {
    let text = std::str::from_utf8(bytes).expect("UTF-8 output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line expected, got {text:?}");
    serde_json::from_str(lines[0]).expect("a JSON line")
}

/// Runs the probe with `args`; returns (exit code, JSON line on stdout).
fn run(args: &[&str]) -> (i32, Value) {
    let out = probe().args(args).output().expect("run the probe");
    (code(&out), line(&out.stdout))
}

fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("probe killed: {:?}", out.status))
}

/// Asserts a successful report of `op`.
fn assert_ok(code: i32, v: &Value, op: &str) {
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["op"], op);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["errno"], Value::Null);
    assert_eq!(v["error"], Value::Null);
}

/// Asserts a failed report of `op` with `errno`.
fn assert_fails(code: i32, v: &Value, op: &str, errno: &str) {
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["op"], op);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["errno"], errno, "{v}");
    assert!(v["error"].is_string(), "{v}");
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
fn closed_tcp_port() -> u16 {
    let l = TcpListener::bind(loopback(0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits (bounded) until `pid` is no longer alive.
fn wait_gone(pid: i32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if survivors(&[pid]).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

// ---------------------------------------------------------------- contract

#[test]
fn report_has_the_contract_fields() {
    let (c, v) = run(&["read", "/nonexistent/sandspec"]);
    let keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in ["op", "ok", "errno", "error", "value"] {
        assert!(keys.contains(&k), "missing {k} in {v}");
    }
    assert_fails(c, &v, "read", "ENOENT");
    assert_eq!(v["error"], "No such file or directory (os error 2)");
    assert_eq!(v["value"], Value::Null);
}

#[test]
fn usage_errors_exit_2_with_a_json_error() {
    for args in [
        &[][..],
        &["no-such-op"],
        &["read"],
        &["read", "/a", "/b"],
        &["fork-many", "many"],
        &["alloc", "12X"],
        &["tcp-connect", "example.com:80"],
        &["dns-query", "127.0.0.1:53", "a..b"],
        &["exit", "256"],
        &["signal-self", "NOPE"],
        &["kill-outside", "x"],
        &["sleep", "-1"],
        &["raw-socket", "extra"],
    ] {
        let (c, v) = run(args);
        assert_eq!(c, 2, "{args:?}: {v}");
        assert_eq!(v["ok"], false, "{args:?}");
        assert!(v["error"].is_string(), "{args:?}: {v}");
    }
}

// ---------------------------------------------------------------- fs

#[test]
fn read_counts_file_bytes_and_directory_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    std::fs::write(&file, vec![b'a'; 5000]).expect("write");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("g"), "").expect("write");

    let (c, v) = run(&["read", file.to_str().expect("utf-8")]);
    assert_ok(c, &v, "read");
    assert_eq!(v["value"], 5000);
    assert_eq!(v["dir"], false);

    let (c, v) = run(&["read", dir.path().to_str().expect("utf-8")]);
    assert_ok(c, &v, "read");
    assert_eq!(v["value"], 3);
    assert_eq!(v["dir"], true);
}

#[test]
fn write_creates_the_file_with_default_or_given_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out");
    let path = file.to_str().expect("utf-8");

    let (c, v) = run(&["write", path]);
    assert_ok(c, &v, "write");
    assert_eq!(v["value"], 9);
    assert_eq!(std::fs::read(&file).expect("read"), b"sandspec\n");

    let (c, v) = run(&["write", path, "hi"]);
    assert_ok(c, &v, "write");
    assert_eq!(v["value"], 2);
    assert_eq!(std::fs::read(&file).expect("read"), b"hi", "truncated");
}

#[test]
fn write_into_a_missing_directory_fails_with_enoent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing/out");
    let (c, v) = run(&["write", path.to_str().expect("utf-8")]);
    assert_fails(c, &v, "write", "ENOENT");
    assert!(!path.exists());
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_reports_the_child_exit_code() {
    let (c, v) = run(&["exec", "/bin/true"]);
    assert_ok(c, &v, "exec");
    assert_eq!(v["value"], 0);

    let (c, v) = run(&["exec", "/bin/sh", "-c", "exit 3"]);
    assert_ok(c, &v, "exec");
    assert_eq!(v["value"], 3);
}

#[test]
fn exec_reports_a_child_killed_by_a_signal() {
    let (c, v) = run(&["exec", "/bin/sh", "-c", "kill -9 $$"]);
    assert_ok(c, &v, "exec");
    assert_eq!(v["value"], Value::Null);
    assert_eq!(v["signal"], 9);
}

#[test]
fn exec_failures_carry_execs_errno() {
    let (c, v) = run(&["exec", "/nonexistent/sandspec"]);
    assert_fails(c, &v, "exec", "ENOENT");

    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    let (c, v) = run(&["exec", script.to_str().expect("utf-8")]);
    assert_fails(c, &v, "exec", "EACCES");
}

/// A shell command exiting 1 if SIGPIPE is ignored in it (bit 13 of
/// SigIgn, i.e. 0x1000: the 4th hex digit from the right is odd).
const EXIT_1_IF_SIGPIPE_IGNORED: &str = "v=$(grep ^SigIgn /proc/self/status | cut -f2); \
     d=$(printf %s \"$v\" | tail -c 4 | head -c 1); \
     case $d in 1|3|5|7|9|b|d|f) exit 1;; esac; exit 0";

#[test]
fn exec_gives_the_child_the_default_sigpipe() {
    // The check itself: under a shell that ignores SIGPIPE it says so.
    let ignored = StdCommand::new("/bin/sh")
        .args([
            "-c",
            &format!("trap '' PIPE; /bin/sh -c '{EXIT_1_IF_SIGPIPE_IGNORED}'"),
        ])
        .status()
        .expect("run sh");
    assert_eq!(ignored.code(), Some(1));
    // The probe ignores SIGPIPE for itself (so flood sees EPIPE); the
    // program it runs must start with the default.
    let (c, v) = run(&["exec", "/bin/sh", "-c", EXIT_1_IF_SIGPIPE_IGNORED]);
    assert_ok(c, &v, "exec");
    assert_eq!(v["value"], 0);
}

// ---------------------------------------------------------------- network

#[test]
fn tcp_connect_reaches_a_listener() {
    let l = TcpListener::bind(loopback(0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (c, v) = run(&["tcp-connect", &format!("127.0.0.1:{port}")]);
    assert_ok(c, &v, "tcp-connect");
    l.set_nonblocking(true).expect("nonblocking");
    assert!(
        l.accept().is_ok(),
        "the connection is queued at the listener"
    );
}

#[test]
fn tcp_connect_to_a_closed_port_is_refused() {
    let port = closed_tcp_port();
    let (c, v) = run(&["tcp-connect", &format!("127.0.0.1:{port}")]);
    assert_fails(c, &v, "tcp-connect", "ECONNREFUSED");
}

#[test]
fn tcp_bind_reports_the_bound_port() {
    let (c, v) = run(&["tcp-bind", "127.0.0.1:0"]);
    assert_ok(c, &v, "tcp-bind");
    let port = v["value"].as_u64().expect("a port");
    assert!(port > 0 && port <= 65535);
}

#[test]
fn tcp_bind_to_a_port_in_use_fails() {
    let l = TcpListener::bind(loopback(0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (c, v) = run(&["tcp-bind", &format!("127.0.0.1:{port}")]);
    assert_fails(c, &v, "tcp-bind", "EADDRINUSE");
}

#[test]
fn udp_socket_only_creates_a_socket() {
    let (c, v) = run(&["udp-socket"]);
    assert_ok(c, &v, "udp-socket");
    let (c, v) = run(&["udp-socket", "extra"]);
    assert_eq!(c, 2, "{v}");
}

#[test]
fn udp_send_delivers_one_datagram() {
    let s = UdpSocket::bind(loopback(0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = s.local_addr().expect("addr").port();
    let (c, v) = run(&["udp-send", &format!("127.0.0.1:{port}")]);
    assert_ok(c, &v, "udp-send");
    assert_eq!(v["value"], 8);
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], b"sandspec");
}

#[test]
fn dns_query_gets_the_dns_oracles_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let o = Oracles::start(&[OracleKind::Dns], rt.handle()).expect("start");
    let port = &o.vars()["ORACLE_DNS_PORT"];
    let (c, v) = run(&["dns-query", &format!("127.0.0.1:{port}"), "example.com"]);
    let seen = o.finish();
    assert_ok(c, &v, "dns-query");
    assert_eq!(v["value"], 1);
    assert_eq!(v["answers"], json!(["127.0.0.1"]));
    assert_eq!(v["rcode"], 0);
    assert_eq!(seen.received[&OracleKind::Dns], 1);
}

#[test]
fn dns_query_without_an_answer_times_out() {
    // A socket that receives and never answers.
    let silent = UdpSocket::bind(loopback(0)).expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let (c, v) = run(&["dns-query", &format!("127.0.0.1:{port}"), "example.com"]);
    assert_fails(c, &v, "dns-query", "ETIMEDOUT");
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).expect("nonblocking");
    let n = silent.recv(&mut buf).expect("the query did arrive");
    assert!(n > 12);
}

/// What the kernel says to `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)` here,
/// as a symbolic errno or `None` for success.
fn raw_socket_here() -> Option<String> {
    // SAFETY: socket(2) takes no pointers; a returned fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Some(errno_name(std::io::Error::last_os_error()));
    }
    // SAFETY: closing the fd just created.
    unsafe { libc::close(fd) };
    None
}

/// What the kernel says to `io_uring_setup(8, &params)` here.
fn io_uring_here() -> Option<String> {
    let mut params = [0u32; 30];
    // SAFETY: `params` is a zeroed struct io_uring_params (120 bytes).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Some(errno_name(std::io::Error::last_os_error()));
    }
    // SAFETY: closing the fd just created.
    unsafe { libc::close(fd as i32) };
    None
}

fn errno_name(e: std::io::Error) -> String {
    format!(
        "{:?}",
        nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
    )
}

#[test]
fn raw_socket_agrees_with_the_kernel() {
    let (c, v) = run(&["raw-socket"]);
    match raw_socket_here() {
        None => assert_ok(c, &v, "raw-socket"),
        Some(errno) => assert_fails(c, &v, "raw-socket", &errno),
    }
}

#[test]
fn io_uring_agrees_with_the_kernel() {
    let (c, v) = run(&["io-uring"]);
    match io_uring_here() {
        None => assert_ok(c, &v, "io-uring"),
        Some(errno) => assert_fails(c, &v, "io-uring", &errno),
    }
}

#[test]
fn abstract_unix_connect_reaches_a_listener_by_name() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sandspec-probe-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).expect("bind");
    let (c, v) = run(&["abstract-unix-connect", &name]);
    assert_ok(c, &v, "abstract-unix-connect");
    l.set_nonblocking(true).expect("nonblocking");
    assert!(l.accept().is_ok(), "the connection is queued");

    let (c, v) = run(&["abstract-unix-connect", &format!("{name}-nobody")]);
    assert_fails(c, &v, "abstract-unix-connect", "ECONNREFUSED");
}

// ---------------------------------------------------------------- limits

#[test]
fn fork_many_forks_and_reaps_all() {
    let (c, v) = run(&["fork-many", "3"]);
    assert_ok(c, &v, "fork-many");
    assert_eq!(v["value"], 3);
}

/// Before exec, `cmd` gets RLIMIT_NPROC = `root_limit` as a fresh uid
/// (`uid_base` + pid: root ignores RLIMIT_NPROC, and the uid must have no
/// other tasks), or 1 as a non-root user (already at its limit).
fn limit_processes(cmd: &mut StdCommand, root_limit: libc::rlim_t, uid_base: u32) {
    // SAFETY: only async-signal-safe calls (setrlimit, setgroups, setgid,
    // setuid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let is_root = libc::geteuid() == 0;
            let limit = if is_root { root_limit } else { 1 };
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if is_root {
                let uid = uid_base + (libc::getpid() as u32 % 100_000);
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[test]
fn fork_many_stops_at_the_process_limit() {
    let mut cmd = probe_std();
    cmd.args(["fork-many", "3"]);
    // Root ignores RLIMIT_NPROC: an otherwise unused uid with a limit of 2
    // (itself plus one fork).
    limit_processes(&mut cmd, 2, 3_000_000);
    let out = cmd.output().expect("run the probe");
    let v = line(&out.stdout);
    assert_fails(code(&out), &v, "fork-many", "EAGAIN");
    assert!(v["value"].as_u64().expect("a count") < 3, "{v}");
}

/// The probe with a resource limit set before exec.
fn with_rlimit(resource: sandspec::sandbox::limits::Resource, soft: u64, hard: u64) -> StdCommand {
    let mut cmd = probe_std();
    // SAFETY: setrlimit is async-signal-safe; the struct lives on the
    // closure's stack.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn alloc_commits_the_memory() {
    let (c, v) = run(&["alloc", "32M"]);
    assert_ok(c, &v, "alloc");
    assert_eq!(v["value"], 32 << 20);
}

#[test]
fn alloc_beyond_the_address_space_limit_is_enomem() {
    let out = with_rlimit(libc::RLIMIT_AS, 256 << 20, 256 << 20)
        .args(["alloc", "1G"])
        .output()
        .expect("run the probe");
    assert_fails(code(&out), &line(&out.stdout), "alloc", "ENOMEM");
}

#[test]
fn open_many_opens_dev_null_n_times() {
    let (c, v) = run(&["open-many", "50"]);
    assert_ok(c, &v, "open-many");
    assert_eq!(v["value"], 50);
}

#[test]
fn open_many_stops_at_the_fd_limit() {
    let out = with_rlimit(libc::RLIMIT_NOFILE, 16, 16)
        .args(["open-many", "100"])
        .output()
        .expect("run the probe");
    let v = line(&out.stdout);
    assert_fails(code(&out), &v, "open-many", "EMFILE");
    let opened = v["value"].as_u64().expect("a count");
    assert!(opened > 0 && opened < 16, "{v}");
}

#[test]
fn cpu_burn_uses_the_cpu_time_asked_for() {
    let (c, v) = run(&["cpu-burn", "0.2"]);
    assert_ok(c, &v, "cpu-burn");
    assert!(v["value"].as_u64().expect("milliseconds") >= 200, "{v}");
}

#[test]
fn cpu_burn_is_killed_by_rlimit_cpu() {
    let out = with_rlimit(libc::RLIMIT_CPU, 1, 2)
        .args(["cpu-burn", "30"])
        .output()
        .expect("run the probe");
    assert_eq!(out.status.signal(), Some(libc::SIGXCPU), "{:?}", out.status);
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------- process

/// Field 4 after the command name in /proc/<pid>/stat: the session id.
fn session_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    rest.split_whitespace()
        .nth(3)
        .expect("session")
        .parse()
        .expect("a number")
}

#[test]
fn setsid_daemon_leaves_a_grandchild_in_its_own_session() {
    let (c, v) = run(&["setsid-daemon"]);
    assert_ok(c, &v, "setsid-daemon");
    let pids: Vec<i32> = serde_json::from_value(v["pids"].clone()).expect("two pids");
    let [child, grandchild] = pids[..] else {
        panic!("two pids expected: {v}");
    };
    assert!(
        survivors(&[child]).is_empty(),
        "the child exited and was reaped"
    );
    assert_eq!(
        survivors(&[grandchild]),
        vec![grandchild],
        "the daemon lives on"
    );
    assert_eq!(
        session_of(grandchild),
        child,
        "in the session the child created"
    );
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert!(wait_gone(grandchild));
}

#[test]
fn setsid_daemon_reports_before_holding() {
    let mut child = probe_std()
        .args(["setsid-daemon", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the report");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still holding"
    );
    let v: Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(v["ok"], true);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let grandchild = v["pids"][1].as_i64().expect("pid") as i32;
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert!(wait_gone(grandchild));
}

fn sleeper() -> std::process::Child {
    StdCommand::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

#[test]
fn kill_outside_signals_another_process() {
    for (args, signal) in [(vec![], libc::SIGTERM), (vec!["KILL"], libc::SIGKILL)] {
        let mut victim = sleeper();
        let pid = victim.id().to_string();
        let mut all = vec!["kill-outside", pid.as_str()];
        all.extend(args);
        let (c, v) = run(&all);
        assert_ok(c, &v, "kill-outside");
        let status = victim.wait().expect("wait");
        assert_eq!(status.signal(), Some(signal));
    }
}

#[test]
fn kill_outside_a_missing_process_is_esrch() {
    let (c, v) = run(&["kill-outside", "2147483647"]);
    assert_fails(c, &v, "kill-outside", "ESRCH");
}

#[test]
fn signal_self_dies_by_the_signal_without_a_core_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, signal) in [
        ("KILL", libc::SIGKILL),
        ("SIGSEGV", libc::SIGSEGV),
        ("11", 11),
    ] {
        let out = probe()
            .args(["signal-self", name])
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert_eq!(out.status.signal(), Some(signal), "{name}");
        assert!(out.stdout.is_empty(), "{name}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "no core file: {left:?}");
}

#[test]
fn signal_self_with_a_harmless_signal_reports_an_error() {
    let (c, v) = run(&["signal-self", "CHLD"]);
    assert_eq!(c, 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["errno"], Value::Null);
    assert!(v["error"].as_str().expect("text").contains("did not end"));
}

#[test]
fn exit_reports_then_exits_with_the_code() {
    let (c, v) = run(&["exit", "7"]);
    assert_eq!(c, 7);
    assert_eq!(v["ok"], true);
    assert_eq!(v["value"], 7);
}

#[test]
fn sleep_reports_at_the_end() {
    let (c, v) = run(&["sleep", "0.05"]);
    assert_ok(c, &v, "sleep");
}

// ---------------------------------------------------------------- stdio

#[test]
fn flood_writes_exactly_the_bytes_asked_and_reports_on_stderr() {
    let out = probe().args(["flood", "1M"]).output().expect("run");
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.stdout.iter().all(|&b| b == b'x'));
    let v = line(&out.stderr);
    assert_eq!(v["op"], "flood");
    assert_eq!(v["value"], 1 << 20);
}

#[test]
fn flood_stops_at_epipe() {
    let mut child = probe_std()
        .args(["flood", "1G"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let v = line(&out.stderr);
    assert_fails(code(&out), &v, "flood", "EPIPE");
    assert!(v["value"].as_u64().expect("bytes") < 1 << 30);
}

#[test]
fn env_lists_exactly_the_environment() {
    let out = probe()
        .arg("env")
        .env_clear()
        .env("SANDSPEC_A", "b c")
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "env");
    assert_eq!(v["env"], json!({"SANDSPEC_A": "b c"}));
}

#[test]
fn cwd_is_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = probe()
        .arg("cwd")
        .current_dir(dir.path())
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "cwd");
    let want = dir.path().canonicalize().expect("canonical");
    assert_eq!(Path::new(v["cwd"].as_str().expect("text")), want);
}

#[test]
fn stdin_counts_everything_and_echoes_the_start() {
    let out = probe()
        .arg("stdin")
        .write_stdin("hello\n")
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "stdin");
    assert_eq!(v["value"], 6);
    assert_eq!(v["text"], "hello\n");

    let big = "y".repeat(10_000);
    let out = probe().arg("stdin").write_stdin(big).output().expect("run");
    let v = line(&out.stdout);
    assert_eq!(v["value"], 10_000);
    assert_eq!(v["text"].as_str().expect("text").len(), 4096);
}

#[test]
fn write_stderr_writes_the_text_as_given() {
    let out = probe()
        .args(["write-stderr", "to stderr\n"])
        .output()
        .expect("run");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "write-stderr");
    assert_eq!(out.stderr, b"to stderr\n");
    assert_eq!(v["value"], 10);
}

// ---------------------------------------------------------------- start-up

/// Restricts the calling thread with Landlock to reading and executing
/// the system's library and binary directories and the probe; nothing
/// else (no /dev, /proc, /etc). `None` if the kernel has no Landlock.
fn restrict_to_system_dirs() -> Option<()> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let abi = ABI::V1;
    let probe = cargo_bin!("sandspec-probe");
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .expect("handle access")
        .create()
        .expect("create ruleset")
        .add_rules(path_beneath_rules(
            [
                Path::new("/usr"),
                Path::new("/lib"),
                Path::new("/lib64"),
                Path::new("/bin"),
                probe,
            ],
            AccessFs::from_read(abi),
        ))
        .expect("add rules")
        .restrict_self()
        .expect("restrict self");
    (status.ruleset != RulesetStatus::NotEnforced).then_some(())
}

#[test]
fn the_probe_starts_with_stdin_closed_and_nothing_readable() {
    // Rust's default start-up would reopen the closed stdin on /dev/null
    // and abort when that is denied. Runs in its own thread: Landlock
    // restricts the thread that asks, and the child inherits it.
    let outs = std::thread::spawn(|| {
        restrict_to_system_dirs()?;
        let run = |args: &[&str]| {
            let mut cmd = probe_std();
            // Not Stdio::null(): that opens /dev/null here, which is denied.
            cmd.args(args).stdin(Stdio::inherit());
            // SAFETY: close(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(0);
                    Ok(())
                });
            }
            cmd.output().expect("run the probe")
        };
        Some((run(&["open-many", "1"]), run(&["read", "/etc/hostname"])))
    })
    .join()
    .expect("thread");
    let Some((dev_null, etc)) = outs else {
        match std::env::var("SANDSPEC_EXPECT_LANDLOCK_ABI") {
            Ok(abi) if abi != "none" => panic!("Landlock ABI {abi} expected, but not enforced"),
            _ => eprintln!("skipped: this kernel does not enforce Landlock"),
        }
        return;
    };
    // The premise: /dev/null cannot be opened.
    assert_fails(
        code(&dev_null),
        &line(&dev_null.stdout),
        "open-many",
        "EACCES",
    );
    assert_fails(code(&etc), &line(&etc.stdout), "read", "EACCES");
}

// The escape operations, one module per concept (tests/probe/*.rs).
#[path = "probe/files.rs"]
mod files;
#[path = "probe/kernel.rs"]
mod kernel;
#[path = "probe/process.rs"]
mod process;
#[path = "probe/sockets.rs"]
mod sockets;
#[path = "probe/tty.rs"]
mod tty;
