//! The fault tests' driver: a deliberately broken sandspec driver, built
//! into the test binary itself so the tests need nothing but that binary
//! (no interpreter; the kernel-matrix guest has busybox and static Rust
//! binaries only).
//!
//! usage: `<test binary> --faulty-driver MODE STATE_DIR`
//!
//! It speaks protocol 1 and runs commands unsandboxed through the `none`
//! driver (the policy's env, cwd and timeout), except that it misbehaves according to
//! MODE. On the case `fault.trigger`:
//!
//! - `crash`: abort (SIGABRT) after writing a line on stderr;
//! - `hang`: start a grandchild, then stop answering;
//! - `exit`: exit 0 mid-run, without answering;
//! - `garbage`: answer with a line that is not JSON;
//! - `wrong-seq`: answer with another seq;
//! - `error`: answer with a protocol `error` message (a fault-free refusal);
//! - `exit-holding-stdout`: start a `setsid` grandchild that keeps the
//!   driver's stdout open, then exit 0 without answering;
//! - `duplicate-key`: answer with `"seq"` twice in the result;
//! - `stderr-flood`: write 96 MiB to stderr without a line break, then
//!   answer normally (a fault only if the harness cannot take it).
//! - `daemon-exit`: start a daemon (a process group of its own, so a kill
//!   of the driver's group misses it), then exit mid-run.
//!
//! In its handshake:
//!
//! - `bad-version`: claim protocol 99 in its first launch;
//! - `bad-capability`: claim an unknown capability in its first launch.
//!
//! On every case:
//!
//! - `liar`: run the command unsandboxed, then forge the answer the case
//!   expects (see `liar.rs`).
//!
//! On `ping` (every other mode answers `pong`):
//!
//! - `ping-error`: answer with an `error` message, "ping is not supported";
//! - `ping-silent`: never answer.
//!
//! In every mode, a run whose policy has a relative path in `read`, `write`
//! or `exec` gets a `setup_error` of kind `invalid_policy` without running
//! anything (what `sandspec bench` sends as its "refused run").
//!
//! STATE_DIR records launches (`launched`) and pids (`pids`: the driver
//! and the grandchild of `hang`), so the tests can check that the driver's
//! whole process group is gone after a fault.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandspec::corpus::case::Capability;
use sandspec::driver::none::NoneFactory;
use sandspec::driver::protocol::{self, DriverInfo, FromDriver, ToDriver, PROTOCOL_VERSION};
use sandspec::driver::{DriverFactory, RunRequest};
use sandspec::policy::{Command, Policy, RunOutput, SetupErrorKind};
use serde_json::{json, Value};

/// argv[1] that makes the test binary the faulty driver.
const DRIVER_FLAG: &str = "--faulty-driver";
/// argv[1] that makes the test binary the `hang` mode's grandchild.
const SLEEPER_FLAG: &str = "--faulty-sleeper";
/// The case on which the fault modes misbehave.
const TRIGGER: &str = "fault.trigger";
/// How long `hang` (and its grandchild) stay silent: far past any watchdog.
const HANG: Duration = Duration::from_secs(3600);

/// How the driver misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Crash,
    Hang,
    Exit,
    Garbage,
    WrongSeq,
    Error,
    DaemonExit,
    BadVersion,
    BadCapability,
    PingError,
    PingSilent,
    ExitHoldingStdout,
    DuplicateKey,
    StderrFlood,
    Liar,
}

/// Each mode and its name on the command line.
const MODES: &[(&str, Mode)] = &[
    ("crash", Mode::Crash),
    ("hang", Mode::Hang),
    ("exit", Mode::Exit),
    ("garbage", Mode::Garbage),
    ("wrong-seq", Mode::WrongSeq),
    ("error", Mode::Error),
    ("daemon-exit", Mode::DaemonExit),
    ("bad-version", Mode::BadVersion),
    ("bad-capability", Mode::BadCapability),
    ("ping-error", Mode::PingError),
    ("ping-silent", Mode::PingSilent),
    ("exit-holding-stdout", Mode::ExitHoldingStdout),
    ("duplicate-key", Mode::DuplicateKey),
    ("stderr-flood", Mode::StderrFlood),
    ("liar", Mode::Liar),
];

/// What `stderr-flood` writes: three times the test's bound on extra memory: an unbounded buffer could
/// not hide in it, and it drains within the watchdog under TCG (256 MiB
/// did not, on the kernel matrix's 7.3 row).
pub const FLOOD_BYTES: usize = 96 << 20;

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        MODES.iter().find(|(n, _)| *n == s).map(|&(_, m)| m)
    }

    fn name(self) -> &'static str {
        MODES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("unnamed", |&(n, _)| n)
    }
}

