//! How the reference sandbox's spawn of `/bin/true` grows:
//!
//! - with the number of allowlisted paths (directories in a temporary
//!   directory, all listed in `read`): the spawn under a sandbox built once
//!   ([`Sandbox::run`], what a library user pays per spawn) and the build
//!   ([`Sandbox::new`]: opening each path and adding its rule) are separate
//!   variants, so CPU burnt by a large build does not colour the spawn timed
//!   right after it; build + spawn (the sum of the medians) is what a driver
//!   pays per case;
//! - with concurrent spawns: T threads each spawning in a loop through one
//!   shared [`Sandbox`], against T threads spawning bare, for per-spawn
//!   latency and throughput;
//! - with the caller's own memory: M MiB of touched heap in the process
//!   that calls [`Sandbox::run`] (a library user's, or the harness's), since
//!   a `fork`-based spawn copies the caller's page tables and a
//!   `posix_spawn` (what `std::process::Command` does) does not.
//!
//! Every variant runs once per round in a shuffled order, as in
//! [`super::drivers`], and is reported as a ratio to the bare spawn.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::machine::Machine;
use super::stats::{micros, quantile, ratio, Summary};
use super::{bare_spawn, shuffled, true_policy, TRUE};
use crate::policy::{Command, Outcome, Policy};
use crate::sandbox::Sandbox;

/// Default allowlist sizes.
pub const DEFAULT_PATHS: &[usize] = &[1, 10, 100, 1000];
/// Default thread counts.
pub const DEFAULT_THREADS: &[usize] = &[1, 2, 8, 32];
/// Default sizes of the caller's heap, MiB.
pub const DEFAULT_MEMORY_MIB: &[usize] = &[0, 64, 256];

/// How to run the scaling bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allowlist sizes.
    pub paths: Vec<usize>,
    /// Measured rounds of the path part.
    pub rounds: usize,
    /// Rounds (path part) and passes (concurrency part) thrown away first.
    pub warmup: usize,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// Spawns per burst (split across the threads, rounded up).
    pub spawns: usize,
    /// Measured bursts per thread count and kind.
    pub bursts: usize,
    /// Sizes of the caller's heap, MiB.
    pub memory_mib: Vec<usize>,
    /// Measured rounds of the memory part.
    pub memory_rounds: usize,
    /// Seed of the shuffled order.
    pub seed: u64,
}

/// One allowlist size.
#[derive(Debug, Clone, Serialize)]
pub struct PathsRow {
    /// Directories listed in `read` (besides the system paths `/bin/true`
    /// needs).
    pub paths: usize,
    /// Median spawn under a sandbox built once, µs.
    pub median_us: f64,
    /// Its 90th percentile, µs.
    pub p90_us: f64,
    /// `median_us` over the bare median.
    pub ratio: Option<f64>,
    /// Spawning under the prebuilt sandbox (`Sandbox::run`).
    pub spawn: Summary,
    /// Building the sandbox (`Sandbox::new`).
    pub build: Summary,
    /// Build median + spawn median, µs: what a driver pays per case.
    pub build_and_spawn_us: f64,
    /// `build_and_spawn_us` over the bare median.
    pub build_and_spawn_ratio: Option<f64>,
}

/// One thread count.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsRow {
    /// Threads spawning at once.
    pub threads: usize,
    /// Spawns measured per kind (sandbox and bare).
    pub spawns: usize,
    /// Median latency of one sandboxed spawn, µs.
    pub median_us: f64,
    /// Its 90th percentile, µs.
    pub p90_us: f64,
    /// `median_us` over the bare median at the same thread count.
    pub ratio: Option<f64>,
    /// Sandboxed spawns completed per second (all threads; the median
    /// over the bursts).
    pub per_second: f64,
    /// Bare spawns per second at the same thread count (the same way).
    pub bare_per_second: f64,
    /// Per-spawn latency under the sandbox.
    pub sandbox: Summary,
    /// Per-spawn latency bare.
    pub bare: Summary,
}

