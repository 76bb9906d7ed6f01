//! Verdicts: one [`CaseResult`] per case, with a [`Status`] and its reason.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{CheckFailure, Evidence, RestsOn};
use super::expectations::Listed;
use crate::corpus::case::Tag;
use crate::corpus::LoadedCase;
use crate::policy::Outcome;

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every expectation held, and the control (if any) succeeded; or,
    /// for a backend not held to the reference's mechanisms, every
    /// property held and only mechanisms differed
    /// ([`CaseResult::mechanism_differs`] says which).
    Pass,
    /// An expectation did not hold; the reason names the first mismatch.
    Fail,
    /// The harness or the driver broke; never counted as a pass.
    Error,
    /// A requirement is unmet; the reason says which.
    Skip,
    /// Failed, and listed as a known failure in the expectation file.
    Xfail,
    /// Passed although listed as a known failure: the expectation is stale.
    Xpass,
}

impl Status {
    /// Every status, in report order.
    pub const ALL: [Status; 6] = [
        Status::Pass,
        Status::Fail,
        Status::Error,
        Status::Skip,
        Status::Xfail,
        Status::Xpass,
    ];

    /// True when this status does not fail the gate.
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Pass | Status::Skip | Status::Xfail)
    }

    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Skip => "skip",
            Status::Xfail => "xfail",
            Status::Xpass => "xpass",
        }
    }

    /// Uppercase label for people.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skip => "SKIP",
            Status::Xfail => "XFAIL",
            Status::Xpass => "XPASS",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case id.
    pub id: String,
    /// The case file.
    pub path: PathBuf,
    /// The case's tags.
    pub tags: Vec<Tag>,
    /// The verdict.
    pub status: Status,
    /// Why, for every status but a plain pass.
    pub reason: Option<String>,
    /// Wall time of the whole case (setup, run, control, checks).
    pub duration: Duration,
    /// The outcome of the run under test, when it ran.
    pub outcome: Option<Outcome>,
    /// The outcome of the control run, when it ran.
    pub control_outcome: Option<Outcome>,
    /// The expectation file's reason, when the case is listed there.
    pub expected_failure: Option<String>,
    /// The expectation file's entry that applied, when the case is listed.
    pub expected: Option<Listed>,
    /// Every check that failed in the run that decided the verdict (the
    /// run under test, or the control's, prefixed `control.`).
    pub failures: Vec<CheckFailure>,
    /// A pass whose properties all held while mechanisms differed from
    /// the case's (e.g. ECONNREFUSED instead of EACCES): those checks.
    pub mechanism_differs: Vec<CheckFailure>,
    /// What the verdict rests on: the case's checks, by kind.
    pub evidence: Evidence,
    /// Property checks that could observe nothing on this backend or host
    /// (read canaries behind a read-only mount): the verdict did not rest
    /// on them.
    pub unobserved: Vec<String>,
    /// Scratch directories kept by `--keep`.
    pub kept: Vec<PathBuf>,
    /// Processes the run under test left alive (killed since).
    pub survivors: Vec<crate::oracle::tracker::Survivor>,
    /// Processes the control run left alive (killed since).
    pub control_survivors: Vec<crate::oracle::tracker::Survivor>,
    /// The case's upstream references (`refs:`).
    pub refs: Vec<String>,
}

impl CaseResult {
    /// A result for `lc` before it ran: a pass with nothing observed yet.
    pub fn new(lc: &LoadedCase) -> CaseResult {
        CaseResult {
            id: lc.case.id.clone(),
            path: lc.path.clone(),
            tags: lc.case.tags.clone(),
            status: Status::Pass,
            reason: None,
            duration: Duration::ZERO,
            outcome: None,
            control_outcome: None,
            expected_failure: None,
            expected: None,
            failures: Vec::new(),
            mechanism_differs: Vec::new(),
            evidence: Evidence::of(&lc.case.expect),
            unobserved: Vec::new(),
            kept: Vec::new(),
            survivors: Vec::new(),
            control_survivors: Vec::new(),
            refs: lc.case.refs.clone(),
        }
    }

    /// What this verdict rests on: the harness's observation, unless every
    /// property check of the case observed nothing here.
    pub fn rests_on(&self) -> RestsOn {
        let observed = self
            .evidence
            .property
            .iter()
            .any(|p| !self.unobserved.contains(p));
        if observed {
            RestsOn::Observed
        } else {
            RestsOn::Driver
        }
    }

    /// True for an `isolation` case.
    pub fn is_isolation(&self) -> bool {
        self.tags.contains(&Tag::Isolation)
    }
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passes whose mechanisms differed (counted in `pass` too).
    pub mechanism_differs: usize,
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Errored.
    pub error: usize,
    /// Skipped.
    pub skip: usize,
    /// Expected failures.
    pub xfail: usize,
    /// Unexpected passes.
    pub xpass: usize,
}

impl Counts {
    /// Counts `results`.
    pub fn of(results: &[CaseResult]) -> Counts {
        let mut c = Counts::default();
        for r in results {
            *c.get_mut(r.status) += 1;
            if r.status == Status::Pass && !r.mechanism_differs.is_empty() {
                c.mechanism_differs += 1;
            }
        }
        c
    }

    /// The count for `s`.
    pub fn get(&self, s: Status) -> usize {
        match s {
            Status::Pass => self.pass,
            Status::Fail => self.fail,
            Status::Error => self.error,
            Status::Skip => self.skip,
            Status::Xfail => self.xfail,
            Status::Xpass => self.xpass,
        }
    }

    fn get_mut(&mut self, s: Status) -> &mut usize {
        match s {
            Status::Pass => &mut self.pass,
            Status::Fail => &mut self.fail,
            Status::Error => &mut self.error,
            Status::Skip => &mut self.skip,
            Status::Xfail => &mut self.xfail,
            Status::Xpass => &mut self.xpass,
        }
    }

    /// True when nothing fails the gate.
    pub fn gate_ok(&self) -> bool {
        self.fail == 0 && self.error == 0 && self.xpass == 0
    }

    /// All cases.
    pub fn total(&self) -> usize {
        Status::ALL.iter().map(|s| self.get(*s)).sum()
    }
}
