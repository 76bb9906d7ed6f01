//! `sandspec run`: the corpus against a driver, with live progress, a
//! summary, and optional JSON and JUnit reports.

use std::path::{Path, PathBuf};

use clap::Args;
use regex::Regex;

use super::EXIT_USAGE;
use crate::corpus::case::Tag;
use crate::corpus::{self, LoadedCase};
use crate::driver::registry::{self, DriverSpec};
use crate::driver::DriverFactory;
use crate::harness::expectations::Expectations;
use crate::harness::report::{json, junit, live::Live, summary, use_color, RunInfo};
use crate::harness::{interrupt, select, Counts, Harness, HarnessConfig};

/// Arguments of `sandspec run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The driver: `reference` (default), `none`, `reference-proto`, or a
    /// name under conformance/drivers/.
    #[arg(long, value_name = "NAME", conflicts_with = "driver_cmd")]
    pub driver: Option<String>,
    /// An external driver speaking the protocol (conformance/PROTOCOL.md),
    /// run with `sh -c CMD`.
    #[arg(long, value_name = "CMD")]
    pub driver_cmd: Option<String>,
    /// A case file or a directory of them (default: ./conformance, else the
    /// corpus shipped with sandspec).
    #[arg(long, value_name = "PATH")]
    pub cases: Option<PathBuf>,
    /// Only cases whose id matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Only cases with this tag (repeatable: any of them).
    #[arg(long, value_name = "T")]
    pub tag: Vec<Tag>,
    /// Cases run in parallel (default: the number of CPUs).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Known failures of this driver (YAML: `{driver: NAME, cases: {ID: REASON}}`).
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Write a JSON report (docs/json-report.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Keep each case's scratch directory.
    #[arg(long)]
    pub keep: bool,
    /// Size limits on what a case generates.
    #[command(flatten)]
    pub limits: super::CaseLimitArgs,
    /// Hold the backend to the case's mechanisms (errno, exit code, the
    /// probe's word) as well as its properties, as the reference drivers
    /// always are. Without it, a case whose properties all held passes
    /// with the note "mechanism differs".
    #[arg(long)]
    pub hold_mechanism: bool,
}

/// Runs `sandspec run`: 0 when everything passed, skipped or failed as
/// expected; 1 on a failure, error or unexpected pass; 2 on bad input.
pub fn exec(args: RunArgs) -> i32 {
    // Before any thread or child is started: CI cancels a job with SIGINT,
    // then SIGTERM; both stop the run in order (see harness::interrupt).
    if let Err(e) = interrupt::install() {
        say!("sandspec: failed to install the interrupt handlers: {e}");
        return EXIT_USAGE;
    }
    let code = match run(args) {
        Ok(code) => code,
        Err(msg) => {
            say!("sandspec: {msg}");
            EXIT_USAGE
        }
    };
    // Interrupted, the run exits as a process killed by the signal would
    // be reported (130 for SIGINT, 143 for SIGTERM), whatever it got to.
    match interrupt::requested() {
        Some(sig) => interrupt::exit_code(sig),
        None => code,
    }
}

