//! The lying driver (`--faulty-driver liar STATE_DIR`): it runs every
//! command without any sandbox, then forges the answer the case expects —
//! the outcome, the exit code, the probe's JSON line, the output, the
//! filtered paths — from the case file itself. Whatever it passes, a
//! sandbox that does nothing and says the right words would pass too: those
//! verdicts rest on the driver's word alone. What it fails, the harness saw
//! for itself (an oracle, a host file, the victim, survivors).
//!
//! The first run of a case is the run under test; a later one is its
//! control (restriction lifted), whose answer is forged from the control's
//! `expect` (an unsandboxed run already shows what a control's oracles and
//! host checks expect; the rest is words). Runs are
//! counted in STATE_DIR/seen/, shared by every instance (a case with
//! `simulate:` runs on an instance of its own). The corpus is read from the
//! path in STATE_DIR/cases.

use std::collections::BTreeMap;
use std::path::Path;

use sandspec::corpus::case::{Expect, IntMatcher, OutcomeMatcher, TextMatcher};
use sandspec::corpus::LoadedCase;
use sandspec::harness::evaluate::int_matches;
use sandspec::policy::{Outcome, Policy, RunOutput, SetupErrorKind};
use serde_json::{Map, Value};

/// The corpus, keyed by case id.
pub struct Corpus(BTreeMap<String, LoadedCase>);

impl Corpus {
    /// Loads the corpus named in STATE_DIR/cases.
    pub fn load(state: &Path) -> Result<Corpus, String> {
        let path = std::fs::read_to_string(state.join("cases"))
            .map_err(|e| format!("failed to read STATE_DIR/cases: {e}"))?;
        let cases = sandspec::corpus::load(Path::new(path.trim()))
            .map_err(|e| format!("failed to load the corpus: {e}"))?;
        Ok(Corpus(
            cases.into_iter().map(|c| (c.case.id.clone(), c)).collect(),
        ))
    }
}

/// True the first time `case` runs across every instance: the run under
/// test (the control comes after it).
pub fn first_run(state: &Path, case: &str) -> bool {
    let dir = state.join("seen");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(case))
        .is_ok()
}

/// The answer to give: `real` (the unsandboxed run) made to say what the
/// case's `expect` asks for, when this is the run under test.
pub fn answer(
    corpus: &Corpus,
    state: &Path,
    case: &str,
    policy: &Policy,
    real: RunOutput,
) -> RunOutput {
    let Some(lc) = corpus.0.get(case) else {
        return real;
    };
    if first_run(state, case) {
        forge(&lc.case.expect, policy, real)
    } else {
        match &lc.case.control {
            Some(c) => forge(&c.expect, policy, real),
            None => real,
        }
    }
}

/// `real`, changed until every mechanism check of `e` would hold.
pub fn forge(e: &Expect, policy: &Policy, mut out: RunOutput) -> RunOutput {
    if let Some(m) = &e.outcome {
        out.outcome = forge_outcome(m, &out.outcome);
    }
    if let Some(m) = &e.stdout {
        out.stdout = forge_text(m, &out.stdout);
    }
    if let Some(m) = &e.stderr {
        out.stderr = forge_text(m, &out.stderr);
    }
    if let Some(p) = &e.probe {
        // The report is the last JSON line with an `op`: keep the real one's
        // other fields (its `pids`, which the survivor check wants).
        let mut report = last_report(&out.stdout)
            .or_else(|| last_report(&out.stderr))
            .unwrap_or_else(|| {
                let mut m = Map::new();
                m.insert("op".into(), Value::from("forged"));
                m
            });
        if let Some(ok) = p.ok {
            report.insert("ok".into(), Value::from(ok));
        }
        if let Some(errno) = p.errno.first() {
            report.insert("errno".into(), Value::from(errno.as_str()));
        }
        if let Some(v) = &p.value {
            let real = report.get("value").and_then(Value::as_i64);
            report.insert("value".into(), Value::from(pick(v, real)));
        }
        out.stdout
            .extend_from_slice(Value::Object(report).to_string().as_bytes());
        out.stdout.push(b'\n');
    }
    if e.filtered_paths.is_some() {
        // What a filtering backend would report: the listed paths that do
        // not exist.
        out.filtered_paths = policy
            .read
            .iter()
            .chain(&policy.write)
            .chain(&policy.exec)
            .filter(|p| p.symlink_metadata().is_err())
            .cloned()
            .collect();
    }
    if let Some(t) = e.output_truncated {
        out.output_truncated = t;
    }
    out
}

