//! What a verdict is made of: the checks of a case's `expect`, each either
//! a *property* (what the harness itself observed on the host: an oracle's
//! count, a host file, the victim, survivors) or a *mechanism* (what the
//! driver reported: the outcome, the probe's JSON line, the output), and
//! the checks that failed, each with a fingerprint of what was observed
//! that stays the same from run to run (expectation files key on it).

use serde::{Deserialize, Serialize};

use crate::corpus::case::{Expect, OracleKind};
use crate::corpus::vocab::oracle_name;

/// Which side of a case a check is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Observed by the harness on the host (oracles, host files, the
    /// victim, survivors): the isolation property itself.
    Property,
    /// The driver's or the command's word (outcome, exit code, errno, the
    /// probe's report, the output): how the backend got there.
    Mechanism,
}

impl CheckKind {
    /// `property` or `mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Property => "property",
            CheckKind::Mechanism => "mechanism",
        }
    }
}

/// One check that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFailure {
    /// Which check: `outcome`, `probe.errno`, `oracle.tcp.received`,
    /// `host.absent`, `survivors`, `stdout.contains`, …; a control run's
    /// checks are prefixed `control.`.
    pub check: String,
    /// Property or mechanism.
    pub kind: CheckKind,
    /// A stable fingerprint of what was observed (`exited 137`,
    /// `ECONNREFUSED`, `>0`, `exists`): no pids, ports, paths or timings.
    pub observed: String,
    /// The whole story, for people.
    pub message: String,
    /// The harness saw the isolation broken (traffic arrived, a host file
    /// changed or appeared, the victim died, processes outlived the run).
    /// Such a failure is never excused by an expectation file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leak: bool,
}

impl CheckFailure {
    /// A mechanism failure (no leak).
    pub fn mechanism(
        check: impl Into<String>,
        observed: impl Into<String>,
        message: String,
    ) -> Self {
        CheckFailure {
            check: check.into(),
            kind: CheckKind::Mechanism,
            observed: observed.into(),
            message,
            leak: false,
        }
    }

    /// A property failure; `leak` when it shows the isolation broken.
    pub fn property(
        check: impl Into<String>,
        observed: impl Into<String>,
        message: String,
        leak: bool,
    ) -> Self {
        CheckFailure {
            check: check.into(),
            kind: CheckKind::Property,
            observed: observed.into(),
            message,
            leak,
        }
    }

    /// `probe.errno: ECONNREFUSED`.
    pub fn fingerprint(&self) -> String {
        format!("{}: {}", self.check, self.observed)
    }

    /// The same failure seen in a control run: `control.` before the
    /// check, and never a leak (the control lifts the restriction).
    pub fn in_control(mut self) -> Self {
        self.check = format!("control.{}", self.check);
        self.leak = false;
        self
    }
}

/// The result of checking one run against an `expect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Every check that failed, in the order the checks run.
    pub failures: Vec<CheckFailure>,
}

impl Evaluation {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// True when some failure is a leak.
    pub fn leaked(&self) -> bool {
        self.failures.iter().any(|f| f.leak)
    }

    /// True when only mechanism checks failed.
    pub fn mechanism_only(&self) -> bool {
        !self.failures.is_empty() && self.failures.iter().all(|f| f.kind == CheckKind::Mechanism)
    }

    /// One line: leaks first, then the first failure; the others named.
    pub fn reason(&self) -> Option<String> {
        describe(&self.failures)
    }
}

/// One line for a list of failures: the first leak (else the first
/// failure) in full, then how many more and which checks.
pub fn describe(failures: &[CheckFailure]) -> Option<String> {
    let first = failures
        .iter()
        .find(|f| f.leak)
        .or_else(|| failures.first())?;
    let mut s = first.message.clone();
    let others: Vec<&str> = failures
        .iter()
        .filter(|f| !std::ptr::eq(*f, first))
        .map(|f| f.check.as_str())
        .collect();
    if !others.is_empty() {
        s.push_str(&format!(
            " (also failed: {})",
            dedup_in_order(others).join(", ")
        ));
    }
    Some(s)
}

fn dedup_in_order(v: Vec<&str>) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// What a case's verdict rests on: the checks of its `expect`, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Property checks (host observations), e.g. `oracle.tcp.received`.
    pub property: Vec<String>,
    /// Mechanism checks (the driver's word), e.g. `probe.errno`.
    pub mechanism: Vec<String>,
}

