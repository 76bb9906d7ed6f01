//! The summary table printed at the end of a run.

use std::fmt::Write as _;

use super::live::paint;
use super::RunInfo;
use crate::harness::status::{CaseResult, Counts, Status};

/// The table: the run, counts per status, then every case that did not
/// plainly pass, with its reason; last, the gate's verdict.
pub fn render(info: &RunInfo, results: &[CaseResult], color: bool) -> String {
    let c = Counts::of(results);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{} cases against driver {} ({} {}); kernel {}, Landlock {}",
        c.total(),
        info.driver,
        info.backend.name,
        info.backend.version,
        info.kernel.release,
        info.kernel.landlock
    );
    if let Some(min) = info.backend.landlock_minimum_unmet(info.kernel.landlock) {
        let _ = writeln!(
            s,
            "the backend requires Landlock ABI {min} or later and refuses every run on \
             this kernel: its cases are skipped, except those written for such kernels"
        );
    }
    for note in &info.notes {
        let _ = writeln!(s, "note: {note}");
    }
    let _ = writeln!(s, "  {:<6} {:>5}", "status", "cases");
    for st in Status::ALL {
        let _ = write!(s, "  {:<6} {:>5}", st.as_str(), c.get(st));
        if st == Status::Pass && c.mechanism_differs > 0 {
            let _ = write!(
                s,
                "  ({} by another mechanism: every property held)",
                c.mechanism_differs
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "{}", evidence_line(results));
    let differs: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.status == Status::Pass && !r.mechanism_differs.is_empty())
        .collect();
    if !differs.is_empty() {
        let _ = writeln!(s, "\npassed by another mechanism:");
        for r in differs {
            let _ = write!(s, "  {} {}", paint(r.status, color), r.id);
            if let Some(why) = &r.reason {
                let _ = write!(s, ": {why}");
            }
            s.push('\n');
        }
    }
    let others: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(s, "\nnot passed:");
        // Gate failures first, then skips and known failures.
        for group in [
            Status::Fail,
            Status::Error,
            Status::Xpass,
            Status::Xfail,
            Status::Skip,
        ] {
            for r in others.iter().filter(|r| r.status == group) {
                let _ = write!(s, "  {} {}", paint(r.status, color), r.id);
                if let Some(why) = &r.reason {
                    let _ = write!(s, ": {}", crate::escape::line(why));
                }
                if r.status == Status::Xfail {
                    if let Some(listed) = &r.expected_failure {
                        let _ = write!(s, " [expected: {listed}]");
                    }
                }
                s.push('\n');
            }
        }
    }
    if let Some(sig) = info.interrupted {
        let _ = writeln!(
            s,
            "\nresult: INTERRUPTED by {} ({} case(s) stopped or not run)",
            crate::harness::interrupt::name(sig),
            results
                .iter()
                .filter(|r| {
                    r.reason
                        .as_deref()
                        .is_some_and(|w| w.contains("the run was interrupted by"))
                })
                .count()
        );
    } else if c.gate_ok() {
        let _ = writeln!(s, "\nresult: ok");
    } else {
        let _ = writeln!(
            s,
            "\nresult: FAILED ({} fail, {} error, {} xpass)",
            c.fail, c.error, c.xpass
        );
    }
    s
}

/// How many isolation cases that ran rest on the harness's own
/// observation, and how many on the driver's word alone.
pub fn evidence_line(results: &[CaseResult]) -> String {
    let ran: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.is_isolation() && !matches!(r.status, Status::Skip | Status::Error))
        .collect();
    let word = ran.iter().filter(|r| r.evidence.driver_word_only()).count();
    format!(
        "evidence: of {} isolation cases run, {} rest on the harness's own observation, \
         {word} on the driver's word alone",
        ran.len(),
        ran.len() - word
    )
}
