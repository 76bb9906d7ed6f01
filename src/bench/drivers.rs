//! `/bin/true` through each driver, side by side with a bare spawn.
//!
//! Every round runs the bare spawn and each driver once, in a freshly
//! shuffled order, so a drift in the machine's load hits all of them alike.
//! For a driver behind the protocol, the round trip is timed in the same
//! round, right before the run, and subtracted from it
//! ([`super::roundtrip`]); the median and p90 reported are of these net
//! samples, and the ratio is the net median over the bare median.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::machine::Machine;
use super::roundtrip::{self, Detected, Method};
use super::stats::{micros, ratio, Summary};
use super::{bare_spawn, shuffled, true_request, TRUE};
use crate::driver::{Driver, DriverFactory, RunRequest};
use crate::policy::{Outcome, Policy};

/// A driver to measure.
pub struct Target {
    /// The name the report uses (`--driver` name or `--driver-cmd` line).
    pub label: String,
    /// How to start it.
    pub factory: Box<dyn DriverFactory>,
}

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured rounds.
    pub rounds: usize,
    /// Rounds run first and thrown away (caches, page faults, a driver's
    /// lazy imports).
    pub warmup: usize,
    /// Seed of the order shuffle.
    pub seed: u64,
    /// Bound on each request to a driver.
    pub watchdog: Duration,
}

/// Where a driver dropped out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// It could not be started or failed its handshake (not installed, most
    /// often).
    Handshake,
    /// Its round trip could not be probed, or it could not run `/bin/true`
    /// under the bench policy.
    Check,
    /// It failed during the measured or warm-up rounds.
    Measurement,
}

/// A driver that was not measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The driver.
    pub driver: String,
    /// Where it dropped out.
    pub stage: Stage,
    /// Why.
    pub reason: String,
}

/// The bare baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Bare {
    /// Always `bare`.
    pub driver: &'static str,
    /// Median spawn of `/bin/true`, µs.
    pub median_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// Always 1.
    pub ratio: f64,
    /// All figures.
    pub summary: Summary,
}

/// One measured driver.
#[derive(Debug, Clone, Serialize)]
pub struct DriverResult {
    /// The driver's name.
    pub driver: String,
    /// The backend and version from its handshake.
    pub backend: String,
    /// Median of the net samples (run minus round trip), µs.
    pub median_us: f64,
    /// 90th percentile of the net samples, µs.
    pub p90_us: f64,
    /// `median_us` over the bare median.
    pub ratio: Option<f64>,
    /// Median of the round trips subtracted, µs (0 in process).
    pub roundtrip_us: f64,
    /// How the round trip was measured.
    pub roundtrip_method: Method,
    /// Why the preferred method (ping) was not used, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roundtrip_note: Option<String>,
    /// The raw run times, round trip included.
    pub raw: Summary,
    /// The round trips (absent in process and when unmeasured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roundtrip: Option<Summary>,
    /// The net samples.
    pub net: Summary,
    /// The raw median over the bare median.
    pub raw_ratio: Option<f64>,
}

/// The whole result of `sandspec bench`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The sandspec version.
    pub sandspec: &'static str,
    /// What was spawned.
    pub command: Vec<String>,
    /// The policy each driver ran it under.
    pub policy: Policy,
    /// Measured rounds.
    pub rounds: usize,
    /// Warm-up rounds (not in the figures).
    pub warmup: usize,
    /// Seed of the shuffled order.
    pub seed: u64,
    /// Kernel, CPUs, load.
    pub machine: Machine,
    /// The bare baseline.
    pub bare: Bare,
    /// The measured drivers.
    pub drivers: Vec<DriverResult>,
    /// Drivers that were not measured.
    pub skipped: Vec<Skipped>,
}

struct Active {
    label: String,
    backend: String,
    driver: Box<dyn Driver>,
    detected: Detected,
    seq: u64,
    raw: Vec<f64>,
    roundtrip: Vec<f64>,
    failed: bool,
}

/// Progress for the terminal: `(round, of)` after each round.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Runs the bench. `Err` only when the bare baseline itself fails; drivers
/// that fail are listed in [`Report::skipped`].
pub fn run(targets: Vec<Target>, opts: &Options, progress: Progress) -> Result<Report, String> {
    let mut machine = Machine::probe();
    let valid = true_request(0);
    let mut skipped = Vec::new();
    let mut active = Vec::new();
    for t in targets {
        match start(t, &valid, opts.watchdog) {
            Ok(a) => active.push(a),
            Err(s) => skipped.push(s),
        }
    }
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut bare = Vec::with_capacity(opts.rounds);
    let total = opts.warmup + opts.rounds;
    for round in 0..total {
        let keep = round >= opts.warmup;
        for slot in shuffled(&mut rng, active.len() + 1) {
            if slot == 0 {
                let t = bare_spawn()?;
                if keep {
                    bare.push(micros(t));
                }
                continue;
            }
            let a = &mut active[slot - 1];
            if a.failed {
                continue;
            }
            match one(a, &valid, opts.watchdog) {
                Ok((raw, rt)) => {
                    if keep {
                        a.raw.push(micros(raw));
                        a.roundtrip.push(micros(rt));
                    }
                }
                Err(why) => {
                    a.failed = true;
                    skipped.push(Skipped {
                        driver: a.label.clone(),
                        stage: Stage::Measurement,
                        reason: format!("round {}: {why}", round + 1),
                    });
                }
            }
        }
        progress(round + 1, total);
    }
    machine.finish();
    let bare = Summary::of(&bare).ok_or("no bare samples: give at least one round")?;
    let drivers = active
        .into_iter()
        .filter(|a| !a.failed)
        .filter_map(|a| summarise(a, bare.median_us))
        .collect();
    Ok(Report {
        sandspec: env!("CARGO_PKG_VERSION"),
        command: vec![TRUE.into()],
        policy: valid.policy,
        rounds: opts.rounds,
        warmup: opts.warmup,
        seed: opts.seed,
        machine,
        bare: Bare {
            driver: "bare",
            median_us: bare.median_us,
            p90_us: bare.p90_us,
            ratio: 1.0,
            summary: bare,
        },
        drivers,
        skipped,
    })
}

