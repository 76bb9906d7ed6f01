//! `sandspec driver-check`: starts a driver, checks its handshake and one
//! trivial run, and explains what is wrong, for people writing a driver.

use std::time::Duration;

use clap::Args;

use super::EXIT_USAGE;
use crate::corpus::vocab::capability_name;
use crate::driver::registry::{self, DriverSpec};
use crate::driver::{DriverError, RunRequest};
use crate::harness::evaluate::describe_outcome;
use crate::policy::{Command, Outcome, Policy, Timeout};

/// Arguments of `sandspec driver-check`.
#[derive(Debug, Args)]
pub struct DriverCheckArgs {
    /// A driver name (see `sandspec run --driver`).
    #[arg(long, value_name = "NAME", conflicts_with = "driver_cmd")]
    pub driver: Option<String>,
    /// A driver command line, run with `sh -c`.
    #[arg(long, value_name = "CMD", required_unless_present = "driver")]
    pub driver_cmd: Option<String>,
}

const MARKER: &str = "sandspec-driver-check";

/// 0: the driver works; 1: it does not (the reason and a hint are printed);
/// 2: bad arguments.
pub fn exec(args: DriverCheckArgs) -> i32 {
    let spec = match (&args.driver_cmd, &args.driver) {
        (Some(cmd), _) => DriverSpec::command(cmd),
        (None, Some(name)) => match registry::resolve(name) {
            Ok(s) => s,
            Err(e) => {
                say!("sandspec: {e}");
                return EXIT_USAGE;
            }
        },
        (None, None) => {
            say!("sandspec: give --driver NAME or --driver-cmd CMD");
            return EXIT_USAGE;
        }
    };
    let exe = std::env::current_exe().ok();
    let factory = match spec.factory(exe.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            say!("sandspec: {e}");
            return EXIT_USAGE;
        }
    };
    println!("driver {}:", spec.name());
    let mut driver = match factory.spawn(None) {
        Ok(d) => d,
        Err(e) => return explain("start", &e),
    };
    let hello = match driver.hello() {
        Ok(h) => h,
        Err(e) => return explain("handshake", &e),
    };
    let caps: Vec<String> = hello
        .capabilities
        .iter()
        .map(|c| capability_name(*c))
        .collect();
    let needs = hello
        .requires_landlock_abi
        .map(|n| format!(", requires Landlock ABI {n} or later"))
        .unwrap_or_default();
    println!(
        "  handshake: ok: backend {} {}, protocol {}, capabilities: [{}]{needs}",
        hello.name,
        hello.version,
        crate::driver::protocol::PROTOCOL_VERSION,
        caps.join(", ")
    );
    let kernel = crate::kernel::landlock();
    let below = hello.landlock_minimum_unmet(kernel);
    let policy = Policy {
        read: ["/usr", "/lib", "/lib64", "/bin", "/etc"]
            .into_iter()
            .map(Into::into)
            .collect(),
        exec: ["/usr/bin", "/bin", "/lib", "/lib64"]
            .into_iter()
            .map(Into::into)
            .collect(),
        timeout: Some(Timeout(Duration::from_secs(10))),
        ..Default::default()
    };
    let req = RunRequest {
        seq: 1,
        case: "driver-check.echo".into(),
        policy,
        command: Command::argv(["echo", MARKER]),
    };
    let out = match driver.run(&req, Duration::from_secs(20)) {
        Ok(o) => o,
        Err(e) => return explain("run", &e),
    };
    if let Some(min) = below {
        return check_refusal(&out.outcome, min, kernel);
    }
    let want = format!("{MARKER}\n");
    if out.outcome != (Outcome::Exited { code: 0 }) || out.stdout != want.as_bytes() {
        println!(
            "  run `echo {MARKER}`: FAILED: expected exited{{code: 0}} with stdout {want:?}, \
             got {} with stdout {:?} and stderr {:?}",
            describe_outcome(&out.outcome),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "  hint: the policy allows reading /usr, /lib, /lib64, /bin, /etc and executing \
             from /usr/bin, /bin; a backend that cannot run `echo` under it will fail most cases"
        );
        return 1;
    }
    println!(
        "  run `echo {MARKER}`: ok ({} µs)",
        out.duration.as_micros()
    );

    // The command must not share the protocol stream: with no stdin given,
    // `cat` sees EOF at once and prints nothing. A command that inherited
    // the driver's stdin would block on it (or swallow the next request).
    let req = RunRequest {
        seq: 2,
        case: "driver-check.stdin-eof".into(),
        policy: Policy {
            timeout: Some(Timeout(STDIN_CHECK_TIMEOUT)),
            ..req.policy
        },
        command: Command::argv(["cat"]),
    };
    let out = match driver.run(&req, STDIN_CHECK_TIMEOUT * 4) {
        Ok(o) => o,
        Err(e) => {
            println!("  run `cat` with no stdin: FAILED: {e}");
            println!("  hint: {STDIN_HINT}");
            return 1;
        }
    };
    if out.outcome != (Outcome::Exited { code: 0 }) || !out.stdout.is_empty() {
        println!(
            "  run `cat` with no stdin: FAILED: expected exited{{code: 0}} with no output, got {} \
             with stdout {:?}",
            describe_outcome(&out.outcome),
            String::from_utf8_lossy(&out.stdout)
        );
        println!("  hint: {STDIN_HINT}");
        return 1;
    }
    println!("  run `cat` with no stdin: ok (the command does not see the protocol stream)");
    let how = match (&args.driver_cmd, &args.driver) {
        (Some(cmd), _) => format!("--driver-cmd {}", shell_quote(cmd)),
        (None, Some(name)) => format!("--driver {name}"),
        (None, None) => String::new(),
    };
    println!("the driver works; now run the corpus: sandspec run {how}");
    0
}