fn last_report(bytes: &[u8]) -> Option<Map<String, Value>> {
    bytes.split(|b| *b == b'\n').rev().find_map(|line| {
        match serde_json::from_slice::<Value>(line.trim_ascii()) {
            Ok(Value::Object(m)) if m.contains_key("op") => Some(m),
            _ => None,
        }
    })
}

/// An integer the matcher accepts: `real` when it does, else the first of
/// 0, 1, -1, 2, -2, … (or a bound of a comparison).
fn pick(m: &IntMatcher, real: Option<i64>) -> i64 {
    let ok = |n: i64| int_matches(m, n).unwrap_or(false);
    if let Some(r) = real.filter(|r| ok(*r)) {
        return r;
    }
    if let IntMatcher::Cmp(s) = m {
        let digits: String = s
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        if let Ok(n) = digits.parse::<i64>() {
            for c in [n, n + 1, n - 1] {
                if ok(c) {
                    return c;
                }
            }
        }
    }
    (0..10_000i64)
        .flat_map(|n| [n, -n])
        .find(|n| ok(*n))
        .unwrap_or(0)
}

fn forge_outcome(m: &OutcomeMatcher, real: &Outcome) -> Outcome {
    match m {
        OutcomeMatcher::Exited { code } => {
            let real = match real {
                Outcome::Exited { code } => Some(i64::from(*code)),
                _ => None,
            };
            let n = code.as_ref().map_or(real.unwrap_or(0), |c| pick(c, real));
            Outcome::Exited {
                code: i32::try_from(n).unwrap_or(1),
            }
        }
        OutcomeMatcher::Signaled { signal } => {
            let n = signal.as_ref().map_or(9, |s| pick(s, None));
            Outcome::Signaled {
                signal: i32::try_from(n).unwrap_or(9),
            }
        }
        OutcomeMatcher::Timeout => Outcome::Timeout,
        OutcomeMatcher::SetupError { kind } => Outcome::SetupError {
            kind: kind.first().copied().unwrap_or(SetupErrorKind::Other),
            message: "forged by the lying driver".into(),
        },
        OutcomeMatcher::Failed => Outcome::Exited { code: 1 },
    }
}

fn forge_text(m: &TextMatcher, real: &[u8]) -> Vec<u8> {
    if let Some(eq) = &m.equals {
        return eq.clone().into_bytes();
    }
    let mut text = String::from_utf8_lossy(real).into_owned();
    for c in &m.not_contains {
        text = text.replace(c.as_str(), "");
    }
    for c in &m.contains {
        if !text.contains(c.as_str()) {
            text.push_str(c);
            text.push('\n');
        }
    }
    if let Some(re) = &m.regex {
        if !regex::Regex::new(re).is_ok_and(|r| r.is_match(&text)) {
            text.push_str(&regex_sample(re));
            text.push('\n');
        }
    }
    if m.empty == Some(true) {
        text.clear();
    } else if m.empty == Some(false) && text.is_empty() {
        text.push_str("forged\n");
    }
    if let Some(len) = &m.len {
        let n = usize::try_from(pick(len, i64::try_from(text.len()).ok())).unwrap_or(0);
        let mut bytes = text.into_bytes();
        bytes.resize(n, b'x');
        return bytes;
    }
    text.into_bytes()
}

/// A string the simple regexes of the corpus match: escapes taken
/// literally, the first branch of each group, one digit for `\d+`.
fn regex_sample(re: &str) -> String {
    let mut out = String::new();
    let mut chars = re.chars().peekable();
    let mut skip_depth = 0usize; // > 0: inside a group's later branch
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if skip_depth == 0 {
                        match n {
                            'd' => out.push('1'),
                            's' => out.push(' '),
                            'w' => out.push('a'),
                            other => out.push(other),
                        }
                    }
                }
            }
            '(' => depth += 1,
            ')' => {
                if skip_depth == depth {
                    skip_depth = 0;
                }
                depth = depth.saturating_sub(1);
            }
            '|' if depth > 0 && skip_depth == 0 => skip_depth = depth,
            '^' | '$' | '+' | '*' | '?' => {}
            _ if skip_depth > 0 => {}
            other => out.push(other),
        }
    }
    out
}
