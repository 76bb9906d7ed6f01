//! JUnit XML (`--junit FILE`) for CI: one test suite (the driver), one test
//! case per case. fail and xpass are `failure`, error is `error`, skip is
//! `skipped` with its reason; xfail is a success whose output says it is a
//! known failure (the gate does not fail on it).

use std::path::Path;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::RunInfo;
use crate::harness::status::{CaseResult, Status};

/// Builds the XML document.
pub fn render(info: &RunInfo, results: &[CaseResult]) -> Result<String, String> {
    let mut suite = TestSuite::new(format!("sandspec ({})", info.driver));
    suite.add_property(Property::new("driver", info.driver.clone()));
    suite.add_property(Property::new(
        "backend",
        format!("{} {}", info.backend.name, info.backend.version),
    ));
    suite.add_property(Property::new("kernel", info.kernel.release.clone()));
    suite.add_property(Property::new("landlock", info.kernel.landlock.to_string()));
    for note in &info.notes {
        suite.add_property(Property::new("note", note.clone()));
    }
    if let Some(sig) = info.interrupted {
        suite.add_property(Property::new(
            "interrupted",
            crate::harness::interrupt::name(sig),
        ));
    }
    let mut total = std::time::Duration::ZERO;
    for r in results {
        total += r.duration;
        let reason = r.reason.clone().unwrap_or_default();
        let status = match r.status {
            Status::Pass | Status::Xfail => TestCaseStatus::success(),
            Status::Skip => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(reason.clone());
                s
            }
            Status::Fail | Status::Xpass => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(reason.clone()).set_type(r.status.as_str());
                s
            }
            Status::Error => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(reason.clone()).set_type("error");
                s
            }
        };
        let mut tc = TestCase::new(r.id.clone(), status);
        let area = r.id.split('.').next().unwrap_or("case");
        tc.set_classname(format!("sandspec.{area}"));
        tc.set_time(r.duration);
        if r.status == Status::Xfail {
            tc.set_system_out(format!(
                "known failure (expected: {}): {reason}",
                r.expected_failure.clone().unwrap_or_default()
            ));
        } else if r.status == Status::Pass && !r.mechanism_differs.is_empty() {
            tc.set_system_out(reason.clone());
        }
        tc.add_property(Property::new("rests_on", r.rests_on().as_str()));
        for f in &r.failures {
            tc.add_property(Property::new(
                "failed",
                format!("{}: {}", f.check, f.observed),
            ));
        }
        for f in &r.mechanism_differs {
            tc.add_property(Property::new(
                "mechanism_differs",
                format!("{}: {}", f.check, f.observed),
            ));
        }
        suite.add_test_case(tc);
    }
    suite.set_time(total);
    let mut report = Report::new("sandspec");
    report.add_test_suite(suite);
    report
        .to_string()
        .map_err(|e| format!("failed to render JUnit XML: {e}"))
}

/// Writes the XML to `path`.
pub fn write(path: &Path, info: &RunInfo, results: &[CaseResult]) -> Result<(), String> {
    let xml = render(info, results)?;
    std::fs::write(path, xml)
        .map_err(|e| format!("failed to write {}: {e}", crate::escape::path(path)))
}
