//! `sandspec bench`: spawn latency of `/bin/true` through each driver,
//! side by side with a bare spawn, as a table and as JSON; with
//! `--scaling`, how the reference sandbox's spawn grows with the allowlist
//! and with concurrency.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::EXIT_USAGE;
use crate::bench::drivers::{self, Target};
use crate::bench::scaling::{self, DEFAULT_MEMORY_MIB, DEFAULT_PATHS, DEFAULT_THREADS};
use crate::bench::table::{times, us, Table};
use crate::driver::registry::{self, DriverSpec};

/// Arguments of `sandspec bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A driver to measure (repeatable; default: reference). `bare` is
    /// always measured, as the baseline.
    #[arg(long = "driver", value_name = "NAME")]
    pub drivers: Vec<String>,
    /// An external driver command line, run with `sh -c` (repeatable).
    #[arg(long = "driver-cmd", value_name = "CMD")]
    pub driver_cmds: Vec<String>,
    /// Every built-in driver and every one under conformance/drivers/
    /// (those that do not start are skipped with the reason).
    #[arg(long, conflicts_with = "drivers")]
    pub all_drivers: bool,
    /// Measured rounds (every driver once per round).
    #[arg(short = 'n', long = "rounds", value_name = "N", default_value_t = 200)]
    pub rounds: usize,
    /// Rounds run first and not counted.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub warmup: usize,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Seed of the shuffled order (default: from the clock; printed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Measure how the reference sandbox's spawn scales with allowlisted
    /// paths, concurrent spawns and the caller's heap, instead of comparing
    /// drivers.
    #[arg(long, conflicts_with_all = ["drivers", "driver_cmds", "all_drivers"])]
    pub scaling: bool,
    /// With --scaling: allowlist sizes (comma-separated).
    #[arg(long, value_name = "N,…", value_delimiter = ',', default_values_t = DEFAULT_PATHS.to_vec(), requires = "scaling")]
    pub paths: Vec<usize>,
    /// With --scaling: thread counts (comma-separated).
    #[arg(long, value_name = "N,…", value_delimiter = ',', default_values_t = DEFAULT_THREADS.to_vec(), requires = "scaling")]
    pub threads: Vec<usize>,
    /// With --scaling: spawns per concurrency burst, split across the
    /// threads.
    #[arg(long, value_name = "N", default_value_t = 128, requires = "scaling")]
    pub spawns: usize,
    /// With --scaling: measured bursts per thread count.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "scaling")]
    pub bursts: usize,
    /// With --scaling: MiB of heap the calling process holds while it
    /// spawns (comma-separated).
    #[arg(long, value_name = "MIB,…", value_delimiter = ',', default_values_t = DEFAULT_MEMORY_MIB.to_vec(), requires = "scaling")]
    pub memory: Vec<usize>,
    /// With --scaling: measured rounds of the caller-memory part.
    #[arg(long, value_name = "N", default_value_t = 30, requires = "scaling")]
    pub memory_rounds: usize,
}

/// 0: measured (skipped drivers are listed); 1: no driver could be
/// measured, one failed after its handshake, or the reference sandbox does
/// not run here (`--scaling`); 2: bad arguments or driver names.
pub fn exec(args: BenchArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(Bad(msg)) => {
            say!("sandspec: {msg}");
            EXIT_USAGE
        }
    }
}

/// Bad input: exit 2.
struct Bad(String);

