//! Deciding a run: every field of a case's `expect` is checked against what
//! the harness observed (the driver's output, the probe's JSON line, the
//! oracles, the host). Every check runs; each one that fails becomes a
//! [`CheckFailure`] naming the check, whether it is a property or a
//! mechanism, a stable fingerprint of what was observed, and whether it
//! shows a leak.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Map, Value};

use super::check::{oracle_check, CheckFailure, Evaluation};
use super::observed;
use crate::corpus::case::{
    Expect, HostMatcher, IntMatcher, OracleKind, OutcomeMatcher, ProbeMatcher, TextMatcher,
};
use crate::oracle::objects::Object;
use crate::oracle::tracker::Survivor;
use crate::oracle::Observations;
use crate::policy::{Outcome, RunOutput};

/// Everything a run produced, as the harness saw it.
#[derive(Debug)]
pub struct Observation<'a> {
    /// What the driver returned.
    pub output: &'a RunOutput,
    /// What the oracles counted.
    pub oracles: &'a Observations,
    /// The probe's report, if it printed one.
    pub probe: Option<&'a ProbeReport>,
    /// Processes the run left alive (`crate::oracle::tracker`).
    pub survivors: &'a [Survivor],
    /// The kernel objects the run left behind, when the case asked
    /// (`expect.host.objects_left`); `Err` when they could not be listed.
    pub objects_left: Option<&'a Result<Vec<Object>, String>>,
    /// The run is the one under test of an `isolation` case, so its host
    /// matchers describe the host left untouched: any mismatch there is a
    /// leak. (Oracles, the victim and survivors are leaks in any case.)
    pub isolation: bool,
}

/// The probe's one-line JSON report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport(pub Map<String, Value>);

impl ProbeReport {
    /// The last line of `stdout` (else of `stderr`, where `flood` reports)
    /// that is a JSON object with an `op`.
    pub fn find(output: &RunOutput) -> Option<ProbeReport> {
        Self::last_in(&output.stdout).or_else(|| Self::last_in(&output.stderr))
    }

    fn last_in(bytes: &[u8]) -> Option<ProbeReport> {
        bytes.split(|b| *b == b'\n').rev().find_map(|line| {
            match serde_json::from_slice::<Value>(line.trim_ascii()) {
                Ok(Value::Object(m)) if m.contains_key("op") => Some(ProbeReport(m)),
                _ => None,
            }
        })
    }

    /// The pids the probe reported (`pids`), for the survivor check.
    pub fn pids(&self) -> Option<Vec<i32>> {
        let Value::Array(a) = self.0.get("pids")? else {
            return None;
        };
        a.iter()
            .map(|p| p.as_i64().and_then(|n| i32::try_from(n).ok()))
            .collect()
    }
}

/// Checks `expect` against `obs`: every check runs, and each one that
/// fails is in the result.
pub fn evaluate(expect: &Expect, obs: &Observation<'_>) -> Evaluation {
    let out = obs.output;
    let mut f: Vec<CheckFailure> = Vec::new();
    if let Some(m) = &expect.outcome {
        match outcome_matches(m, &out.outcome) {
            Ok(true) => {}
            Ok(false) => f.push(CheckFailure::mechanism(
                "outcome",
                outcome_fingerprint(&out.outcome),
                format!(
                    "expected outcome {}, got {}{}",
                    describe_outcome_matcher(m),
                    describe_outcome(&out.outcome),
                    output_context(out)
                ),
            )),
            Err(e) => f.push(malformed("outcome", e)),
        }
    }
    if let Some(m) = &expect.probe {
        // The report itself is quoted; add stderr, which often says why.
        let stderr_only = RunOutput {
            stdout: Vec::new(),
            ..out.clone()
        };
        let context = output_context(&stderr_only);
        for mut x in check_probe(m, obs.probe) {
            x.message.push_str(&context);
            f.push(x);
        }
    }
    for (kind, m) in &expect.oracles {
        f.extend(check_oracle(*kind, m, obs.oracles));
    }
    if let Some(h) = &expect.host {
        f.extend(check_host(h, obs.isolation));
        if let Some(m) = &h.objects_left {
            f.extend(check_objects(m, obs, obs.isolation));
        }
    }
    f.extend(check_survivors(expect, obs, out));
    if let Some(want) = &expect.filtered_paths {
        let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
        let got_owned: Vec<String> = out
            .filtered_paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut got: Vec<&str> = got_owned.iter().map(String::as_str).collect();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            f.push(CheckFailure::mechanism(
                "filtered_paths",
                paths_fingerprint(&got),
                format!("expected filtered_paths {want:?}, got {got:?}"),
            ));
        }
    }
    if let Some(t) = expect.output_truncated {
        if out.output_truncated != t {
            f.push(CheckFailure::mechanism(
                "output_truncated",
                out.output_truncated.to_string(),
                format!(
                    "expected output_truncated {t}, got {}",
                    out.output_truncated
                ),
            ));
        }
    }
    if let Some(m) = &expect.stdout {
        f.extend(check_text("stdout", m, &out.stdout));
    }
    if let Some(m) = &expect.stderr {
        f.extend(check_text("stderr", m, &out.stderr));
    }
    Evaluation { failures: f }
}