/// The argv that starts this test binary as the faulty driver.
pub fn argv(mode: &str, state: &Path) -> Vec<OsString> {
    vec![
        current_exe().into(),
        DRIVER_FLAG.into(),
        mode.into(),
        state.into(),
    ]
}

/// This test binary.
pub fn current_exe() -> PathBuf {
    std::env::current_exe().expect("failed to find the test binary (current_exe)")
}

/// `cmd`, started in a session of its own.
fn unsafe_setsid(mut cmd: std::process::Command) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// When this process was started as the faulty driver (or as its `hang`
/// grandchild), plays that part and exits; otherwise returns at once.
pub fn run_if_requested() {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some(DRIVER_FLAG) => {
            let (Some(mode), Some(state)) = (args.get(2), args.get(3)) else {
                eprintln!("usage: {DRIVER_FLAG} MODE STATE_DIR");
                std::process::exit(2);
            };
            let Some(mode) = mode.to_str().and_then(Mode::parse) else {
                eprintln!("faulty driver: unknown mode {mode:?}");
                std::process::exit(2);
            };
            std::process::exit(serve(mode, Path::new(state)));
        }
        Some(SLEEPER_FLAG) => {
            std::thread::sleep(HANG);
            std::process::exit(0);
        }
        _ => {}
    }
}

/// The driver's loop: one message per stdin line, until `bye` or EOF.
fn serve(mode: Mode, state: &Path) -> i32 {
    note_pid(state, std::process::id());
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("faulty driver: failed to read stdin: {e}");
                return 1;
            }
        };
        let msg: ToDriver = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("faulty driver: failed to parse {line:?}: {e}");
                return 1;
            }
        };
        match msg {
            ToDriver::Hello { .. } => hello(mode, state),
            ToDriver::Run {
                seq,
                case,
                policy,
                command,
            } => run(mode, state, seq, &case, &policy, &command),
            ToDriver::Ping { seq } => match mode {
                Mode::PingError => send(&FromDriver::Error {
                    seq,
                    message: "ping is not supported".into(),
                }),
                Mode::PingSilent => {}
                _ => send(&FromDriver::Pong { seq }),
            },
            ToDriver::Bye => return 0,
        }
    }
    0
}

fn send_line(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    // The harness may be gone (it killed us or closed the pipe): nothing
    // left to tell anyone, so a failed write ends the driver.
    if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

fn send(msg: &FromDriver) {
    send_line(&protocol::line(msg));
}

fn note_pid(state: &Path, pid: u32) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("pids"))
        .expect("failed to open STATE_DIR/pids");
    writeln!(f, "{pid}").expect("failed to write STATE_DIR/pids");
}

/// True for the first launch that asks (the marker did not exist yet).
fn first_launch(state: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(state.join("launched"))
        .is_ok()
}

fn hello(mode: Mode, state: &Path) {
    let first = first_launch(state);
    let protocol = if mode == Mode::BadVersion && first {
        99
    } else {
        PROTOCOL_VERSION
    };
    // The liar claims everything, as `none` does: every case runs.
    let capabilities = if mode == Mode::Liar {
        let mut all = sandspec::driver::reference::all_capabilities();
        all.retain(|c| !sandspec::driver::protocol::IN_PROCESS_ONLY.contains(c));
        all
    } else {
        [
            Capability::FsRead,
            Capability::FsWrite,
            Capability::FsExec,
            Capability::Timeout,
            Capability::Env,
            Capability::Cwd,
            Capability::Stdin,
        ]
        .into_iter()
        .collect()
    };
    let hello = FromDriver::Hello {
        protocol,
        driver: DriverInfo {
            name: format!("faulty-{}", mode.name()),
            version: "0".into(),
        },
        capabilities,
        requires_landlock_abi: None,
    };
    if mode == Mode::BadCapability && first {
        // Not expressible with the crate's types, on purpose.
        let mut v: Value = serde_json::to_value(&hello).expect("a hello serialises");
        v["capabilities"]
            .as_array_mut()
            .expect("capabilities is a list")
            .push(json!("fs.teleport"));
        send_line(&protocol::line(&v));
    } else {
        send(&hello);
    }
}

