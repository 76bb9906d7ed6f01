//! Deciding a run: every field of a case's `expect` is checked against what
//! the harness observed (the driver's output, the probe's JSON line, the
//! oracles, the host). The first mismatch becomes the failure reason.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

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

/// Checks `expect` against `obs`; `Err` is the first mismatch.
pub fn evaluate(expect: &Expect, obs: &Observation<'_>) -> Result<(), String> {
    let out = obs.output;
    if let Some(m) = &expect.outcome {
        if !outcome_matches(m, &out.outcome)? {
            return Err(format!(
                "expected outcome {}, got {}{}",
                describe_outcome_matcher(m),
                describe_outcome(&out.outcome),
                output_context(out)
            ));
        }
    }
    if let Some(m) = &expect.probe {
        // The report itself is quoted; add stderr, which often says why.
        let stderr_only = RunOutput {
            stdout: Vec::new(),
            ..out.clone()
        };
        check_probe(m, obs.probe).map_err(|e| format!("{e}{}", output_context(&stderr_only)))?;
    }
    for (kind, m) in &expect.oracles {
        check_oracle(*kind, m, obs.oracles)?;
    }
    if let Some(h) = &expect.host {
        check_host(h)?;
        observed::check_metadata(h)?;
        if let Some(m) = &h.objects_left {
            let unlisted = Err("the harness did not list them".to_string());
            observed::check_objects(m, obs.objects_left.unwrap_or(&unlisted))?;
        }
    }
    observed::check_survivors(expect, obs.survivors, obs.probe).map_err(|e| {
        format!(
            "{e}{}",
            if e.contains("no pids") {
                output_context(out)
            } else {
                String::new()
            }
        )
    })?;
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
            return Err(format!("expected filtered_paths {want:?}, got {got:?}"));
        }
    }
    if let Some(t) = expect.output_truncated {
        if out.output_truncated != t {
            return Err(format!(
                "expected output_truncated {t}, got {}",
                out.output_truncated
            ));
        }
    }
    if let Some(m) = &expect.stdout {
        check_text("stdout", m, &out.stdout)?;
    }
    if let Some(m) = &expect.stderr {
        check_text("stderr", m, &out.stderr)?;
    }
    Ok(())
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

fn check_probe(m: &ProbeMatcher, report: Option<&ProbeReport>) -> Result<(), String> {
    let Some(r) = report else {
        return Err("expected a probe report (a JSON line with \"op\"), found none".into());
    };
    let line = Value::Object(r.0.clone()).to_string();
    if let Some(ok) = m.ok {
        if r.0.get("ok").and_then(Value::as_bool) != Some(ok) {
            return Err(format!("expected the probe to report ok: {ok}, got {line}"));
        }
    }
    if !m.errno.is_empty() {
        let got = r.0.get("errno").and_then(Value::as_str);
        if !got.is_some_and(|e| m.errno.iter().any(|w| w == e)) {
            return Err(format!(
                "expected the probe to report errno in {:?}, got {line}",
                m.errno
            ));
        }
    }
    if let Some(im) = &m.value {
        let got = r.0.get("value").and_then(Value::as_i64);
        let ok = match got {
            Some(n) => int_matches(im, n)?,
            None => false,
        };
        if !ok {
            return Err(format!(
                "expected the probe to report value {}, got {line}",
                im
            ));
        }
    }
    Ok(())
}