fn malformed(check: &str, e: String) -> CheckFailure {
    CheckFailure::mechanism(check, "malformed matcher", format!("{check}: {e}"))
}

/// `exited 137`, `signaled 9`, `timeout`, `setup_error invalid_policy`: an
/// outcome without its message.
pub fn outcome_fingerprint(o: &Outcome) -> String {
    match o {
        Outcome::Exited { code } => format!("exited {code}"),
        Outcome::Signaled { signal } => format!("signaled {signal}"),
        Outcome::Timeout => "timeout".into(),
        Outcome::SetupError { kind, .. } => format!("setup_error {kind}"),
    }
}

/// The file names of filtered paths (their directories hold the run's
/// scratch directory, which changes every run), or `none`.
fn paths_fingerprint(paths: &[&str]) -> String {
    if paths.is_empty() {
        return "none".into();
    }
    paths
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Does `outcome` match? `Err` for a malformed matcher.
pub fn outcome_matches(m: &OutcomeMatcher, outcome: &Outcome) -> Result<bool, String> {
    Ok(match (m, outcome) {
        (OutcomeMatcher::Exited { code }, Outcome::Exited { code: c }) => match code {
            None => true,
            Some(im) => int_matches(im, i64::from(*c))?,
        },
        (OutcomeMatcher::Signaled { signal }, Outcome::Signaled { signal: s }) => match signal {
            None => true,
            Some(im) => int_matches(im, i64::from(*s))?,
        },
        (OutcomeMatcher::Timeout, Outcome::Timeout) => true,
        (OutcomeMatcher::SetupError { kind }, Outcome::SetupError { kind: k, .. }) => {
            kind.is_empty() || kind.contains(k)
        }
        (OutcomeMatcher::Failed, Outcome::Exited { code }) => *code != 0,
        (OutcomeMatcher::Failed, Outcome::Signaled { .. }) => true,
        _ => false,
    })
}

/// Does `n` match? `Err` for a malformed matcher (rejected at load, so
/// only reachable for cases built in code).
pub fn int_matches(m: &IntMatcher, n: i64) -> Result<bool, String> {
    m.check()?;
    Ok(m.matches(n))
}

/// `exited{code: 0}`, `timeout`, `setup_error{kind: [abi_too_low]}`.
pub fn describe_outcome_matcher(m: &OutcomeMatcher) -> String {
    match m {
        OutcomeMatcher::Exited { code: None } => "exited{code: any}".into(),
        OutcomeMatcher::Exited { code: Some(c) } => format!("exited{{code: {}}}", c),
        OutcomeMatcher::Signaled { signal: None } => "signaled{signal: any}".into(),
        OutcomeMatcher::Signaled { signal: Some(s) } => {
            format!("signaled{{signal: {}}}", s)
        }
        OutcomeMatcher::Timeout => "timeout".into(),
        OutcomeMatcher::SetupError { kind } if kind.is_empty() => "setup_error{kind: any}".into(),
        OutcomeMatcher::SetupError { kind } => {
            let k: Vec<&str> = kind.iter().map(|k| k.as_str()).collect();
            format!("setup_error{{kind: [{}]}}", k.join(", "))
        }
        OutcomeMatcher::Failed => "failed (non-zero exit or a signal)".into(),
    }
}

/// `exited{code: 1}`, `setup_error{kind: abi_too_low, message: "…"}`.
pub fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Exited { code } => format!("exited{{code: {code}}}"),
        Outcome::Signaled { signal } => format!("signaled{{signal: {signal}}}"),
        Outcome::Timeout => "timeout".into(),
        Outcome::SetupError { kind, message } => {
            format!("setup_error{{kind: {kind}, message: {message:?}}}")
        }
    }
}

/// `; stderr: …` (the end of stderr, else of stdout), for failure reasons.
fn output_context(out: &RunOutput) -> String {
    let mut s = String::new();
    for (name, bytes) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if !text.is_empty() {
            // One line, so a reason stays one line in summaries and JUnit.
            let flat = text.lines().collect::<Vec<_>>().join(" | ");
            let _ = write!(s, "; {name}: {}", tail(&flat, 300));
            break;
        }
    }
    s
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