fn run(args: RunArgs) -> Result<i32, String> {
    let path = args.cases.clone().unwrap_or_else(corpus::default_cases_dir);
    let all = load_cases(&path, &args.limits.limits())?;
    let filter = args
        .filter
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| format!("invalid --filter regex: {e}"))?;
    let spec = match &args.driver_cmd {
        Some(cmd) => DriverSpec::command(cmd),
        None => registry::resolve(args.driver.as_deref().unwrap_or("reference"))?,
    };
    let exe = std::env::current_exe()
        .map_err(|e| format!("failed to locate the sandspec executable: {e}"))?;
    let probe = HarnessConfig::probe_beside_current_exe()
        .map_err(|e| format!("failed to locate the probe binary: {e}"))?;
    HarnessConfig::build_missing_probe(&probe)?;
    let factory = spec.factory(Some(&exe))?;
    let backend = preflight(factory.as_ref())?;
    let expectations = match &args.expect {
        None => None,
        Some(p) => {
            let x = Expectations::load(p)?;
            x.validate(
                all.iter().map(|c| c.case.id.as_str()),
                &[spec.name().as_str(), backend.name.as_str()],
            )?;
            Some(x)
        }
    };
    let cases = select::select(all, filter.as_ref(), &args.tag);
    if cases.is_empty() {
        return Err(format!(
            "no case in {} matches the --filter/--tag selection",
            crate::escape::path(&path)
        ));
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut config = HarnessConfig::new(probe);
    config.keep = args.keep;
    // The reference is held to both: its mechanisms are the corpus's.
    config.hold_mechanism =
        args.hold_mechanism || matches!(spec, DriverSpec::Reference | DriverSpec::ReferenceProto);
    let harness =
        Harness::new(config).map_err(|e| format!("failed to start the harness runtime: {e}"))?;
    let info_backend_name = backend.name.clone();
    let mut info = RunInfo {
        driver: spec.name(),
        backend,
        kernel: crate::kernel::probe(),
        interrupted: None,
        notes: notes(&spec.name(), &info_backend_name),
    };
    println!(
        "running {} case(s) against driver {} ({} {}), {} job(s)",
        cases.len(),
        info.driver,
        info.backend.name,
        info.backend.version,
        jobs
    );
    let mut live = Live::new(cases.len());
    let results = harness.run_all(
        &cases,
        factory.as_ref(),
        jobs,
        expectations.as_ref(),
        &mut |r| live.on_result(r),
    );
    live.finish();
    info.interrupted = interrupt::requested();
    use std::io::IsTerminal;
    print!(
        "{}",
        summary::render(&info, &results, use_color(std::io::stdout().is_terminal()))
    );
    // Without a cgroup per run, say what finding survivors rests on.
    if let Some(t) = crate::oracle::tracker::Tracking::started() {
        if !t.has_cgroups() {
            println!("survivors: {}", t.describe());
        }
    }
    if let Some(p) = &args.json {
        json::write(p, &json::build(&info, &results))?;
    }
    if let Some(p) = &args.junit {
        junit::write(p, &info, &results)?;
    }
    Ok(if Counts::of(&results).gate_ok() { 0 } else { 1 })
}

fn load_cases(path: &Path, limits: &corpus::bounds::CaseLimits) -> Result<Vec<LoadedCase>, String> {
    corpus::load_with(path, limits).map_err(|e| {
        format!(
            "failed to load cases from {}: {} problem(s):\n{e}",
            crate::escape::path(path),
            e.problems.len()
        )
    })
}

/// Notes for the reports: where the reference sandbox's process limit is
/// RLIMIT_NPROC (a user without a delegated pids cgroup), it counts every
/// process of the uid, not the case's alone.
fn notes(driver: &str, backend: &str) -> Vec<String> {
    let reference = backend == crate::driver::reference::BACKEND_NAME
        || matches!(driver, "reference" | "reference-proto");
    if !reference {
        return Vec::new();
    }
    let policy = crate::policy::Policy {
        limits: crate::policy::Limits {
            processes: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    match crate::sandbox::Sandbox::new(&policy) {
        Ok(sb) if sb.process_limit_is_uid_wide() => vec![uid_wide_note("limits.processes")],
        _ => Vec::new(),
    }
}

/// The sentence saying a process limit is counted over the whole uid.
pub fn uid_wide_note(what: &str) -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    format!(
        "{what} is enforced with RLIMIT_NPROC, which counts every process of uid {uid}, \
         not the command's alone (no pids cgroup is delegated to this user): other \
         processes of the uid use up the limit"
    )
}

/// Starts one instance and shakes hands, so a driver that cannot even start
/// is a configuration error (exit 2), not one error per case.
fn preflight(factory: &dyn DriverFactory) -> Result<crate::driver::Hello, String> {
    let mut d = factory.spawn(None).map_err(|e| e.to_string())?;
    d.hello().map_err(|e| e.to_string())
}
