//! How long the harness waits for a run before it calls the driver hung.
//!
//! A policy with a `timeout` bounds the run in wall time: the watchdog is
//! that plus a margin. A policy that bounds only CPU time
//! (`limits.cpu_seconds`) ends by CPU time, and CPU time is slow to come
//! when many tasks share the CPUs: at `--jobs 32` on two cores, under other
//! load, two seconds of CPU took more than the 30 s default watchdog, and
//! the case was an ERROR that said nothing about the sandbox. So for such
//! a run the watchdog also allows the CPU limit (plus the second between
//! the soft and the hard limit) times the contention measured when the run
//! starts, doubled for load that rises during the run.

use std::time::Duration;

/// The most the CPU allowance is stretched by contention.
pub const MAX_STRETCH: f64 = 32.0;

/// How many times slower than on an idle machine a CPU-bound task runs
/// now: the largest of runnable tasks per CPU (the 1-minute load average,
/// and the instantaneous count) and, where the kernel has pressure stall
/// information, 1 / (1 − the share of time runnable tasks waited over the
/// last 10 s). At least 1, at most [`MAX_STRETCH`].
pub fn contention() -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let from_load = parse_loadavg(&loadavg).map_or(1.0, |(load1, running)| {
        // The reader itself is one of the running tasks.
        load1.max(running - 1.0) / cpus
    });
    let psi = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let from_psi = parse_psi_some_avg10(&psi).map_or(1.0, |p| 1.0 / (1.0 - p.min(0.99)));
    from_load.max(from_psi).clamp(1.0, MAX_STRETCH)
}

/// `(1-minute load, running tasks)` from /proc/loadavg's text.
fn parse_loadavg(text: &str) -> Option<(f64, f64)> {
    let mut f = text.split_whitespace();
    let load1: f64 = f.next()?.parse().ok()?;
    let running: f64 = f.nth(2)?.split('/').next()?.parse().ok()?;
    Some((load1, running))
}

/// The `some avg10` share (0–1) from /proc/pressure/cpu's text.
fn parse_psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let v = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))?;
    Some(v.parse::<f64>().ok()? / 100.0)
}

/// The watchdog for a run bounded by `cpu_seconds` of CPU time and no
/// wall-clock timeout: `base`, plus the CPU it may use (the soft limit and
/// the second until the hard one) stretched by `stretch`, doubled.
pub fn for_cpu_limit(base: Duration, cpu_seconds: u64, stretch: f64) -> Duration {
    let secs = (cpu_seconds as f64 + 1.0) * 2.0 * stretch.clamp(1.0, MAX_STRETCH);
    base.saturating_add(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_pressure_texts_parse() {
        assert_eq!(
            parse_loadavg("23.09 15.11 11.65 9/168 23215\n"),
            Some((23.09, 9.0))
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let psi = "some avg10=98.17 avg60=97.84 avg300=97.55 total=3959853086\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi_some_avg10(psi), Some(0.9817));
        assert_eq!(parse_psi_some_avg10(""), None);
    }

    #[test]
    fn the_cpu_allowance_grows_with_contention_and_is_bounded() {
        let base = Duration::from_secs(30);
        assert_eq!(for_cpu_limit(base, 10, 1.0), Duration::from_secs(52));
        assert_eq!(for_cpu_limit(base, 1, 16.0), Duration::from_secs(30 + 64));
        assert_eq!(
            for_cpu_limit(base, 1, 1000.0),
            for_cpu_limit(base, 1, MAX_STRETCH)
        );
        assert_eq!(for_cpu_limit(base, 1, 0.1), for_cpu_limit(base, 1, 1.0));
        // A CPU limit of u64::MAX seconds saturates instead of panicking.
        let _ = for_cpu_limit(base, u64::MAX, 2.0);
        let c = contention();
        assert!((1.0..=MAX_STRETCH).contains(&c), "{c}");
    }

    #[test]
    fn the_harness_gives_a_cpu_bounded_run_its_cpu_allowance() {
        use crate::policy::{Limits, Policy, Timeout};
        let config = crate::harness::HarnessConfig::new("/probe");
        let cpu = |n| Policy {
            limits: Limits {
                cpu_seconds: Some(n),
                ..Default::default()
            },
            ..Default::default()
        };
        // At least the default plus twice the 11 s a 10 s limit allows.
        assert!(config.watchdog(&cpu(10)) >= config.default_watchdog + Duration::from_secs(22));
        assert_eq!(config.watchdog(&Policy::default()), config.default_watchdog);
        // A wall-clock timeout bounds the run: it decides.
        let mut timed = cpu(10);
        timed.timeout = Some(Timeout(Duration::from_secs(2)));
        assert_eq!(
            config.watchdog(&timed),
            Duration::from_secs(2) + config.watchdog_margin
        );
    }
}