fn check_probe(m: &ProbeMatcher, report: Option<&ProbeReport>) -> Vec<CheckFailure> {
    let Some(r) = report else {
        // One failure, not one per field: they would all say the same.
        return vec![CheckFailure::mechanism(
            "probe",
            "no report",
            "expected a probe report (a JSON line with \"op\"), found none".into(),
        )];
    };
    let mut f = Vec::new();
    let line = Value::Object(r.0.clone()).to_string();
    if let Some(ok) = m.ok {
        let got = r.0.get("ok").and_then(Value::as_bool);
        if got != Some(ok) {
            f.push(CheckFailure::mechanism(
                "probe.ok",
                got.map_or("absent".to_string(), |b| b.to_string()),
                format!("expected the probe to report ok: {ok}, got {line}"),
            ));
        }
    }
    if !m.errno.is_empty() {
        let got = r.0.get("errno").and_then(Value::as_str);
        if !got.is_some_and(|e| m.errno.iter().any(|w| w == e)) {
            f.push(CheckFailure::mechanism(
                "probe.errno",
                got.unwrap_or("none"),
                format!(
                    "expected the probe to report errno in {:?}, got {line}",
                    m.errno
                ),
            ));
        }
    }
    if let Some(im) = &m.value {
        let got = r.0.get("value").and_then(Value::as_i64);
        match got.map(|n| int_matches(im, n)) {
            Some(Ok(true)) => {}
            Some(Err(e)) => f.push(malformed("probe.value", e)),
            _ => f.push(CheckFailure::mechanism(
                "probe.value",
                got.map_or("absent".to_string(), |n| n.to_string()),
                format!("expected the probe to report value {im}, got {line}"),
            )),
        }
    }
    f
}

/// An oracle count, as a fingerprint: `0` or `>0` (retries make the exact
/// number vary; the message keeps it).
fn count_fingerprint(n: u64) -> &'static str {
    if n == 0 {
        "0"
    } else {
        ">0"
    }
}

fn check_oracle(
    kind: OracleKind,
    m: &crate::corpus::case::OracleMatcher,
    obs: &Observations,
) -> Vec<CheckFailure> {
    let name = crate::corpus::vocab::oracle_name(kind);
    let mut f = Vec::new();
    if let Some(im) = &m.connected {
        let check = oracle_check(kind, "connected");
        let why = || observed::check_inbound(im, obs).err().unwrap_or_default();
        match &obs.inbound {
            None => f.push(CheckFailure::property(check, "not running", why(), false)),
            Some(r) => {
                let n = i64::try_from(r.connected).unwrap_or(i64::MAX);
                match int_matches(im, n) {
                    Ok(true) => {}
                    // The harness reached the run's listener from outside.
                    Ok(false) => f.push(CheckFailure::property(
                        check,
                        count_fingerprint(r.connected),
                        why(),
                        r.connected > 0 && int_matches(im, 0) == Ok(true),
                    )),
                    Err(e) => f.push(malformed(&check, e)),
                }
            }
        }
    }
    if let Some(im) = &m.received {
        let check = oracle_check(kind, "received");
        match obs.received.get(&kind) {
            None => f.push(CheckFailure::property(
                check,
                "not running",
                format!(
                    "expected oracle {name} to count what it received, but it was not \
                     running (list it under `oracles:`)"
                ),
                false,
            )),
            Some(&n) => {
                let count = i64::try_from(n).unwrap_or(i64::MAX);
                match int_matches(im, count) {
                    Ok(true) => {}
                    Ok(false) => {
                        // Traffic where the case allows none (or fewer) is
                        // the isolation broken; too little is not.
                        let leak = n > 0 && int_matches(im, 0) == Ok(true);
                        f.push(CheckFailure::property(
                            check,
                            count_fingerprint(n),
                            format!(
                                "expected oracle {name} to receive {im}, it received {n}{}{}",
                                observed::oracle_detail(kind, obs),
                                if leak {
                                    ": the traffic reached the host"
                                } else {
                                    ""
                                }
                            ),
                            leak,
                        ))
                    }
                    Err(e) => f.push(malformed(&check, e)),
                }
            }
        }
    }
    if let Some(want) = m.alive {
        let check = oracle_check(kind, "alive");
        match obs.victim_alive {
            None => f.push(CheckFailure::property(
                check,
                "not running",
                format!("expected oracle {name} alive: {want}, but no victim process was running"),
                false,
            )),
            Some(got) if got != want => f.push(if want {
                CheckFailure::property(
                    check,
                    "killed",
                    "expected the victim process outside the sandbox to survive; it was killed"
                        .into(),
                    true,
                )
            } else {
                CheckFailure::property(
                    check,
                    "alive",
                    "expected the victim process to be gone; it is still alive".into(),
                    false,
                )
            }),
            Some(_) => {}
        }
    }
    f
}