/// One size of the caller's heap.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRow {
    /// MiB of heap the calling process has touched (on top of its own).
    pub mib: usize,
    /// Median spawn under a prebuilt sandbox, µs.
    pub median_us: f64,
    /// Its 90th percentile, µs.
    pub p90_us: f64,
    /// `median_us` over the bare median at the same size.
    pub ratio: Option<f64>,
    /// Spawns under the sandbox.
    pub sandbox: Summary,
    /// Bare spawns from the same process at the same size.
    pub bare: Summary,
}

/// The result of `sandspec bench --scaling`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The sandspec version.
    pub sandspec: &'static str,
    /// What was spawned.
    pub command: Vec<String>,
    /// The policy the listed directories are added to.
    pub policy: Policy,
    /// Measured rounds of the path part.
    pub rounds: usize,
    /// Warm-up rounds / passes.
    pub warmup: usize,
    /// Measured bursts per thread count and kind.
    pub bursts: usize,
    /// Spawns per burst.
    pub spawns_per_burst: usize,
    /// Seed of the shuffled order.
    pub seed: u64,
    /// Kernel, CPUs, load.
    pub machine: Machine,
    /// Bare spawns interleaved with the path part (the baseline of its
    /// ratios).
    pub bare: Summary,
    /// The path part.
    pub paths: Vec<PathsRow>,
    /// The concurrency part.
    pub concurrency: Vec<ThreadsRow>,
    /// Measured rounds of the memory part.
    pub memory_rounds: usize,
    /// The caller-memory part.
    pub memory: Vec<MemoryRow>,
}

/// Progress for the terminal: a phase name, step, steps.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Runs both parts. `Err` when the reference sandbox cannot be set up here
/// or `/bin/true` does not run under it.
pub fn run(opts: &Options, progress: Progress) -> Result<Report, String> {
    let mut machine = Machine::probe();
    let (bare, paths) = paths_part(opts, progress)?;
    let concurrency = concurrency_part(opts, progress)?;
    let memory = memory_part(opts, progress)?;
    machine.finish();
    Ok(Report {
        sandspec: env!("CARGO_PKG_VERSION"),
        command: vec![TRUE.into()],
        policy: true_policy(),
        rounds: opts.rounds,
        warmup: opts.warmup,
        bursts: opts.bursts,
        spawns_per_burst: opts.spawns,
        seed: opts.seed,
        machine,
        bare,
        paths,
        concurrency,
        memory_rounds: opts.memory_rounds,
        memory,
    })
}

/// `true_policy` plus the first `n` directories of `dirs` in `read`.
fn policy_with(dirs: &[PathBuf], n: usize) -> Policy {
    let mut p = true_policy();
    p.read.extend_from_slice(&dirs[..n]);
    p
}

/// Creates `n` empty directories under `root`.
fn make_dirs(root: &Path, n: usize) -> Result<Vec<PathBuf>, String> {
    (0..n)
        .map(|i| {
            let d = root.join(format!("d{i:05}"));
            std::fs::create_dir(&d)
                .map_err(|e| format!("failed to create {}: {e}", d.display()))?;
            Ok(d)
        })
        .collect()
}

fn sandbox(policy: &Policy) -> Result<Sandbox, String> {
    Sandbox::new(policy).map_err(|e| {
        format!(
            "failed to set up the reference sandbox ({} allowlisted paths): {e}",
            policy.read.len() + policy.exec.len()
        )
    })
}

