//! `sandspec mutants`: the corpus's mutation score. The corpus runs
//! against the reference sandbox, then against each mutant of it (one
//! enforcement mechanism switched off, `sandspec::sandbox::Mutant`), and
//! every mechanism is listed with the cases that caught it. A mutant no case
//! catches survived: nothing in the corpus would notice that mechanism
//! break.

use std::path::PathBuf;

use clap::Args;
use regex::Regex;

use super::EXIT_USAGE;
use crate::corpus;
use crate::driver::reference::ReferenceFactory;
use crate::harness::mutants::reference_mutants;
use crate::harness::{select, Harness, HarnessConfig};

/// Arguments of `sandspec mutants`.
#[derive(Debug, Args)]
pub struct MutantsArgs {
    /// A case file or a directory of them (default: as `sandspec run`).
    #[arg(long, value_name = "PATH")]
    pub cases: Option<PathBuf>,
    /// Only these mutants (repeatable; default: every one).
    #[arg(long = "mutant", value_name = "NAME")]
    pub mutants: Vec<String>,
    /// Only cases whose id matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Cases run in parallel (default: the number of CPUs).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Also write the table as Markdown (mechanism → the cases that
    /// caught it), e.g. for the README.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// Runs `sandspec mutants`: 0 when every applicable mutant was caught, 1
/// when one survived or a case did not pass unmutated, 2 on bad input.
pub fn exec(args: MutantsArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("sandspec: {msg}");
            EXIT_USAGE
        }
    }
}

fn run(args: MutantsArgs) -> Result<i32, String> {
    let path = args.cases.clone().unwrap_or_else(corpus::default_cases_dir);
    let all = corpus::load(&path)
        .map_err(|e| format!("failed to load cases from {}: {e}", path.display()))?;
    let filter = args
        .filter
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| format!("invalid --filter regex: {e}"))?;
    let cases = select::select(all, filter.as_ref(), &[]);
    if cases.is_empty() {
        return Err(format!("no case in {} matches --filter", path.display()));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("failed to locate the sandspec executable: {e}"))?;
    let probe = HarnessConfig::probe_beside_current_exe()
        .map_err(|e| format!("failed to locate the probe binary: {e}"))?;
    HarnessConfig::build_missing_probe(&probe)?;
    let harness = Harness::new(HarnessConfig::new(probe))
        .map_err(|e| format!("failed to start the harness runtime: {e}"))?;
    let abi = harness.host().landlock.abi().ok_or_else(|| {
        format!(
            "failed to run the mutants: the reference needs Landlock, and this kernel's is {}",
            harness.host().landlock
        )
    })?;
    let mut mutants = reference_mutants(Some(exe.clone()), abi, harness.host().euid);
    if !args.mutants.is_empty() {
        for want in &args.mutants {
            if !mutants.iter().any(|m| &m.name == want) {
                let names: Vec<&str> = mutants.iter().map(|m| m.name.as_str()).collect();
                return Err(format!(
                    "unknown mutant {want:?}: expected one of {}",
                    names.join(", ")
                ));
            }
        }
        mutants.retain(|m| args.mutants.contains(&m.name));
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    println!(
        "{} case(s) against the reference, then against {} mutant(s), {} job(s)",
        cases.len(),
        mutants.len(),
        jobs
    );
    let baseline = ReferenceFactory::new(Some(exe));
    let score = harness.mutation_score(&cases, &baseline, &mutants, jobs, &mut |m| {
        let verdict = match (&m.not_applicable, m.caught_by.len()) {
            (Some(_), _) => "n/a".to_string(),
            (None, 0) => "SURVIVED".to_string(),
            (None, n) => format!("caught by {n}"),
        };
        println!("  {:<24} {verdict}", m.name);
    });
    print!("\n{}", score.text());
    if let Some(p) = &args.markdown {
        std::fs::write(p, score.markdown())
            .map_err(|e| format!("failed to write {}: {e}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(
        if score.survivors().is_empty() && score.baseline_not_passed.is_empty() {
            0
        } else {
            1
        },
    )
}
