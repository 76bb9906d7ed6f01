//! The protocol's own round trip, measured so it can be subtracted: a
//! driver behind the protocol pays for JSON, two pipes and its own event
//! loop on every request, which is not sandboxing cost.
//!
//! The preferred measure is `ping` → `pong` (conformance/PROTOCOL.md). A
//! driver that does not implement ping gets a run it must refuse without
//! spawning anything: the bench policy plus a relative `read` path, which
//! the protocol defines as invalid. Its answer must be a `setup_error`
//! outcome or an `error` message; a driver that runs the command anyway
//! cannot have its round trip separated, and nothing is subtracted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::{Driver, DriverError, DriverFactory, Ping, RunRequest};
use crate::policy::{Outcome, RunOutput};

/// How long a driver gets to answer its first ping. One that stays silent
/// is killed and restarted, so this is short.
pub const FIRST_PING_WATCHDOG: Duration = Duration::from_secs(2);

/// The relative path that makes the refused run invalid.
pub const RELATIVE_PATH: &str = "sandspec-bench/relative-path-makes-this-policy-invalid";

/// How a driver's round trip was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The driver runs in the harness's process: no round trip.
    InProcess,
    /// A `ping` → `pong` exchange, timed every round.
    Ping,
    /// A run the driver refuses without spawning (invalid policy), timed
    /// every round.
    RefusedRun,
    /// Neither works for this driver: nothing is subtracted.
    Unmeasured,
}

impl Method {
    /// The word the terminal table shows.
    pub fn label(self) -> &'static str {
        match self {
            Method::InProcess => "in-process",
            Method::Ping => "ping",
            Method::RefusedRun => "refused run",
            Method::Unmeasured => "unmeasured",
        }
    }
}

/// The method chosen for a driver, and why when it is not the preferred one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The method.
    pub method: Method,
    /// Why ping was not used, or why nothing could be measured.
    pub note: Option<String>,
}

/// The run request a driver must refuse: `valid` plus a relative read path.
pub fn refused_request(valid: &RunRequest) -> RunRequest {
    let mut req = valid.clone();
    req.case = "bench.roundtrip".into();
    req.policy.read.push(PathBuf::from(RELATIVE_PATH));
    req
}

/// Whether an answer to the refused request shows the driver ran nothing.
fn refused(answer: &Result<RunOutput, DriverError>) -> bool {
    match answer {
        Ok(out) => matches!(out.outcome, Outcome::SetupError { .. }),
        Err(DriverError::Reported { .. }) => true,
        Err(_) => false,
    }
}

/// Picks the method for `driver` (already past its handshake). A driver
/// that faults on ping is replaced by a fresh instance from `factory`.
/// `seq` is the next free request number; `refusable` is a valid bench run.
pub fn detect(
    driver: &mut Box<dyn Driver>,
    factory: &dyn DriverFactory,
    seq: &mut u64,
    refusable: &RunRequest,
    watchdog: Duration,
) -> Result<Detected, DriverError> {
    *seq += 1;
    let why_not_ping = match driver.ping(*seq, FIRST_PING_WATCHDOG) {
        Ok(Ping::InProcess) => {
            return Ok(Detected {
                method: Method::InProcess,
                note: None,
            })
        }
        Ok(Ping::Pong) => {
            return Ok(Detected {
                method: Method::Ping,
                note: None,
            })
        }
        Ok(Ping::Unsupported(message)) => format!("it answered ping with an error ({message})"),
        Err(e) => {
            // The instance was killed by the fault; start another.
            let mut fresh = factory.spawn(None)?;
            fresh.hello()?;
            *driver = fresh;
            format!("ping failed ({e}); the driver was restarted")
        }
    };
    *seq += 1;
    let mut req = refused_request(refusable);
    req.seq = *seq;
    let answer = driver.run(&req, watchdog);
    if refused(&answer) {
        return Ok(Detected {
            method: Method::RefusedRun,
            note: Some(why_not_ping),
        });
    }
    match answer {
        Ok(out) => Ok(Detected {
            method: Method::Unmeasured,
            note: Some(format!(
                "{why_not_ping}; it did not refuse a policy with a relative path \
                 (outcome {:?}), so its round trip cannot be told apart from a spawn",
                out.outcome
            )),
        }),
        Err(e) => Err(e),
    }
}

/// Times one round trip by `method`; zero for in-process and unmeasured.
pub fn measure(
    driver: &mut dyn Driver,
    method: Method,
    seq: u64,
    refusable: &RunRequest,
    watchdog: Duration,
) -> Result<Duration, String> {
    match method {
        Method::InProcess | Method::Unmeasured => Ok(Duration::ZERO),
        Method::Ping => {
            let t = Instant::now();
            let answer = driver.ping(seq, watchdog);
            let elapsed = t.elapsed();
            match answer {
                Ok(Ping::Pong) => Ok(elapsed),
                Ok(other) => Err(format!(
                    "failed to ping: the driver answered pongs before, now {other:?}"
                )),
                Err(e) => Err(format!("failed to ping: {e}")),
            }
        }
        Method::RefusedRun => {
            let mut req = refused_request(refusable);
            req.seq = seq;
            let t = Instant::now();
            let answer = driver.run(&req, watchdog);
            let elapsed = t.elapsed();
            if refused(&answer) {
                Ok(elapsed)
            } else {
                Err(match answer {
                    Ok(out) => format!(
                        "failed to time the round trip: the driver refused a relative path \
                         before, now it answered {:?}",
                        out.outcome
                    ),
                    Err(e) => format!("failed to time the round trip: {e}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Command, Policy, SetupErrorKind};

    #[test]
    fn the_refused_request_adds_a_relative_path_and_keeps_the_rest() {
        let valid = RunRequest {
            seq: 1,
            case: "bench.true".into(),
            policy: Policy {
                read: vec!["/usr".into()],
                ..Default::default()
            },
            command: Command::argv(["/bin/true"]),
        };
        let r = refused_request(&valid);
        assert_eq!(r.policy.read.len(), 2);
        assert!(r.policy.read[1].is_relative());
        assert_eq!(r.command, valid.command);
    }

    #[test]
    fn only_a_setup_error_or_an_error_message_counts_as_refused() {
        assert!(refused(&Ok(RunOutput::setup_error(
            SetupErrorKind::InvalidPolicy,
            "relative"
        ))));
        assert!(refused(&Err(DriverError::Reported {
            driver: "d".into(),
            message: "no".into()
        })));
        let ran = RunOutput {
            outcome: Outcome::Exited { code: 0 },
            ..RunOutput::setup_error(SetupErrorKind::Other, "")
        };
        assert!(!refused(&Ok(ran)));
        assert!(!refused(&Err(DriverError::Hung {
            driver: "d".into(),
            after: Duration::from_secs(1)
        })));
    }

    #[test]
    fn the_reference_sandbox_refuses_the_relative_path() {
        // In process, through the same library call `sandspec driver` makes.
        let valid = RunRequest {
            seq: 1,
            case: "bench.true".into(),
            policy: super::super::true_policy(),
            command: Command::argv(["/bin/true"]),
        };
        let req = refused_request(&valid);
        let out = crate::sandbox::run(&req.policy, &req.command);
        match out.outcome {
            Outcome::SetupError { kind, .. } => {
                // Without Landlock the sandbox refuses earlier, for that.
                if crate::kernel::landlock().abi().is_some() {
                    assert_eq!(kind, SetupErrorKind::InvalidPolicy);
                }
            }
            other => panic!("the relative path was not refused: {other:?}"),
        }
    }
}