fn run(args: BenchArgs) -> Result<i32, Bad> {
    if args.rounds == 0 {
        return Err(Bad("-n/--rounds must be at least 1".into()));
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    if args.scaling {
        return run_scaling(&args, seed);
    }
    let targets = targets(&args)?;
    let opts = drivers::Options {
        rounds: args.rounds,
        warmup: args.warmup,
        seed,
        watchdog: Duration::from_secs(30),
    };
    let names: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
    say!(
        "sandspec bench: /bin/true, bare and {} — {} rounds + {} warm-up, shuffled (seed {seed})",
        names.join(", "),
        args.rounds,
        args.warmup
    );
    let mut progress = Progress::new();
    let report = match drivers::run(targets, &opts, &mut |i, n| progress.step("rounds", i, n)) {
        Ok(r) => r,
        Err(e) => {
            say!("sandspec: {e}");
            return Ok(1);
        }
    };
    progress.done();
    print!("{}", render_drivers(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    let failed = report
        .skipped
        .iter()
        .any(|s| s.stage != drivers::Stage::Handshake);
    Ok(if report.drivers.is_empty() || failed {
        1
    } else {
        0
    })
}

fn run_scaling(args: &BenchArgs, seed: u64) -> Result<i32, Bad> {
    if args.paths.is_empty() || args.threads.is_empty() || args.memory.is_empty() {
        return Err(Bad(
            "--paths, --threads and --memory need at least one value".into(),
        ));
    }
    if args.memory.iter().any(|&m| m > 64 << 10) {
        return Err(Bad("--memory values are MiB, at most 65536".into()));
    }
    if args.threads.contains(&0) {
        return Err(Bad("--threads values must be at least 1".into()));
    }
    if args.spawns == 0 || args.bursts == 0 || args.memory_rounds == 0 {
        return Err(Bad(
            "--spawns, --bursts and --memory-rounds must be at least 1".into(),
        ));
    }
    let opts = scaling::Options {
        paths: args.paths.clone(),
        rounds: args.rounds,
        warmup: args.warmup,
        threads: args.threads.clone(),
        spawns: args.spawns,
        bursts: args.bursts,
        memory_mib: args.memory.clone(),
        memory_rounds: args.memory_rounds,
        seed,
    };
    say!(
        "sandspec bench --scaling: /bin/true in the reference sandbox; paths {:?} ({} rounds + {} warm-up), threads {:?} ({} bursts of {} spawns), caller MiB {:?} ({} rounds); seed {seed}",
        opts.paths,
        opts.rounds,
        opts.warmup,
        opts.threads,
        opts.bursts,
        opts.spawns,
        opts.memory_mib,
        opts.memory_rounds
    );
    let mut progress = Progress::new();
    let report = match scaling::run(&opts, &mut |phase, i, n| progress.step(phase, i, n)) {
        Ok(r) => r,
        Err(e) => {
            progress.done();
            say!("sandspec: {e}");
            return Ok(1);
        }
    };
    progress.done();
    print!("{}", render_scaling(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(0)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::from(d.subsec_nanos() ^ d.as_secs() as u32))
}

/// The drivers to measure, in the order given; bad names are exit 2.
fn targets(args: &BenchArgs) -> Result<Vec<Target>, Bad> {
    let exe = std::env::current_exe()
        .map_err(|e| Bad(format!("failed to locate the sandspec executable: {e}")))?;
    let drivers_dir = crate::corpus::default_cases_dir().join("drivers");
    let mut specs: Vec<(String, DriverSpec)> = Vec::new();
    let names: Vec<String> = if args.all_drivers {
        // A built-in name may also have a directory (reference-proto does).
        let mut names = registry::known_names(&drivers_dir);
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    } else if args.drivers.is_empty() && args.driver_cmds.is_empty() {
        vec!["reference".into()]
    } else {
        args.drivers.clone()
    };
    for name in names {
        if name == "bare" {
            continue; // always measured
        }
        let spec = registry::resolve_in(&drivers_dir, &name).map_err(Bad)?;
        specs.push((name, spec));
    }
    for cmd in &args.driver_cmds {
        specs.push((cmd.clone(), DriverSpec::command(cmd)));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut targets = Vec::new();
    for (label, spec) in specs {
        if !seen.insert(label.clone()) {
            return Err(Bad(format!("driver {label:?} is given twice")));
        }
        let factory = spec.factory(Some(&exe)).map_err(Bad)?;
        targets.push(Target { label, factory });
    }
    Ok(targets)
}

fn write_json(path: &Path, report: &impl Serialize) -> Result<(), Bad> {
    let mut text = serde_json::to_string_pretty(report)
        .map_err(|e| Bad(format!("failed to serialise the report: {e}")))?;
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|e| Bad(format!("failed to write {}: {e}", path.display())))?;
    say!("sandspec bench: wrote {}", path.display());
    Ok(())
}

/// The terminal table of a driver comparison.
pub fn render_drivers(r: &drivers::Report) -> String {
    let mut t = Table::new([
        "driver",
        "median µs",
        "p90 µs",
        "round trip µs",
        "method",
        "× bare",
    ]);
    t.row([
        "bare".to_string(),
        us(r.bare.median_us),
        us(r.bare.p90_us),
        "-".into(),
        "-".into(),
        "1.00".into(),
    ]);
    for d in &r.drivers {
        t.row([
            d.driver.clone(),
            us(d.median_us),
            us(d.p90_us),
            us(d.roundtrip_us),
            d.roundtrip_method.label().to_string(),
            times(d.ratio),
        ]);
    }
    let mut out = format!(
        "spawn of /bin/true: {} rounds, interleaved in shuffled order (seed {})\n{}\n\n",
        r.rounds,
        r.seed,
        r.machine.describe()
    );
    out.push_str(&t.render());
    out.push_str(
        "\nmedian and p90 are net of the protocol round trip timed in the same round;\n\
         × bare = median / bare median.\n",
    );
    for d in &r.drivers {
        if let Some(note) = &d.roundtrip_note {
            out.push_str(&format!("note: {}: {note}\n", d.driver));
        }
    }
    for s in &r.skipped {
        out.push_str(&format!(
            "skipped: {} ({:?}): {}\n",
            s.driver, s.stage, s.reason
        ));
    }
    out
}

/// The terminal tables of a scaling run.
pub fn render_scaling(r: &scaling::Report) -> String {
    let mut out = format!(
        "reference sandbox, spawn of /bin/true; seed {}\n{}\n\n",
        r.seed,
        r.machine.describe()
    );
    out.push_str(&format!(
        "allowlisted paths ({} rounds, interleaved with bare: median {} µs)\n",
        r.rounds,
        us(r.bare.median_us)
    ));
    let mut t = Table::new([
        "paths",
        "spawn µs",
        "p90 µs",
        "× bare",
        "build µs",
        "build+spawn µs",
        "× bare",
    ]);
    for p in &r.paths {
        t.row([
            p.paths.to_string(),
            us(p.median_us),
            us(p.p90_us),
            times(p.ratio),
            us(p.build.median_us),
            us(p.build_and_spawn_us),
            times(p.build_and_spawn_ratio),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "\nconcurrent spawns ({} bursts of {} spawns per thread count; medians per spawn)\n",
        r.bursts, r.spawns_per_burst
    ));
    let mut t = Table::new([
        "threads",
        "median µs",
        "p90 µs",
        "bare µs",
        "× bare",
        "spawns/s",
        "bare spawns/s",
    ]);
    for c in &r.concurrency {
        t.row([
            c.threads.to_string(),
            us(c.median_us),
            us(c.p90_us),
            us(c.bare.median_us),
            times(c.ratio),
            format!("{:.0}", c.per_second),
            format!("{:.0}", c.bare_per_second),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "\ncaller's heap ({} rounds; spawn under a prebuilt sandbox vs bare, same process)\n",
        r.memory_rounds
    ));
    let mut t = Table::new(["heap MiB", "median µs", "p90 µs", "bare µs", "× bare"]);
    for m in &r.memory {
        t.row([
            m.mib.to_string(),
            us(m.median_us),
            us(m.p90_us),
            us(m.bare.median_us),
            times(m.ratio),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// Progress on stderr: a line every tenth of the way.
struct Progress {
    last: Option<(String, usize)>,
}

impl Progress {
    fn new() -> Self {
        Progress { last: None }
    }

    fn step(&mut self, phase: &str, i: usize, n: usize) {
        let tenth = i * 10 / n.max(1);
        let key = (phase.to_string(), tenth);
        if self.last.as_ref() != Some(&key) && (tenth > 0 || i == n) {
            say!("  {phase}: {i}/{n}");
        }
        self.last = Some(key);
    }

    fn done(&mut self) {
        self.last = None;
    }
}
