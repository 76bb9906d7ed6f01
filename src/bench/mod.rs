//! Spawn-latency benchmarks behind `sandspec bench`: what sandboxing costs
//! at spawn, measured side by side and reported as ratios to a bare spawn
//! timed in the same run, because these machines are noisy.
//!
//! - [`drivers`]: `/bin/true` through each driver, interleaved with a bare
//!   spawn, every driver once per round in a shuffled order, so a load
//!   drift hits all of them alike. The protocol's round trip
//!   ([`roundtrip`]) is measured each round and subtracted.
//! - [`scaling`]: how the reference sandbox's spawn grows with the number
//!   of allowlisted paths and with concurrent spawns.
//! - [`stats`], [`machine`], [`table`]: summaries, machine facts, the
//!   terminal table.
//!
//! Criterion benches (`benches/spawn.rs`, `benches/scaling.rs`) measure the
//! library directly; this module measures what a user of a driver sees.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::driver::RunRequest;
use crate::policy::{Command, Network, Policy};

pub mod drivers;
pub mod machine;
pub mod roundtrip;
pub mod scaling;
pub mod stats;
pub mod table;

/// The program every bench spawns.
pub const TRUE: &str = "/bin/true";

/// The least a policy needs for `/bin/true` to run: read the system
/// libraries and configuration, execute from the system directories, no
/// network.
pub fn true_policy() -> Policy {
    Policy {
        read: ["/usr", "/lib", "/lib64", "/etc"]
            .map(PathBuf::from)
            .to_vec(),
        exec: ["/usr/bin", "/bin", "/lib", "/lib64"]
            .map(PathBuf::from)
            .to_vec(),
        network: Network::Deny,
        ..Default::default()
    }
}

/// The run request for `/bin/true` under [`true_policy`].
pub fn true_request(seq: u64) -> RunRequest {
    RunRequest {
        seq,
        case: "bench.true".into(),
        policy: true_policy(),
        command: Command::argv([TRUE]),
    }
}

/// Times one bare spawn of `/bin/true` (`std::process::Command`, waited
/// for), the baseline every ratio is taken against.
pub fn bare_spawn() -> Result<Duration, String> {
    let t = Instant::now();
    let status = std::process::Command::new(TRUE)
        .status()
        .map_err(|e| format!("failed to spawn {TRUE}: {e}"))?;
    let elapsed = t.elapsed();
    if !status.success() {
        return Err(format!("failed to run {TRUE} bare: it ended with {status}"));
    }
    Ok(elapsed)
}

/// A shuffled order of `0..n` (Fisher–Yates with a seeded generator, so a
/// run can be repeated with `--seed`).
pub fn shuffled(rng: &mut fastrand::Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shuffle_is_a_permutation_and_repeats_with_its_seed() {
        let a = shuffled(&mut fastrand::Rng::with_seed(7), 20);
        let b = shuffled(&mut fastrand::Rng::with_seed(7), 20);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        let mut rng = fastrand::Rng::with_seed(7);
        let orders: std::collections::BTreeSet<Vec<usize>> =
            (0..20).map(|_| shuffled(&mut rng, 5)).collect();
        assert!(orders.len() > 1, "every round had the same order");
    }

    #[test]
    fn the_bare_baseline_runs_true() {
        assert!(bare_spawn().is_ok());
    }
}