/// Host matchers, checked on the host. In an isolation case's run under
/// test (`isolation`) they describe the host left untouched, so any
/// mismatch is a leak.
fn check_host(h: &HostMatcher, isolation: bool) -> Vec<CheckFailure> {
    let mut f = Vec::new();
    for p in &h.absent {
        if Path::new(p).symlink_metadata().is_ok() {
            f.push(CheckFailure::property(
                "host.absent",
                "exists",
                format!("expected {p} to be absent on the host; it exists"),
                isolation,
            ));
        }
    }
    for p in &h.present {
        if Path::new(p).symlink_metadata().is_err() {
            f.push(CheckFailure::property(
                "host.present",
                "missing",
                format!("expected {p} to exist on the host; it does not"),
                isolation,
            ));
        }
    }
    for (p, want_read, check) in h
        .unread
        .iter()
        .map(|p| (p, false, "host.unread"))
        .chain(h.read.iter().map(|p| (p, true, "host.read")))
    {
        match super::canary::was_read(p) {
            Ok(got) if got == want_read => {}
            Ok(true) => f.push(CheckFailure::property(
                check,
                "read",
                format!("expected {p} not to be read; its access time moved: the command read it"),
                isolation,
            )),
            Ok(false) => f.push(CheckFailure::property(
                check,
                "unread",
                format!(
                    "expected {p} to be read; its access time did not move (the command did \
                     not read it, or this mount does not record reads: noatime, read-only)"
                ),
                false,
            )),
            Err(e) => f.push(CheckFailure::property(
                check,
                "missing",
                format!("failed to check the read canary {p}: {e}"),
                false,
            )),
        }
    }
    for (p, want) in &h.mode {
        let want = match crate::corpus::setup::parse_mode(want) {
            Ok(m) => m,
            Err(e) => {
                f.push(malformed("host.mode", e));
                continue;
            }
        };
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.mode() & 0o7777 == want => {}
            Ok(m) => f.push(CheckFailure::property(
                "host.mode",
                format!("{:04o}", m.mode() & 0o7777),
                format!(
                    "expected {p} to have mode {want:04o}, it has {:04o}",
                    m.mode() & 0o7777
                ),
                isolation,
            )),
            Err(e) => f.push(CheckFailure::property(
                "host.mode",
                "missing",
                format!("expected {p} to have mode {want:04o}: failed to stat it: {e}"),
                isolation,
            )),
        }
    }
    for (p, want) in &h.owner {
        match std::fs::symlink_metadata(p) {
            Ok(m)
                if want.uid.is_none_or(|u| u == m.uid())
                    && want.gid.is_none_or(|g| g == m.gid()) => {}
            Ok(m) => {
                let show = |v: Option<u32>| v.map_or("any".to_string(), |v| v.to_string());
                f.push(CheckFailure::property(
                    "host.owner",
                    format!("uid {} gid {}", m.uid(), m.gid()),
                    format!(
                        "expected {p} to be owned by uid {} gid {}, it is owned by uid {} gid {}",
                        show(want.uid),
                        show(want.gid),
                        m.uid(),
                        m.gid()
                    ),
                    isolation,
                ))
            }
            Err(e) => f.push(CheckFailure::property(
                "host.owner",
                "missing",
                format!("expected the owner of {p}: failed to stat it: {e}"),
                isolation,
            )),
        }
    }
    for (p, want) in &h.content {
        match std::fs::read(p) {
            Ok(got) if got == want.as_bytes() => {}
            Ok(got) => f.push(CheckFailure::property(
                "host.content",
                "differs",
                format!(
                    "expected {p} to contain {want:?}, it contains {:?}",
                    tail(&String::from_utf8_lossy(&got), 200)
                ),
                isolation,
            )),
            Err(e) => f.push(CheckFailure::property(
                "host.content",
                if e.kind() == std::io::ErrorKind::NotFound {
                    "missing"
                } else {
                    "unreadable"
                },
                format!("expected {p} to contain {want:?}: failed to read it: {e}"),
                isolation,
            )),
        }
    }
    f
}