/// Runs `/bin/true` under `sb`; its latency, or why it did not exit 0.
fn spawn_once(sb: &Sandbox, cmd: &Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = sb.run(cmd);
    let elapsed = t.elapsed();
    if out.outcome == (Outcome::Exited { code: 0 }) {
        Ok(elapsed)
    } else {
        Err(format!(
            "failed to run {TRUE} in the reference sandbox: outcome {:?}, stderr {:?}",
            out.outcome,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn paths_part(opts: &Options, progress: Progress) -> Result<(Summary, Vec<PathsRow>), String> {
    let most = opts.paths.iter().copied().max().unwrap_or(0);
    let tmp = tempfile::Builder::new()
        .prefix("sandspec-bench-paths")
        .tempdir()
        .map_err(|e| format!("failed to create a temporary directory: {e}"))?;
    let dirs = make_dirs(tmp.path(), most)?;
    let policies: Vec<Policy> = opts.paths.iter().map(|&n| policy_with(&dirs, n)).collect();
    let built: Vec<Sandbox> = policies.iter().map(sandbox).collect::<Result<_, _>>()?;
    let cmd = Command::argv([TRUE]);
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let n = policies.len();
    let mut bare = Vec::new();
    let mut build = vec![Vec::new(); n];
    let mut spawn = vec![Vec::new(); n];
    let total = opts.warmup + opts.rounds;
    // Slot 0: bare; 1..=n: spawn under sandbox i; n+1..=2n: build sandbox i.
    for round in 0..total {
        let keep = round >= opts.warmup;
        for slot in shuffled(&mut rng, 2 * n + 1) {
            let (samples, t) = match slot {
                0 => (&mut bare, bare_spawn()?),
                s if s <= n => (&mut spawn[s - 1], spawn_once(&built[s - 1], &cmd)?),
                s => {
                    let t = Instant::now();
                    let sb = sandbox(&policies[s - n - 1])?;
                    let t = t.elapsed();
                    drop(sb);
                    (&mut build[s - n - 1], t)
                }
            };
            if keep {
                samples.push(micros(t));
            }
        }
        progress("paths", round + 1, total);
    }
    let bare = Summary::of(&bare).ok_or("no bare samples: give at least one round")?;
    let rows = opts
        .paths
        .iter()
        .zip(build.iter().zip(&spawn))
        .map(|(&n, (b, s))| {
            let build = Summary::of(b).ok_or("no samples")?;
            let spawn = Summary::of(s).ok_or("no samples")?;
            let both = ((build.median_us + spawn.median_us) * 10.0).round() / 10.0;
            Ok(PathsRow {
                paths: n,
                median_us: spawn.median_us,
                p90_us: spawn.p90_us,
                ratio: ratio(spawn.median_us, bare.median_us),
                build_and_spawn_us: both,
                build_and_spawn_ratio: ratio(both, bare.median_us),
                spawn,
                build,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((bare, rows))
}

/// One burst: `threads` threads each spawning `per_thread` times, started
/// together (under `sb`, or bare when `None`). Per-spawn latencies (µs) and
/// the wall time of the burst. Shared with `benches/scaling.rs`.
pub fn burst(
    threads: usize,
    per_thread: usize,
    sb: Option<&Sandbox>,
    cmd: &Command,
) -> Result<(Vec<f64>, Duration), String> {
    let gate = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let gate = &gate;
                s.spawn(move || {
                    gate.wait();
                    let mut lat = Vec::with_capacity(per_thread);
                    for _ in 0..per_thread {
                        let t = match sb {
                            Some(sb) => spawn_once(sb, cmd)?,
                            None => bare_spawn()?,
                        };
                        lat.push(micros(t));
                    }
                    Ok::<_, String>(lat)
                })
            })
            .collect();
        gate.wait();
        let t = Instant::now();
        let mut all = Vec::with_capacity(threads * per_thread);
        let mut failure = None;
        for h in handles {
            match h.join() {
                Ok(Ok(lat)) => all.extend(lat),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a spawning thread panicked".to_string()),
            }
        }
        let wall = t.elapsed();
        match failure {
            Some(e) => Err(e),
            None => Ok((all, wall)),
        }
    })
}

fn concurrency_part(opts: &Options, progress: Progress) -> Result<Vec<ThreadsRow>, String> {
    let sb = sandbox(&true_policy())?;
    let cmd = Command::argv([TRUE]);
    let mut rng = fastrand::Rng::with_seed(opts.seed.wrapping_add(1));
    // Variant k: thread count k / 2, sandboxed when k is odd.
    let variants = opts.threads.len() * 2;
    let mut lat = vec![Vec::new(); variants];
    let mut rate = vec![Vec::new(); variants];
    let mut count = vec![0usize; variants];
    let passes = opts.warmup.min(1) + opts.bursts;
    for pass in 0..passes {
        let keep = pass >= passes - opts.bursts;
        for k in shuffled(&mut rng, variants) {
            let threads = opts.threads[k / 2];
            let per_thread = opts.spawns.div_ceil(threads).max(1);
            let sandboxed = (k % 2 == 1).then_some(&sb);
            let (l, w) = burst(threads, per_thread, sandboxed, &cmd)?;
            if keep {
                let secs = w.as_secs_f64();
                if secs > 0.0 {
                    rate[k].push(l.len() as f64 / secs);
                }
                count[k] += l.len();
                lat[k].extend(l);
            }
        }
        progress("concurrency", pass + 1, passes);
    }
    // The median burst: one burst stalled by the machine's other load
    // should not set the figure.
    let per_second = |k: usize| {
        let mut r = rate[k].clone();
        r.sort_by(f64::total_cmp);
        if r.is_empty() {
            0.0
        } else {
            quantile(&r, 0.5).round()
        }
    };
    opts.threads
        .iter()
        .enumerate()
        .map(|(i, &threads)| {
            let bare = Summary::of(&lat[2 * i]).ok_or("no samples: give at least one burst")?;
            let sandbox = Summary::of(&lat[2 * i + 1]).ok_or("no samples")?;
            Ok(ThreadsRow {
                threads,
                spawns: count[2 * i + 1],
                median_us: sandbox.median_us,
                p90_us: sandbox.p90_us,
                ratio: ratio(sandbox.median_us, bare.median_us),
                per_second: per_second(2 * i + 1),
                bare_per_second: per_second(2 * i),
                sandbox,
                bare,
            })
        })
        .collect()
}

/// `mib` MiB of heap, every page written, so the kernel has really mapped
/// it (and a fork has page tables to copy).
fn ballast(mib: usize) -> Vec<u8> {
    let mut v = vec![0u8; mib << 20];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(v)
}

fn memory_part(opts: &Options, progress: Progress) -> Result<Vec<MemoryRow>, String> {
    let sb = sandbox(&true_policy())?;
    let cmd = Command::argv([TRUE]);
    let mut rng = fastrand::Rng::with_seed(opts.seed.wrapping_add(2));
    let n = opts.memory_mib.len();
    let mut bare = vec![Vec::new(); n];
    let mut sandboxed = vec![Vec::new(); n];
    let total = opts.warmup.min(1) + opts.memory_rounds;
    for round in 0..total {
        let keep = round + opts.memory_rounds >= total;
        for i in shuffled(&mut rng, n) {
            // Allocating is not timed; both spawns see the same heap, in a
            // shuffled order.
            let heap = ballast(opts.memory_mib[i]);
            let (b, s) = if rng.bool() {
                let b = bare_spawn()?;
                (b, spawn_once(&sb, &cmd)?)
            } else {
                let s = spawn_once(&sb, &cmd)?;
                (bare_spawn()?, s)
            };
            drop(heap);
            if keep {
                bare[i].push(micros(b));
                sandboxed[i].push(micros(s));
            }
        }
        progress("memory", round + 1, total);
    }
    opts.memory_mib
        .iter()
        .zip(bare.iter().zip(&sandboxed))
        .map(|(&mib, (b, s))| {
            let bare = Summary::of(b).ok_or("no samples: give at least one memory round")?;
            let sandbox = Summary::of(s).ok_or("no samples")?;
            Ok(MemoryRow {
                mib,
                median_us: sandbox.median_us,
                p90_us: sandbox.p90_us,
                ratio: ratio(sandbox.median_us, bare.median_us),
                sandbox,
                bare,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_directories_are_added_to_the_bench_policy() {
        let d = tempfile::tempdir().unwrap();
        let dirs = make_dirs(d.path(), 3).unwrap();
        assert!(dirs.iter().all(|p| p.is_dir()));
        let p = policy_with(&dirs, 2);
        assert_eq!(p.read.len(), true_policy().read.len() + 2);
        assert_eq!(p.read.last(), Some(&dirs[1]));
    }

    #[test]
    fn ballast_is_the_size_asked_for_and_touched() {
        let b = ballast(2);
        assert_eq!(b.len(), 2 << 20);
        assert!(b.chunks(4096).all(|p| p[0] == 1));
        assert!(ballast(0).is_empty());
    }

    #[test]
    fn a_bare_burst_times_every_spawn_of_every_thread() {
        let (lat, wall) = burst(3, 2, None, &Command::argv([TRUE])).unwrap();
        assert_eq!(lat.len(), 6);
        assert!(lat.iter().all(|&l| l > 0.0));
        assert!(wall > Duration::ZERO);
    }
}
