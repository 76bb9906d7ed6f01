//! The JSON report (`--json FILE`), format `sandspec-report` version 1.
//! docs/json-report.md documents every field; they only ever get added to
//! within a version, so readers should ignore fields they do not know.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunInfo;
use crate::harness::check::{CheckFailure, Evidence, RestsOn};
use crate::harness::expectations::Listed;
use crate::harness::status::{CaseResult, Counts, Status};
use crate::kernel::KernelFacts;
use crate::oracle::tracker::{Survivor, Tracking};
use crate::policy::Outcome;

/// The value of [`RunReport::format`].
pub const FORMAT: &str = "sandspec-report";
/// The value of [`RunReport::format_version`].
pub const FORMAT_VERSION: u32 = 1;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The sandspec version that ran the suite.
    pub suite_version: String,
    /// Seconds since the epoch when the report was written.
    pub generated_unix: u64,
    /// The driver and backend every case ran against.
    pub driver: DriverInfo,
    /// The kernel every case ran on.
    pub kernel: KernelFacts,
    /// The signal that interrupted the run (`"SIGINT"`, `"SIGTERM"`,
    /// `"SIGHUP"`); absent when it ran to the end. The cases it stopped or
    /// kept from running are `error`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// What a reader must know to read the verdicts right, one sentence
    /// each (e.g. that `limits.processes` was counted over the whole uid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Counts per status.
    pub counts: CountsJson,
    /// How survivors were found in this run: which finders worked on this
    /// host, and what the fallback cannot tell (no cgroup as non-root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_tracking: Option<String>,
    /// Every selected case, in corpus order.
    pub cases: Vec<CaseJson>,
}

/// The driver section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// As selected: `reference`, `none`, a registry name, or a command line.
    pub name: String,
    /// The backend's own name, from its handshake.
    pub backend: String,
    /// The backend's version, from its handshake.
    pub version: String,
    /// The capabilities it claimed.
    pub capabilities: Vec<String>,
    /// The lowest Landlock ABI it runs on, if it declared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_landlock_abi: Option<u32>,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsJson {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Errored.
    pub error: usize,
    /// Skipped.
    pub skip: usize,
    /// Known failures.
    pub xfail: usize,
    /// Unexpected passes.
    pub xpass: usize,
    /// Passes whose properties all held while mechanisms differed
    /// (counted in `pass` too).
    #[serde(default)]
    pub mechanism_differs: usize,
}

/// One case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseJson {
    /// Stable case id.
    pub id: String,
    /// `pass`, `fail`, `error`, `skip`, `xfail` or `xpass`.
    pub status: Status,
    /// Why (null for a plain pass).
    pub reason: Option<String>,
    /// Wall time of the whole case, in microseconds.
    pub duration_us: u64,
    /// The outcome of the run under test (null when it did not run).
    pub outcome: Option<Outcome>,
    /// The outcome of the control run (null when there is none or it did
    /// not run).
    pub control_outcome: Option<Outcome>,
    /// The reason from the expectation file, when the case is listed.
    pub expected_failure: Option<String>,
    /// The case's tags.
    pub tags: Vec<String>,
    /// The case file.
    pub file: PathBuf,
    /// Processes the run under test left alive (each killed afterwards):
    /// pid, comm, and how the harness found it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub survivors: Vec<Survivor>,
    /// The same for the control run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_survivors: Vec<Survivor>,
    /// The case's upstream references (CVE ids, advisories, issue URLs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// What the verdict rests on: `observed` (some check is the harness's
    /// own observation of the host) or `driver` (only the driver's word).
    pub rests_on: RestsOn,
    /// The case's checks, by kind.
    pub evidence: Evidence,
    /// Property checks that observed nothing on this backend or host (a
    /// read canary behind a read-only mount): the verdict did not rest on
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobserved: Vec<String>,
    /// Every check that failed in the run that decided the verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<CheckFailure>,
    /// For a pass: the mechanism checks that differed while every
    /// property held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mechanism_differs: Vec<CheckFailure>,
    /// The expectation file's entry, when the case is listed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Listed>,
}

/// Builds the report.
pub fn build(info: &RunInfo, results: &[CaseResult]) -> RunReport {
    let c = Counts::of(results);
    RunReport {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        suite_version: env!("CARGO_PKG_VERSION").into(),
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        driver: DriverInfo {
            name: info.driver.clone(),
            backend: info.backend.name.clone(),
            version: info.backend.version.clone(),
            capabilities: info
                .backend
                .capabilities
                .iter()
                .map(|c| crate::corpus::vocab::capability_name(*c))
                .collect(),
            requires_landlock_abi: info.backend.requires_landlock_abi,
        },
        kernel: info.kernel.clone(),
        interrupted: info.interrupted.map(crate::harness::interrupt::name),
        notes: info.notes.clone(),
        counts: CountsJson {
            pass: c.pass,
            fail: c.fail,
            error: c.error,
            skip: c.skip,
            xfail: c.xfail,
            xpass: c.xpass,
            mechanism_differs: c.mechanism_differs,
        },
        survivor_tracking: Tracking::started().map(Tracking::describe),
        cases: results
            .iter()
            .map(|r| CaseJson {
                id: r.id.clone(),
                status: r.status,
                reason: r.reason.clone(),
                duration_us: r.duration.as_micros() as u64,
                outcome: r.outcome.clone(),
                control_outcome: r.control_outcome.clone(),
                expected_failure: r.expected_failure.clone(),
                tags: r
                    .tags
                    .iter()
                    .map(|t| crate::corpus::vocab::tag_name(*t))
                    .collect(),
                file: r.path.clone(),
                survivors: r.survivors.clone(),
                control_survivors: r.control_survivors.clone(),
                refs: r.refs.clone(),
                rests_on: r.rests_on(),
                unobserved: r.unobserved.clone(),
                evidence: r.evidence.clone(),
                failures: r.failures.clone(),
                mechanism_differs: r.mechanism_differs.clone(),
                expected: r.expected.clone(),
            })
            .collect(),
    }
}

/// Writes the report to `path`.
pub fn write(path: &Path, report: &RunReport) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(report)
        .map_err(|e| format!("failed to serialise the JSON report: {e}"))?;
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|e| format!("failed to write {}: {e}", crate::escape::path(path)))
}

/// Reads a report written by [`write`] (for matrices and diffs).
pub fn read(path: &Path) -> Result<RunReport, String> {
    let text = crate::input::read_text(path).map_err(|e| e.to_string())?;
    let r: RunReport = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: {e}",
            crate::escape::path(path),
            e.line(),
            e.column()
        )
    })?;
    if r.format != FORMAT || r.format_version != FORMAT_VERSION {
        return Err(format!(
            "{}: not a {FORMAT} version {FORMAT_VERSION} file (format {:?} version {})",
            crate::escape::path(path),
            r.format,
            r.format_version
        ));
    }
    Ok(r)
}
