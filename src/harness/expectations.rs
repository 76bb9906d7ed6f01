//! Expectation files (`--expect FILE`): a backend's known failures, each
//! with the reason observed.
//!
//! ```yaml
//! driver: sandlock
//! cases:
//!   fs.read.missing-path-filtered: "sandlock fails the whole run when an allowlisted path is missing"
//! ```
//!
//! Strict: unknown fields, and ids that are not in the corpus, are errors.
//! A listed case that fails is `xfail`; one that passes is `xpass`, which
//! fails the gate (the file is stale).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::status::{CaseResult, Status};

/// A parsed expectation file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The driver the file is for.
    pub driver: String,
    /// Case id → why it is known to fail.
    #[serde(default)]
    pub cases: BTreeMap<String, String>,
    /// The file, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Expectations {
    /// Reads and parses `path`; errors name `file:line:col`.
    pub fn load(path: &Path) -> Result<Expectations, String> {
        let text = crate::input::read_text(path).map_err(|e| e.to_string())?;
        crate::corpus::reject_yaml_tags(&text, path)?;
        let mut x: Expectations = serde_saphyr::from_str(&text).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            format!("{}:{l}:{c}: {e}", path.display())
        })?;
        x.path = path.to_path_buf();
        for (id, reason) in &x.cases {
            if reason.trim().is_empty() {
                return Err(format!(
                    "{}: case {id} has an empty reason: say what was observed",
                    path.display()
                ));
            }
        }
        Ok(x)
    }

    /// Checks the file against the corpus and the driver in use: unknown
    /// ids and another driver's file are errors.
    pub fn validate<'a>(
        &self,
        known_ids: impl IntoIterator<Item = &'a str>,
        driver_names: &[&str],
    ) -> Result<(), String> {
        let known: BTreeSet<&str> = known_ids.into_iter().collect();
        let unknown: Vec<&str> = self
            .cases
            .keys()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "{}: unknown case ids (not in the corpus): {}",
                self.path.display(),
                unknown.join(", ")
            ));
        }
        if !driver_names.contains(&self.driver.as_str()) {
            return Err(format!(
                "{}: this file is for driver {:?}, but the run uses {}",
                self.path.display(),
                self.driver,
                driver_names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        Ok(())
    }

    /// Turns a listed failure into xfail and a listed pass into xpass.
    /// Errors and skips stay what they are: a broken driver or an unmet
    /// requirement is not the known failure.
    pub fn apply(&self, r: &mut CaseResult) {
        let Some(listed) = self.cases.get(&r.id) else {
            return;
        };
        r.expected_failure = Some(listed.clone());
        match r.status {
            Status::Fail => r.status = Status::Xfail,
            Status::Pass => {
                r.status = Status::Xpass;
                r.reason = Some(format!(
                    "passed, but {} lists it as failing ({listed}): remove the entry",
                    self.path.display()
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(id: &str, status: Status) -> CaseResult {
        CaseResult {
            id: id.into(),
            path: PathBuf::new(),
            tags: vec![],
            status,
            reason: None,
            duration: Duration::ZERO,
            outcome: None,
            control_outcome: None,
            expected_failure: None,
            kept: vec![],
            survivors: vec![],
            control_survivors: vec![],
            refs: vec![],
        }
    }

    fn file(text: &str) -> Result<Expectations, String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.yaml");
        std::fs::write(&p, text).unwrap();
        Expectations::load(&p)
    }

    #[test]
    fn listed_failures_become_xfail_and_listed_passes_xpass() {
        let x = file("driver: sandlock\ncases:\n  a: known\n  b: known too\n").unwrap();
        let mut a = result("a", Status::Fail);
        let mut b = result("b", Status::Pass);
        let mut c = result("c", Status::Fail);
        x.apply(&mut a);
        x.apply(&mut b);
        x.apply(&mut c);
        assert_eq!(a.status, Status::Xfail);
        assert_eq!(b.status, Status::Xpass);
        assert!(b.reason.unwrap().contains("known too"));
        assert_eq!(c.status, Status::Fail);
        assert!(!Status::Xpass.is_ok());
    }

    #[test]
    fn unknown_ids_fields_and_drivers_are_errors() {
        let x = file("driver: sandlock\ncases:\n  nope: reason\n").unwrap();
        let e = x.validate(["a"], &["sandlock"]).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = x.validate(["nope"], &["bwrap"]).unwrap_err();
        assert!(e.contains("bwrap"), "{e}");
        assert!(x.validate(["nope"], &["sandlock"]).is_ok());
        let e = file("driver: x\ncase:\n  a: b\n").unwrap_err();
        assert!(e.contains("x.yaml:2:"), "{e}");
        assert!(file("driver: x\ncases:\n  a: ''\n").is_err());
    }
}