fn run(mode: Mode, state: &Path, seq: u64, case: &str, policy: &Policy, command: &Command) {
    let mut seq = seq;
    if case == TRIGGER {
        match mode {
            Mode::Crash => {
                eprintln!("faulty driver: about to crash");
                std::process::abort();
            }
            Mode::Hang => {
                // The grandchild stays in the driver's process group (and
                // holds its stdout): only a kill of the whole group ends it.
                // Waiting for it (an hour) is the hang.
                let mut child = std::process::Command::new(current_exe())
                    .arg(SLEEPER_FLAG)
                    .spawn()
                    .expect("failed to start the hang grandchild");
                note_pid(state, child.id());
                let _ = child.wait();
            }
            Mode::Exit => std::process::exit(0),
            Mode::ExitHoldingStdout => {
                // Its own session: no signal to the driver's group reaches it.
                let child = unsafe_setsid(std::process::Command::new(current_exe()))
                    .arg(SLEEPER_FLAG)
                    .spawn()
                    .expect("failed to start the setsid grandchild");
                note_pid(state, child.id());
                std::process::exit(0);
            }
            Mode::DuplicateKey => {
                let output = execute(seq, case, policy, command).expect("none runs echo");
                let mut v = serde_json::to_value(FromDriver::Result { seq, output })
                    .expect("a result serialises");
                // serde_json keeps one of each key; write the second by hand.
                v.as_object_mut().expect("an object").remove("seq");
                let body = v.to_string();
                let line = format!("{{\"seq\":{},\"seq\":{seq},{}\n", seq + 1000, &body[1..]);
                send_line(line.as_bytes());
                return;
            }
            Mode::StderrFlood => {
                let chunk = vec![b'e'; 1 << 20];
                let mut err = std::io::stderr().lock();
                for _ in 0..FLOOD_BYTES / chunk.len() {
                    if err.write_all(&chunk).is_err() {
                        std::process::exit(1);
                    }
                }
            }
            Mode::DaemonExit => {
                use std::os::unix::process::CommandExt;
                let daemon = std::process::Command::new(current_exe())
                    .arg(SLEEPER_FLAG)
                    .process_group(0)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("failed to start the daemon");
                note_pid(state, daemon.id());
                std::process::exit(0);
            }
            Mode::Garbage => {
                send_line(b"this is not json\n");
                return;
            }
            Mode::WrongSeq => seq += 1000,
            Mode::Error => {
                send(&FromDriver::Error {
                    seq,
                    message: "backend refused the policy".into(),
                });
                return;
            }
            Mode::BadVersion
            | Mode::BadCapability
            | Mode::PingError
            | Mode::PingSilent
            | Mode::Liar => {}
        }
    }
    match execute(seq, case, policy, command) {
        Ok(output) if mode == Mode::Liar => {
            static CORPUS: std::sync::OnceLock<Result<super::liar::Corpus, String>> =
                std::sync::OnceLock::new();
            match CORPUS.get_or_init(|| super::liar::Corpus::load(state)) {
                Ok(corpus) => {
                    let output = super::liar::answer(corpus, state, case, policy, output);
                    send(&FromDriver::Result { seq, output })
                }
                Err(message) => send(&FromDriver::Error {
                    seq,
                    message: message.clone(),
                }),
            }
        }
        Ok(output) => send(&FromDriver::Result { seq, output }),
        Err(message) => send(&FromDriver::Error { seq, message }),
    }
}

/// Runs the command unsandboxed, as the `none` driver does; a relative
/// path in the policy is refused first (what `sandspec bench` sends as its
/// "refused run"). Err: the none driver's own fault, as a message.
fn execute(seq: u64, case: &str, policy: &Policy, command: &Command) -> Result<RunOutput, String> {
    let paths = policy.read.iter().chain(&policy.write).chain(&policy.exec);
    if let Some(p) = paths.into_iter().find(|p| p.is_relative()) {
        return Ok(RunOutput::setup_error(
            SetupErrorKind::InvalidPolicy,
            format!("relative path in the policy: {}", p.display()),
        ));
    }
    let req = RunRequest {
        seq,
        case: case.into(),
        policy: policy.clone(),
        command: command.clone(),
    };
    // none enforces the policy's timeout itself; this only bounds a hang.
    let watchdog =
        policy.timeout.map_or(Duration::from_secs(60), |t| t.0) + Duration::from_secs(10);
    let mut none = NoneFactory.spawn(None).map_err(|e| e.to_string())?;
    none.run(&req, watchdog).map_err(|e| e.to_string())
}