/// Kernel objects the run left behind (already removed), against `m`:
/// more than the case allows is a leak in an isolation case's run.
fn check_objects(m: &IntMatcher, obs: &Observation<'_>, isolation: bool) -> Vec<CheckFailure> {
    let unlisted = Err("the harness did not list them".to_string());
    let left = obs.objects_left.unwrap_or(&unlisted);
    let Err(why) = observed::check_objects(m, left) else {
        return Vec::new();
    };
    let (observed, leak) = match left {
        Ok(v) => (
            count_fingerprint(v.len() as u64),
            isolation && !v.is_empty() && int_matches(m, 0) == Ok(true),
        ),
        Err(_) => ("unlisted", false),
    };
    vec![CheckFailure::property(
        "host.objects_left",
        observed,
        why,
        leak,
    )]
}

/// Survivors, found by the host's means: against `survivors: M` when the
/// case gives it, else none may be left; `no_survivors` also needs the
/// probe to have said what it started, or nothing shows the check could
/// fail (unproven: a property failure, not a leak).
fn check_survivors(expect: &Expect, obs: &Observation<'_>, out: &RunOutput) -> Vec<CheckFailure> {
    let n = obs.survivors.len();
    let alive = || {
        format!(
            "the run left {n} process(es) alive after it ended (killed now): {}",
            observed::list_survivors(obs.survivors)
        )
    };
    if let Some(m) = &expect.survivors {
        return match int_matches(m, i64::try_from(n).unwrap_or(i64::MAX)) {
            Ok(true) => Vec::new(),
            Ok(false) => vec![CheckFailure::property(
                "survivors",
                count_fingerprint(n as u64),
                format!(
                    "expected the run to leave {m} process(es) alive; {}",
                    alive()
                ),
                n > 0 && int_matches(m, 0) == Ok(true),
            )],
            Err(e) => vec![malformed("survivors", e)],
        };
    }
    if n > 0 {
        return vec![CheckFailure::property(
            "survivors",
            "alive",
            format!("expected no survivors, but {}", alive()),
            true,
        )];
    }
    if expect.no_survivors && obs.probe.and_then(ProbeReport::pids).is_none() {
        // Nothing shows the processes were ever started: the survivor
        // check would hold vacuously, so the property is not shown.
        return vec![CheckFailure::property(
            "survivors",
            "unproven",
            format!(
                "expected no survivors, but the probe reported no pids: nothing shows it \
                 started the processes to look for{}",
                output_context(out)
            ),
            false,
        )];
    }
    Vec::new()
}