fn check_oracle(
    kind: OracleKind,
    m: &crate::corpus::case::OracleMatcher,
    obs: &Observations,
) -> Result<(), String> {
    let name = crate::corpus::vocab::oracle_name(kind);
    if let Some(im) = &m.connected {
        observed::check_inbound(im, obs)?;
    }
    if let Some(im) = &m.received {
        let Some(n) = obs.received.get(&kind) else {
            return Err(format!(
                "expected oracle {name} to count what it received, but it was not running \
                 (list it under `oracles:`)"
            ));
        };
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        if !int_matches(im, n)? {
            return Err(format!(
                "expected oracle {name} to receive {}, it received {n}{}",
                im,
                observed::oracle_detail(kind, obs)
            ));
        }
    }
    if let Some(want) = m.alive {
        match obs.victim_alive {
            None => {
                return Err(format!(
                    "expected oracle {name} alive: {want}, but no victim process was running"
                ))
            }
            Some(got) if got != want => {
                return Err(if want {
                    "expected the victim process outside the sandbox to survive; it was killed"
                        .into()
                } else {
                    "expected the victim process to be gone; it is still alive".into()
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_host(h: &HostMatcher) -> Result<(), String> {
    for p in &h.absent {
        if Path::new(p).symlink_metadata().is_ok() {
            return Err(format!("expected {p} to be absent on the host; it exists"));
        }
    }
    for p in &h.present {
        if Path::new(p).symlink_metadata().is_err() {
            return Err(format!("expected {p} to exist on the host; it does not"));
        }
    }
    for (p, want) in &h.content {
        match std::fs::read(p) {
            Ok(got) if got == want.as_bytes() => {}
            Ok(got) => {
                return Err(format!(
                    "expected {p} to contain {want:?}, it contains {:?}",
                    tail(&String::from_utf8_lossy(&got), 200)
                ))
            }
            Err(e) => {
                return Err(format!(
                    "expected {p} to contain {want:?}: failed to read it: {e}"
                ))
            }
        }
    }
    Ok(())
}

fn check_text(name: &str, m: &TextMatcher, bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let shown = || tail(&text, 300);
    if let Some(eq) = &m.equals {
        if text != eq.as_str() {
            return Err(format!(
                "expected {name} to equal {eq:?}, got {:?}",
                shown()
            ));
        }
    }
    for c in &m.contains {
        if !text.contains(c.as_str()) {
            return Err(format!(
                "expected {name} to contain {c:?}, got {:?}",
                shown()
            ));
        }
    }
    for c in &m.not_contains {
        if text.contains(c.as_str()) {
            return Err(format!(
                "expected {name} not to contain {c:?}, got {:?}",
                shown()
            ));
        }
    }
    if let Some(re) = &m.regex {
        let r = regex::Regex::new(re).map_err(|e| format!("invalid regex {re:?}: {e}"))?;
        if !r.is_match(&text) {
            return Err(format!(
                "expected {name} to match /{re}/, got {:?}",
                shown()
            ));
        }
    }
    if let Some(empty) = m.empty {
        if bytes.is_empty() != empty {
            return Err(if empty {
                format!("expected {name} to be empty, got {:?}", shown())
            } else {
                format!("expected {name} not to be empty")
            });
        }
    }
    if let Some(im) = &m.len {
        let n = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        if !int_matches(im, n)? {
            return Err(format!(
                "expected {name} to be {} bytes long, it is {n}",
                im
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::case::OracleMatcher;
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

    fn eval(
        e: &Expect,
        out: &RunOutput,
        oracles: &Observations,
        survivors: &[i32],
    ) -> Result<(), String> {
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
            },
        )
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
        assert_eq!(why, "expected oracle dns to receive 0, it received 2");
        let why = eval(&expect("oracles: {tcp: {received: 0}}"), &out, &obs, &[]).unwrap_err();
        assert!(why.contains("not running"), "{why}");
        let m = OracleMatcher {
            received: None,
            alive: Some(true),
            connected: None,
        };
        assert!(check_oracle(OracleKind::Victim, &m, &obs).is_err());
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
    }

    #[test]
    fn host_side_effects_are_checked_on_the_host() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("marker");
        let e = expect(&format!("host: {{absent: ['{}']}}", marker.display()));
        let out = output(Outcome::Exited { code: 0 }, "", "");
        let obs = Observations::default();
        assert_eq!(eval(&e, &out, &obs, &[]), Ok(()));
        std::fs::write(&marker, "x").unwrap();
        assert!(eval(&e, &out, &obs, &[]).unwrap_err().contains("absent"));
        let c = expect(&format!(
            "host: {{content: {{'{}': 'y'}}}}",
            marker.display()
        ));
        assert!(eval(&c, &out, &obs, &[])
            .unwrap_err()
            .contains("contains \"x\""));
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
        assert!(eval(&expect("filtered_paths: []"), &out, &obs, &[]).is_err());
        assert!(eval(&expect("output_truncated: true"), &out, &obs, &[]).is_err());
    }
}