/// Starts a driver: handshake, round-trip method, and one checked run.
fn start(t: Target, valid: &RunRequest, watchdog: Duration) -> Result<Active, Skipped> {
    let skip = |stage, e: &dyn std::fmt::Display| Skipped {
        driver: t.label.clone(),
        stage,
        reason: e.to_string(),
    };
    let mut driver = t
        .factory
        .spawn(None)
        .map_err(|e| skip(Stage::Handshake, &e))?;
    driver.hello().map_err(|e| skip(Stage::Handshake, &e))?;
    let mut seq = 0;
    let detected = roundtrip::detect(&mut driver, t.factory.as_ref(), &mut seq, valid, watchdog)
        .map_err(|e| {
            skip(
                Stage::Check,
                &format!("failed to probe the round trip: {e}"),
            )
        })?;
    // The handshake again, now from the instance that will be measured (a
    // failed ping replaces it).
    let hello = driver.hello().map_err(|e| skip(Stage::Handshake, &e))?;
    let mut a = Active {
        label: t.label.clone(),
        backend: format!("{} {}", hello.name, hello.version),
        driver,
        detected,
        seq,
        raw: Vec::new(),
        roundtrip: Vec::new(),
        failed: false,
    };
    one(&mut a, valid, watchdog).map_err(|why| Skipped {
        driver: a.label.clone(),
        stage: Stage::Check,
        reason: why,
    })?;
    Ok(a)
}

/// One round for one driver: the round trip, then the timed run.
fn one(
    a: &mut Active,
    valid: &RunRequest,
    watchdog: Duration,
) -> Result<(Duration, Duration), String> {
    a.seq += 1;
    let rt = roundtrip::measure(a.driver.as_mut(), a.detected.method, a.seq, valid, watchdog)?;
    a.seq += 1;
    let mut req = valid.clone();
    req.seq = a.seq;
    let t = Instant::now();
    let answer = a.driver.run(&req, watchdog);
    let elapsed = t.elapsed();
    match answer {
        Ok(out) if out.outcome == (Outcome::Exited { code: 0 }) => Ok((elapsed, rt)),
        Ok(out) => Err(format!(
            "failed to run {TRUE} under the bench policy: outcome {:?}{}",
            out.outcome,
            stderr_hint(&out.stderr)
        )),
        Err(e) => Err(format!("failed to run {TRUE}: {e}")),
    }
}

fn stderr_hint(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        let cut: String = s.chars().take(200).collect();
        format!(", stderr: {cut:?}")
    }
}

fn summarise(a: Active, bare_median: f64) -> Option<DriverResult> {
    let raw = Summary::of(&a.raw)?;
    let net_samples: Vec<f64> = a.raw.iter().zip(&a.roundtrip).map(|(r, t)| r - t).collect();
    let net = Summary::of(&net_samples)?;
    let roundtrip = match a.detected.method {
        Method::Ping | Method::RefusedRun => Summary::of(&a.roundtrip),
        Method::InProcess | Method::Unmeasured => None,
    };
    Some(DriverResult {
        driver: a.label,
        backend: a.backend,
        median_us: net.median_us,
        p90_us: net.p90_us,
        ratio: ratio(net.median_us, bare_median),
        roundtrip_us: roundtrip.as_ref().map_or(0.0, |s| s.median_us),
        roundtrip_method: a.detected.method,
        roundtrip_note: a.detected.note,
        raw_ratio: ratio(raw.median_us, bare_median),
        raw,
        roundtrip,
        net,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::none::NoneFactory;

    fn opts(rounds: usize) -> Options {
        Options {
            rounds,
            warmup: 1,
            seed: 1,
            watchdog: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_none_driver_is_measured_in_process_with_every_round_recorded() {
        let targets = vec![Target {
            label: "none".into(),
            factory: Box::new(NoneFactory),
        }];
        let mut seen = Vec::new();
        let r = run(targets, &opts(3), &mut |i, n| seen.push((i, n))).unwrap();
        assert_eq!(seen, [(1, 4), (2, 4), (3, 4), (4, 4)]);
        assert_eq!(r.bare.summary.samples, 3);
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        let d = &r.drivers[0];
        assert_eq!(d.roundtrip_method, Method::InProcess);
        assert_eq!(d.roundtrip_us, 0.0);
        assert_eq!(d.raw, d.net);
        assert_eq!(d.net.samples, 3);
    }

    #[test]
    fn a_driver_that_cannot_start_is_skipped_with_its_reason() {
        let targets = vec![
            Target {
                label: "missing".into(),
                factory: Box::new(crate::driver::process::ProcessFactory::new(
                    "missing",
                    vec!["/nonexistent/sandspec-bench-driver".into()],
                )),
            },
            Target {
                label: "none".into(),
                factory: Box::new(NoneFactory),
            },
        ];
        let r = run(targets, &opts(1), &mut |_, _| {}).unwrap();
        assert_eq!(r.drivers.len(), 1);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].stage, Stage::Handshake);
        assert!(
            r.skipped[0]
                .reason
                .contains("/nonexistent/sandspec-bench-driver"),
            "{}",
            r.skipped[0].reason
        );
    }
}