fn check_text(name: &str, m: &TextMatcher, bytes: &[u8]) -> Vec<CheckFailure> {
    let text = String::from_utf8_lossy(bytes);
    let shown = || tail(&text, 300);
    let mut f = Vec::new();
    let mut fail = |what: &str, observed: String, message: String| {
        f.push(CheckFailure::mechanism(
            format!("{name}.{what}"),
            observed,
            message,
        ))
    };
    let empty_or = |other: &str| {
        if bytes.is_empty() {
            "empty".to_string()
        } else {
            other.to_string()
        }
    };
    if let Some(eq) = &m.equals {
        if text != eq.as_str() {
            fail(
                "equals",
                empty_or("other text"),
                format!("expected {name} to equal {eq:?}, got {:?}", shown()),
            );
        }
    }
    for c in &m.contains {
        if !text.contains(c.as_str()) {
            fail(
                "contains",
                empty_or(&format!("lacks {c:?}")),
                format!("expected {name} to contain {c:?}, got {:?}", shown()),
            );
        }
    }
    for c in &m.not_contains {
        if text.contains(c.as_str()) {
            fail(
                "not_contains",
                format!("has {c:?}"),
                format!("expected {name} not to contain {c:?}, got {:?}", shown()),
            );
        }
    }
    if let Some(re) = &m.regex {
        match regex::Regex::new(re) {
            Ok(r) if r.is_match(&text) => {}
            Ok(_) => fail(
                "regex",
                empty_or("no match"),
                format!("expected {name} to match /{re}/, got {:?}", shown()),
            ),
            Err(e) => fail(
                "regex",
                "malformed matcher".into(),
                format!("invalid regex {re:?}: {e}"),
            ),
        }
    }
    if let Some(empty) = m.empty {
        if bytes.is_empty() != empty {
            if empty {
                fail(
                    "empty",
                    "not empty".into(),
                    format!("expected {name} to be empty, got {:?}", shown()),
                );
            } else {
                fail(
                    "empty",
                    "empty".into(),
                    format!("expected {name} not to be empty"),
                );
            }
        }
    }
    if let Some(im) = &m.len {
        let n = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        match int_matches(im, n) {
            Ok(true) => {}
            Ok(false) => fail(
                "len",
                format!("{n} bytes"),
                format!("expected {name} to be {im} bytes long, it is {n}"),
            ),
            Err(e) => fail("len", "malformed matcher".into(), e),
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::check::CheckKind;
    use crate::policy::SetupErrorKind;
    use std::time::Duration;

    fn output(outcome: Outcome, stdout: &str, stderr: &str) -> RunOutput {
        RunOutput {
            outcome,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            output_truncated: false,
            filtered_paths: vec![],
            duration: Duration::from_millis(1),
        }
    }

    fn expect(yaml: &str) -> Expect {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn eval_as(
        e: &Expect,
        out: &RunOutput,
        oracles: &Observations,
        survivors: &[i32],
        isolation: bool,
    ) -> Evaluation {
        let probe = ProbeReport::find(out);
        let survivors: Vec<Survivor> = survivors
            .iter()
            .map(|&pid| Survivor {
                pid,
                comm: "x".into(),
                found_by: vec![crate::oracle::tracker::FoundBy::Cgroup],
            })
            .collect();
        evaluate(
            e,
            &Observation {
                output: out,
                oracles,
                probe: probe.as_ref(),
                survivors: &survivors,
                objects_left: None,
                isolation,
            },
        )
    }

    /// The one-line reason, `Ok(())` when everything held (the old shape,
    /// which most tests only need).
    fn eval(
        e: &Expect,
        out: &RunOutput,
        oracles: &Observations,
        survivors: &[i32],
    ) -> Result<(), String> {
        match eval_as(e, out, oracles, survivors, false).reason() {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }

    /// `check: observed` of every failure.
    fn fingerprints(ev: &Evaluation) -> Vec<String> {
        ev.failures.iter().map(|f| f.fingerprint()).collect()
    }

    #[test]
    fn an_outcome_mismatch_names_both_sides_and_the_stderr() {
        let e = expect("outcome: {exited: {code: 0}}");
        let out = output(Outcome::Timeout, "", "sleeping\n");
        let why = eval(&e, &out, &Observations::default(), &[]).unwrap_err();
        assert_eq!(
            why,
            "expected outcome exited{code: 0}, got timeout; stderr: sleeping"
        );
    }

    #[test]
    fn int_matchers_cover_eq_not_in_and_comparisons() {
        let m = |y: &str| -> IntMatcher { serde_saphyr::from_str(y).unwrap() };
        assert!(int_matches(&m("0"), 0).unwrap());
        assert!(int_matches(&m("{not: 0}"), 3).unwrap());
        assert!(!int_matches(&m("{not: 0}"), 0).unwrap());
        assert!(int_matches(&m("{in: [1, 2]}"), 2).unwrap());
        assert!(int_matches(&m("'>=1'"), 1).unwrap());
        assert!(!int_matches(&m("'<3'"), 3).unwrap());
        assert!(int_matches(&IntMatcher::Cmp("<x".into()), 3).is_err());
    }

    #[test]
    fn failed_matches_nonzero_exits_and_signals_only() {
        let f = OutcomeMatcher::Failed;
        assert!(outcome_matches(&f, &Outcome::Exited { code: 1 }).unwrap());
        assert!(outcome_matches(&f, &Outcome::Signaled { signal: 9 }).unwrap());
        assert!(!outcome_matches(&f, &Outcome::Exited { code: 0 }).unwrap());
        assert!(!outcome_matches(&f, &Outcome::Timeout).unwrap());
        let setup = Outcome::SetupError {
            kind: SetupErrorKind::LandlockUnavailable,
            message: String::new(),
        };
        assert!(!outcome_matches(&f, &setup).unwrap());
        let k = expect("outcome: {setup_error: {kind: [landlock_unavailable, landlock_disabled]}}");
        assert!(outcome_matches(k.outcome.as_ref().unwrap(), &setup).unwrap());
    }

    #[test]
    fn the_probe_report_is_the_last_json_line_and_its_fields_are_checked() {
        let out = output(
            Outcome::Exited { code: 1 },
            "noise\n{\"op\":\"read\",\"ok\":true}\n{\"op\":\"tcp-connect\",\"ok\":false,\"errno\":\"EACCES\"}\n",
            "",
        );
        let obs = Observations::default();
        assert_eq!(
            eval(
                &expect("probe: {ok: false, errno: [EACCES, EPERM]}"),
                &out,
                &obs,
                &[]
            ),
            Ok(())
        );
        let why = eval(&expect("probe: {errno: [ECONNREFUSED]}"), &out, &obs, &[]).unwrap_err();
        assert!(
            why.contains("ECONNREFUSED") && why.contains("EACCES"),
            "{why}"
        );
        let none = output(Outcome::Exited { code: 0 }, "hello\n", "");
        assert!(eval(&expect("probe: {ok: true}"), &none, &obs, &[]).is_err());
    }

    #[test]
    fn every_failing_check_is_reported_with_a_stable_fingerprint() {
        let e = expect(
            "outcome: {exited: {code: 1}}\nprobe: {ok: false, errno: [EACCES, EPERM], value: 0}\n\
             stdout: {contains: [denied], not_contains: [secret]}",
        );
        let out = output(
            Outcome::Exited { code: 0 },
            "secret\n{\"op\":\"tcp-connect\",\"ok\":true,\"value\":7,\"pid\":4242}\n",
            "",
        );
        let ev = eval_as(&e, &out, &Observations::default(), &[], true);
        assert_eq!(
            fingerprints(&ev),
            [
                "outcome: exited 0",
                "probe.ok: true",
                "probe.errno: none",
                "probe.value: 7",
                "stdout.contains: lacks \"denied\"",
                "stdout.not_contains: has \"secret\"",
            ]
        );
        assert!(ev.mechanism_only() && !ev.leaked());
        // No report at all is one failure, not one per field.
        let silent = output(Outcome::Signaled { signal: 9 }, "", "");
        let ev = eval_as(&e, &silent, &Observations::default(), &[], true);
        assert_eq!(
            fingerprints(&ev),
            [
                "outcome: signaled 9",
                "probe: no report",
                "stdout.contains: empty"
            ]
        );
        let setup = output(
            Outcome::SetupError {
                kind: SetupErrorKind::InvalidPolicy,
                message: "pid 77 at /tmp/x".into(),
            },
            "",
            "",
        );
        let ev = eval_as(
            &expect("outcome: timeout"),
            &setup,
            &Observations::default(),
            &[],
            true,
        );
        assert_eq!(fingerprints(&ev), ["outcome: setup_error invalid_policy"]);
    }

    #[test]
    fn oracle_counts_must_match_and_a_missing_oracle_is_a_mismatch() {
        let mut obs = Observations::default();
        obs.received.insert(OracleKind::Dns, 2);
        let out = output(Outcome::Exited { code: 0 }, "", "");
        assert_eq!(
            eval(
                &expect("oracles: {dns: {received: '>=1'}}"),
                &out,
                &obs,
                &[]
            ),
            Ok(())
        );
        let why = eval(&expect("oracles: {dns: {received: 0}}"), &out, &obs, &[]).unwrap_err();
        assert_eq!(
            why,
            "expected oracle dns to receive 0, it received 2: the traffic reached the host"
        );
        let why = eval(&expect("oracles: {tcp: {received: 0}}"), &out, &obs, &[]).unwrap_err();
        assert!(why.contains("not running"), "{why}");
        let m = crate::corpus::case::OracleMatcher {
            received: None,
            alive: Some(true),
            connected: None,
        };
        assert!(!check_oracle(OracleKind::Victim, &m, &obs).is_empty());
    }

    #[test]
    fn traffic_a_case_forbids_a_dead_victim_and_survivors_are_leaks() {
        let mut obs = Observations::default();
        obs.received.insert(OracleKind::Tcp, 1);
        obs.received.insert(OracleKind::Tcp2, 0);
        obs.victim_alive = Some(false);
        let out = output(
            Outcome::Exited { code: 0 },
            "{\"op\":\"setsid-daemon\",\"ok\":true,\"pids\":[10,11]}\n",
            "",
        );
        let e = expect(
            "oracles: {tcp: {received: 0}, tcp2: {received: '>=1'}, victim: {alive: true}}\n\
             no_survivors: true",
        );
        let ev = eval_as(&e, &out, &obs, &[11], false);
        let leaks: Vec<(&str, bool, CheckKind)> = ev
            .failures
            .iter()
            .map(|f| (f.check.as_str(), f.leak, f.kind))
            .collect();
        assert_eq!(
            leaks,
            [
                ("oracle.tcp.received", true, CheckKind::Property),
                // Too little traffic is a failure, not a leak.
                ("oracle.tcp2.received", false, CheckKind::Property),
                ("oracle.victim.alive", true, CheckKind::Property),
                ("survivors", true, CheckKind::Property),
            ]
        );
        assert_eq!(
            fingerprints(&ev),
            [
                "oracle.tcp.received: >0",
                "oracle.tcp2.received: 0",
                "oracle.victim.alive: killed",
                "survivors: alive"
            ]
        );
    }

    #[test]
    fn objects_left_inbound_connections_and_changed_modes_are_leaks() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let e = expect(&format!(
            "host: {{objects_left: 0, mode: {{'{}': '0600'}}}}\noracles: {{inbound: {{connected: 0}}}}",
            f.display()
        ));
        let obs = Observations {
            inbound: Some(crate::oracle::inbound::InboundReport {
                connected: 1,
                tried: vec!["127.0.0.1:4000: connected".into()],
            }),
            ..Observations::default()
        };
        let out = output(Outcome::Exited { code: 0 }, "", "");
        let left: Result<Vec<Object>, String> = Ok(vec![Object::Shm(5)]);
        let ev = evaluate(
            &e,
            &Observation {
                output: &out,
                oracles: &obs,
                probe: None,
                survivors: &[],
                objects_left: Some(&left),
                isolation: true,
            },
        );
        let got: Vec<(String, bool)> = ev
            .failures
            .iter()
            .map(|f| (f.fingerprint(), f.leak))
            .collect();
        assert_eq!(
            got,
            [
                ("oracle.inbound.connected: >0".to_string(), true),
                ("host.mode: 0644".to_string(), true),
                ("host.objects_left: >0".to_string(), true),
            ]
        );
    }

    #[test]
    fn no_survivors_needs_reported_pids_and_fails_on_live_ones() {
        let e = expect("no_survivors: true");
        let obs = Observations::default();
        let reported = output(
            Outcome::Timeout,
            "{\"op\":\"setsid-daemon\",\"ok\":true,\"pids\":[10,11]}\n",
            "",
        );
        assert_eq!(eval(&e, &reported, &obs, &[]), Ok(()));
        let why = eval(&e, &reported, &obs, &[11]).unwrap_err();
        assert!(why.contains("11 (x, by cgroup)"), "{why}");
        let silent = output(Outcome::Timeout, "", "");
        assert!(eval(&e, &silent, &obs, &[])
            .unwrap_err()
            .contains("no pids"));
        // Unproven is a property failure (no pass by another mechanism),
        // but not a leak.
        let ev = eval_as(&e, &silent, &obs, &[], true);
        assert_eq!(fingerprints(&ev), ["survivors: unproven"]);
        assert!(!ev.leaked() && !ev.mechanism_only());
    }

    #[test]
    fn host_side_effects_are_checked_on_the_host_and_leak_only_in_isolation_runs() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("marker");
        let e = expect(&format!("host: {{absent: ['{}']}}", marker.display()));
        let out = output(Outcome::Exited { code: 0 }, "", "");
        let obs = Observations::default();
        assert_eq!(eval(&e, &out, &obs, &[]), Ok(()));
        std::fs::write(&marker, "x").unwrap();
        assert!(eval(&e, &out, &obs, &[]).unwrap_err().contains("absent"));
        assert!(eval_as(&e, &out, &obs, &[], true).leaked());
        assert!(!eval_as(&e, &out, &obs, &[], false).leaked());
        let c = expect(&format!(
            "host: {{content: {{'{}': 'y'}}}}",
            marker.display()
        ));
        assert!(eval(&c, &out, &obs, &[])
            .unwrap_err()
            .contains("contains \"x\""));
        let ev = eval_as(&c, &out, &obs, &[], true);
        assert_eq!(fingerprints(&ev), ["host.content: differs"]);
        std::fs::remove_file(&marker).unwrap();
        let ev = eval_as(&c, &out, &obs, &[], true);
        assert_eq!(fingerprints(&ev), ["host.content: missing"]);
    }

    #[test]
    fn text_matchers_and_filtered_paths() {
        let mut out = output(Outcome::Exited { code: 0 }, "done\n", "");
        out.filtered_paths = vec!["/nope/b".into(), "/nope/a".into()];
        let obs = Observations::default();
        let ok = expect(
            "stdout: {contains: [done], regex: '^d.ne', not_contains: [error], len: 5}\n\
             stderr: {empty: true}\nfiltered_paths: [/nope/a, /nope/b]",
        );
        assert_eq!(eval(&ok, &out, &obs, &[]), Ok(()));
        assert!(eval(&expect("stdout: {equals: 'done'}"), &out, &obs, &[]).is_err());
        let ev = eval_as(&expect("filtered_paths: []"), &out, &obs, &[], false);
        assert_eq!(fingerprints(&ev), ["filtered_paths: a, b"]);
        assert!(eval(&expect("output_truncated: true"), &out, &obs, &[]).is_err());
    }
}