impl Evidence {
    /// The checks `expect` makes, by kind (the order [`crate::harness::evaluate`] runs them in).
    pub fn of(expect: &Expect) -> Evidence {
        let mut e = Evidence::default();
        let mut m = |s: &str| e.mechanism.push(s.to_string());
        if expect.outcome.is_some() {
            m("outcome");
        }
        if let Some(p) = &expect.probe {
            if p.ok.is_some() {
                m("probe.ok");
            }
            if !p.errno.is_empty() {
                m("probe.errno");
            }
            if p.value.is_some() {
                m("probe.value");
            }
        }
        if expect.filtered_paths.is_some() {
            m("filtered_paths");
        }
        if expect.output_truncated.is_some() {
            m("output_truncated");
        }
        if expect.stdout.is_some() {
            m("stdout");
        }
        if expect.stderr.is_some() {
            m("stderr");
        }
        for (kind, om) in &expect.oracles {
            if om.received.is_some() {
                e.property
                    .push(format!("oracle.{}.received", oracle_name(*kind)));
            }
            if om.alive.is_some() {
                e.property
                    .push(format!("oracle.{}.alive", oracle_name(*kind)));
            }
            if om.connected.is_some() {
                e.property
                    .push(format!("oracle.{}.connected", oracle_name(*kind)));
            }
        }
        if let Some(h) = &expect.host {
            for (field, used) in [
                ("host.absent", !h.absent.is_empty()),
                ("host.present", !h.present.is_empty()),
                ("host.content", !h.content.is_empty()),
                ("host.mode", !h.mode.is_empty()),
                ("host.owner", !h.owner.is_empty()),
                ("host.objects_left", h.objects_left.is_some()),
                ("host.unread", !h.unread.is_empty()),
                ("host.read", !h.read.is_empty()),
            ] {
                if used {
                    e.property.push(field.into());
                }
            }
        }
        // Every run is checked for survivors; a case relies on it only
        // when it says so.
        if expect.no_survivors || expect.survivors.is_some() {
            e.property.push("survivors".into());
        }
        e
    }

    /// True when nothing the harness observes itself backs the verdict.
    pub fn driver_word_only(&self) -> bool {
        self.property.is_empty()
    }

    /// `observed` or `driver`: what the verdict rests on.
    pub fn rests_on(&self) -> RestsOn {
        if self.driver_word_only() {
            RestsOn::Driver
        } else {
            RestsOn::Observed
        }
    }
}

/// What a case's verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestsOn {
    /// At least one check is the harness's own observation of the host.
    Observed,
    /// Every check is the driver's (or the command's) word: a driver that
    /// lies can pass it.
    Driver,
}

impl RestsOn {
    /// `observed` or `driver`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestsOn::Observed => "observed",
            RestsOn::Driver => "driver",
        }
    }
}

/// `oracle.tcp.received`.
pub fn oracle_check(kind: OracleKind, field: &str) -> String {
    format!("oracle.{}.{field}", oracle_name(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(check: &str, leak: bool) -> CheckFailure {
        CheckFailure {
            check: check.into(),
            kind: if leak {
                CheckKind::Property
            } else {
                CheckKind::Mechanism
            },
            observed: "x".into(),
            message: format!("{check} failed"),
            leak,
        }
    }

    #[test]
    fn the_reason_leads_with_a_leak_and_names_the_other_checks() {
        let e = Evaluation {
            failures: vec![f("outcome", false), f("oracle.tcp.received", true)],
        };
        assert_eq!(
            e.reason().unwrap(),
            "oracle.tcp.received failed (also failed: outcome)"
        );
        assert!(e.leaked());
        assert!(!e.mechanism_only());
        let m = Evaluation {
            failures: vec![f("probe.errno", false)],
        };
        assert!(m.mechanism_only());
        assert!(Evaluation::default().reason().is_none());
    }

    #[test]
    fn evidence_sorts_checks_into_property_and_mechanism() {
        let x: Expect = serde_saphyr::from_str(
            "outcome: {exited: {code: 1}}\nprobe: {ok: false, errno: [EACCES]}\n\
             oracles: {tcp: {received: 0}}\nhost: {absent: [/x]}\nno_survivors: true",
        )
        .unwrap();
        let e = Evidence::of(&x);
        assert_eq!(e.mechanism, ["outcome", "probe.ok", "probe.errno"]);
        assert_eq!(
            e.property,
            ["oracle.tcp.received", "host.absent", "survivors"]
        );
        assert_eq!(e.rests_on(), RestsOn::Observed);
        let y: Expect = serde_saphyr::from_str("probe: {ok: false}").unwrap();
        assert_eq!(Evidence::of(&y).rests_on(), RestsOn::Driver);
    }
}
