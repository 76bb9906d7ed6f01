//! `sandspec driver`: the reference sandbox served over the driver protocol
//! on stdin/stdout (registry name `reference-proto`). It exists so the
//! protocol path is tested against a backend known to pass, and so a
//! simulated platform (a seccomp filter on the backend) can be applied to a
//! separate process instead of the harness.

use std::io::{BufRead, Write};

use clap::Args;

use std::sync::{Arc, Mutex};

use crate::driver::protocol::{self, DriverInfo, FromDriver, ToDriver, PROTOCOL_VERSION};
use crate::driver::reference;
use crate::harness::interrupt;
use crate::policy::{Command, Policy, RunOutput};
use crate::sandbox::{Canceller, LastBuilt, RunOptions, Stdio};

/// Runs `command` under `policy` with a canceller published in `active`
/// for the interrupt hook. A setup failure is the run's outcome, as
/// [`crate::sandbox::run`] makes it. The sandbox of an equal policy is
/// reused from the last request ([`LastBuilt`]).
fn run_cancellable(
    built: &mut LastBuilt,
    policy: &Policy,
    command: &Command,
    active: &Mutex<Option<Canceller>>,
) -> Result<RunOutput, String> {
    let sandbox = match built.get(policy, None) {
        Ok(sb) => sb,
        Err(e) => return Ok(RunOutput::setup_error(e.kind, e.message)),
    };
    let c = Canceller::new().map_err(|e| format!("failed to make a canceller: {e}"))?;
    *active.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
    let out = sandbox.run_opts(
        command,
        &RunOptions {
            stdio: Stdio::Capture,
            cancel: Some(c),
            grace: std::time::Duration::ZERO,
            stdin_fd: None,
        },
    );
    *active.lock().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(out)
}

/// Arguments of `sandspec driver` (none: it speaks on stdin/stdout).
#[derive(Debug, Args)]
pub struct DriverArgs {}

/// Serves requests until `bye` or EOF. A request that cannot be parsed but
/// has a `seq` gets an `error` answer; anything else unparseable ends the
/// session with exit 2 and a message on stderr.
///
/// SIGINT, SIGTERM or SIGHUP (the harness stopping its driver) ends it
/// with 128+N: a run in progress is cancelled first (its whole tree killed
/// and reaped), and not answered.
pub fn exec(_args: DriverArgs) -> i32 {
    if let Err(e) = interrupt::install() {
        say!("sandspec driver: failed to install the interrupt handlers: {e}");
        return 2;
    }
    // The canceller of the run in progress. An interrupt cancels that run
    // (the loop then exits); with no run in progress it exits at once.
    let active: Arc<Mutex<Option<Canceller>>> = Arc::default();
    let hook_active = Arc::clone(&active);
    let _hook = interrupt::on_interrupt(move |sig, _| {
        let guard = hook_active.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(c) => c.cancel(libc::SIGKILL),
            None => std::process::exit(interrupt::exit_code(sig)),
        }
    });
    let mut built = LastBuilt::default();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                say!("sandspec driver: failed to read stdin: {e}");
                return 2;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Duplicate keys are refused here too: `{"env":{"A":"1","A":"2"}}`
        // must not be read as either.
        let parsed = protocol::strict_json(&line).and_then(serde_json::from_value::<ToDriver>);
        let reply = match parsed {
            Ok(ToDriver::Hello { protocol, .. }) => {
                if protocol != PROTOCOL_VERSION {
                    say!(
                        "sandspec driver: the harness speaks protocol {protocol}; \
                         answering with version {PROTOCOL_VERSION}"
                    );
                }
                let h = reference::hello();
                FromDriver::Hello {
                    protocol: PROTOCOL_VERSION,
                    driver: DriverInfo {
                        name: h.name,
                        version: h.version,
                    },
                    // Behind the protocol no fds can be handed over.
                    capabilities: h
                        .capabilities
                        .into_iter()
                        .filter(|c| !crate::driver::protocol::IN_PROCESS_ONLY.contains(c))
                        .collect(),
                    requires_landlock_abi: h.requires_landlock_abi,
                }
            }
            Ok(ToDriver::Run {
                seq,
                policy,
                command,
                ..
            }) => {
                let reply = match run_cancellable(&mut built, &policy, &command, &active) {
                    Ok(output) => FromDriver::Result { seq, output },
                    Err(message) => FromDriver::Error { seq, message },
                };
                // Stopped by an interrupt: the run was cancelled, and its
                // result would describe the kill, not the case.
                if let Some(sig) = interrupt::requested() {
                    return interrupt::exit_code(sig);
                }
                reply
            }
            Ok(ToDriver::Ping { seq }) => FromDriver::Pong { seq },
            Ok(ToDriver::Bye) => return 0,
            Err(e) => {
                let seq = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
                match seq {
                    Some(seq) => FromDriver::Error {
                        seq,
                        message: format!("failed to parse the request: {e}"),
                    },
                    None => {
                        say!(
                            "sandspec driver: failed to parse a message: {e}: {}",
                            protocol::snippet(&line)
                        );
                        return 2;
                    }
                }
            }
        };
        if stdout
            .write_all(&protocol::line(&reply))
            .and_then(|_| stdout.flush())
            .is_err()
        {
            // The harness went away.
            return 0;
        }
    }
    0
}
