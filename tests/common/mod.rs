//! Shared helpers for the sandbox tests: the probe binary, a base policy
//! that lets it start, loopback listeners that count what arrives.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use sandspec::policy::{Command, Policy, RunOutput};

/// The probe binary built with this crate.
pub fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandspec-probe"))
}

/// The sandspec binary built with this crate.
pub fn sandspec() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandspec"))
}

/// System directories a dynamically linked program reads (filtered when
/// missing, e.g. /lib64 on some systems).
pub const SYSTEM_READ: &[&str] = &["/usr", "/lib", "/lib64", "/etc"];

/// A policy that lets the probe start and nothing else: its libraries
/// readable, the probe and its loader executable, network denied.
pub fn base_policy() -> Policy {
    let mut exec = vec![probe()];
    if let Some(interp) = sandspec::sandbox::elf_interpreter(&probe()) {
        exec.push(interp);
    }
    Policy {
        read: SYSTEM_READ.iter().map(PathBuf::from).collect(),
        exec,
        ..Default::default()
    }
}

/// The base policy plus the usual system programs executable.
pub fn shell_policy() -> Policy {
    let mut p = base_policy();
    p.exec
        .extend(["/usr/bin", "/bin", "/lib", "/lib64", "/usr/lib"].map(PathBuf::from));
    p
}

/// Runs the probe with `args` under `policy`.
pub fn run_probe(policy: &Policy, args: &[&str]) -> RunOutput {
    let mut argv = vec![probe().to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    sandspec::sandbox::run(policy, &Command::argv(argv))
}

/// The last JSON line of a stream.
pub fn probe_json(bytes: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line in probe output: {text:?}"))
}

/// The probe's report of a run, with the run's stderr on failure.
pub fn report(out: &RunOutput) -> serde_json::Value {
    if out.stdout.is_empty() {
        panic!(
            "probe printed nothing; outcome {:?}, stderr: {}",
            out.outcome,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    probe_json(&out.stdout)
}

/// A fresh scratch directory (world-accessible, for runs as `nobody`).
pub fn scratch() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sandspec-test-")
        .tempdir()
        .expect("failed to create a scratch directory");
    chmod(d.path(), 0o777);
    d
}

/// chmod, panicking on failure.
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("failed to chmod {}: {e}", p.display()));
}

/// The host's Landlock ABI (tests run only where Landlock works).
pub fn abi() -> u32 {
    match sandspec::kernel::landlock() {
        sandspec::kernel::LandlockSupport::Abi(v) => v,
        other => panic!("these tests need Landlock; the kernel says: {other}"),
    }
}

/// A TCP listener on 127.0.0.1 that counts connections.
pub struct TcpOracle {
    listener: TcpListener,
}

impl TcpOracle {
    /// Binds an ephemeral port.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a TCP listener");
        listener.set_nonblocking(true).unwrap();
        TcpOracle { listener }
    }
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }
    /// The port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
    /// Connections queued or accepted so far (drains the backlog).
    pub fn count(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

/// A UDP socket on 127.0.0.1 that counts datagrams.
pub struct UdpOracle {
    sock: UdpSocket,
}

impl UdpOracle {
    /// Binds an ephemeral port.
    pub fn new() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("failed to bind a UDP socket");
        sock.set_nonblocking(true).unwrap();
        UdpOracle { sock }
    }
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.sock.local_addr().unwrap().to_string()
    }
    /// Datagrams received so far.
    pub fn count(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while self.sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn alive(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    state != "Z" && state != "X"
}

/// `d` stretched by SANDSPEC_TIME_SCALE (a whole number, default 1): the
/// kernel matrix sets it, because under QEMU's TCG everything runs several
/// times slower. Only for bounds a test waits with, never for a figure it
/// asserts.
#[allow(dead_code)]
pub fn time_scaled(d: std::time::Duration) -> std::time::Duration {
    let k: u32 = std::env::var("SANDSPEC_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|k| *k >= 1)
        .unwrap_or(1);
    d * k
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Reads a whole file, panicking with its path.
pub fn read(p: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", p.display()));
    s
}

/// True when Landlock works on this kernel. Without it (a kernel built
/// without Landlock, or with it disabled at boot) this checks the one thing
/// a sandbox test can check there — that the sandbox refuses to run the
/// command at all — and returns false, so the test ends having asserted
/// the refusal rather than the behaviour Landlock would give.
pub fn landlock_or_refusal() -> bool {
    use sandspec::kernel::LandlockSupport;
    use sandspec::policy::{Outcome, SetupErrorKind};
    if let LandlockSupport::Abi(_) = sandspec::kernel::landlock() {
        return true;
    }
    let out = run_probe(&base_policy(), &["exit", "0"]);
    assert!(
        matches!(
            out.outcome,
            Outcome::SetupError {
                kind: SetupErrorKind::LandlockUnavailable | SetupErrorKind::LandlockDisabled,
                ..
            }
        ),
        "without Landlock the sandbox must refuse to run; got {:?}",
        out.outcome
    );
    false
}