/// On a kernel below the backend's declared Landlock minimum the run must
/// be refused (fail-closed); the remaining checks need a kernel with it.
fn check_refusal(outcome: &Outcome, min: u32, kernel: crate::kernel::LandlockSupport) -> i32 {
    use crate::policy::SetupErrorKind as K;
    match outcome {
        Outcome::SetupError {
            kind: K::LandlockUnavailable | K::LandlockDisabled | K::AbiTooLow,
            ..
        } => {
            println!(
                "  run `echo {MARKER}`: refused as declared ({}): this kernel's Landlock is \
                 {kernel}, the backend requires ABI {min}",
                describe_outcome(outcome)
            );
            println!(
                "the driver keeps its declaration here; check the runs on a kernel with \
                 Landlock ABI {min} or later"
            );
            0
        }
        other => {
            println!(
                "  run `echo {MARKER}`: FAILED: the backend declares requires_landlock_abi {min} \
                 and this kernel's Landlock is {kernel}, so it must refuse with a setup_error \
                 (landlock_unavailable, landlock_disabled or abi_too_low); got {}",
                describe_outcome(other)
            );
            println!(
                "  hint: a backend that runs without Landlock must not declare \
                 requires_landlock_abi; one that needs it must refuse, never run unconfined"
            );
            1
        }
    }
}

/// The timeout of the `cat` check.
const STDIN_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

const STDIN_HINT: &str = "with no `stdin_b64` the command's stdin must be at EOF from the \
    start; a command that inherits the driver's stdin reads the harness's requests (and one \
    that inherits its stdout can forge answers): give the command /dev/null or a pipe, and keep \
    the protocol on other descriptors";

/// `s` quoted for a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn explain(step: &str, e: &DriverError) -> i32 {
    println!("  {step}: FAILED: {e}");
    let hint = match e {
        DriverError::Start { .. } => {
            "check that the command exists, is executable and runs from this directory"
        }
        DriverError::Hung { .. } => {
            "the driver did not answer in time: write exactly one JSON object per line on \
             stdout and flush after each (print(..., flush=True) in Python)"
        }
        DriverError::Died { .. } => {
            "the driver exited: its stderr lines above say why; it must keep reading requests \
             from stdin until {\"type\":\"bye\"} or EOF"
        }
        DriverError::Protocol { .. } => {
            "the message shapes are in conformance/PROTOCOL.md; nothing but protocol lines may \
             go to stdout (log to stderr)"
        }
        DriverError::Reported { .. } => {
            "the driver answered with an error message for a plain `echo`"
        }
        DriverError::Interrupted { .. } => "the check was interrupted; run it again",
    };
    println!("  hint: {hint}");
    1
}
