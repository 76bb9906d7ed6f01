//! Writing expectation files from a run (`sandspec expectations update
//! --from RUN.json FILE`), in the typed form
//! ([`crate::harness::expectations`]): each entry records which checks
//! failed and what was observed.
//!
//! [`update`] keeps every existing reason, `bug:` and `if:` (people write
//! those), re-records how each listed case fails now, adds each new
//! failure with the harness's reason, and removes the entries of cases that
//! now pass. A failure that leaked is never written: no entry could excuse
//! it. Skips and errors say nothing about the backend, so their entries
//! stay as they are; so do entries for cases the run did not select, and
//! entries whose `if:` does not hold on the run's host. A file in the
//! untyped form of earlier versions (`ID: "reason"`) is read too: its
//! reasons are kept, which is how such a file is migrated.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::input::{RunFile, Status};
use crate::harness::expectations::{
    describe_fingerprints, Condition, Expectations, Fingerprint, HostConditions, Listed,
};

/// The contents of an expectation file, as `update` works on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectationFile {
    /// The driver the file is for.
    pub driver: String,
    /// Case id → its entries (the first whose `if` holds applies). An
    /// entry read from the untyped form has no `fails` yet.
    pub cases: BTreeMap<String, Vec<Listed>>,
}

/// The untyped form of earlier versions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UntypedFile {
    driver: String,
    #[serde(default)]
    cases: BTreeMap<String, String>,
}

impl ExpectationFile {
    /// Parses an expectation file's text, typed or untyped; errors (of the
    /// typed form) name `file:line:col`.
    pub fn parse(text: &str, path: &Path) -> Result<ExpectationFile, String> {
        crate::corpus::reject_yaml_tags(text, path)?;
        match Expectations::parse(text, path) {
            Ok(x) => Ok(ExpectationFile {
                driver: x.driver,
                cases: x.cases,
            }),
            Err(typed) => match serde_saphyr::from_str::<UntypedFile>(text) {
                Ok(old) => Ok(ExpectationFile {
                    driver: old.driver,
                    cases: old
                        .cases
                        .into_iter()
                        .map(|(id, reason)| {
                            let e = Listed {
                                reason,
                                bug: None,
                                fails: Vec::new(),
                                condition: None,
                            };
                            (id, vec![e])
                        })
                        .collect(),
                }),
                Err(_) => Err(typed),
            },
        }
    }

    /// The file's text: `header` (comment lines, kept from the old file),
    /// then the driver and the cases sorted by id, every scalar quoted.
    pub fn render(&self, header: &str) -> String {
        let mut out = String::from(header);
        out.push_str(&format!("driver: {}\n", quote(&self.driver)));
        if self.cases.is_empty() {
            out.push_str("cases: {}\n");
            return out;
        }
        out.push_str("cases:\n");
        for (id, entries) in &self.cases {
            out.push_str(&format!("  {}:\n", quote(id)));
            match entries.as_slice() {
                [one] if one.condition.is_none() => render_entry(&mut out, one, "    ", "    "),
                many => {
                    for e in many {
                        render_entry(&mut out, e, "    - ", "      ");
                    }
                }
            }
        }
        out
    }
}

/// One entry's fields, the first line after `first`, the others after
/// `rest` (for list items: `- ` then two spaces more).
fn render_entry(out: &mut String, e: &Listed, first: &str, rest: &str) {
    let mut lines: Vec<String> = Vec::new();
    if let Some(c) = &e.condition {
        lines.push(format!("if: {}", render_condition(c)));
    }
    lines.push(format!("reason: {}", quote(&e.reason)));
    if let Some(b) = &e.bug {
        lines.push(format!("bug: {}", quote(b)));
    }
    match e.fails.as_slice() {
        [one] => {
            lines.push(format!("check: {}", quote(&one.check)));
            lines.push(format!("observed: {}", quote(&one.observed)));
        }
        many => {
            lines.push("fails:".into());
            for f in many {
                lines.push(format!(
                    "  - {{check: {}, observed: {}}}",
                    quote(&f.check),
                    quote(&f.observed)
                ));
            }
        }
    }
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if i == 0 { first } else { rest });
        out.push_str(l);
        out.push('\n');
    }
}

fn render_condition(c: &Condition) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &c.landlock_abi {
        parts.push(format!("landlock_abi: {}", quote(a)));
    }
    if let Some(r) = c.root {
        parts.push(format!("root: {r}"));
    }
    if let Some(a) = &c.arch {
        parts.push(format!("arch: {}", quote(a)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// A YAML double-quoted scalar (a JSON string is one).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// The leading comment block of a file (comment and blank lines before the
/// first other line).
fn header_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || t.is_empty() {
            out.push_str(line);
            out.push('\n');
        } else {
            break;
        }
    }
    out
}

/// What [`update`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// New failures, with the reason written for them.
    pub added: Vec<(String, String)>,
    /// Listed cases that now pass, removed.
    pub removed: Vec<String>,
    /// Listed cases still failing, reason kept; how they fail re-recorded.
    pub kept: Vec<String>,
    /// Of `kept`: the ones whose failure changed (or was first recorded),
    /// with the new fingerprints.
    pub retyped: Vec<(String, String)>,
    /// Failures that leaked: never written (no entry could excuse them).
    pub leaked: Vec<String>,
    /// Cases that errored: not a verdict on the backend, left as they were.
    pub errored: Vec<String>,
    /// Listed cases the run did not contain, skipped, or whose `if` does
    /// not hold on the run's host: left as they were.
    pub untouched: Vec<String>,
    /// Listed cases the run skipped, removed (`--prune-skipped`).
    pub pruned: Vec<String>,
    /// Entries still in the untyped form (no run of theirs said how they
    /// fail): the file will not load until a run re-records them.
    pub untyped: Vec<String>,
    /// The file did not exist and was created.
    pub created: bool,
}

impl Update {
    /// A summary for people.
    pub fn describe(&self, file: &Path) -> String {
        let mut s = format!(
            "{} {}: {} added, {} removed, {} kept",
            if self.created { "created" } else { "updated" },
            file.display(),
            self.added.len(),
            self.removed.len(),
            self.kept.len()
        );
        for (id, reason) in &self.added {
            s.push_str(&format!("\n  + {id}: {reason}"));
        }
        for (id, how) in &self.retyped {
            s.push_str(&format!("\n  ~ {id}: now fails as {how}"));
        }
        for id in &self.removed {
            s.push_str(&format!("\n  - {id} (passes now)"));
        }
        for id in &self.pruned {
            s.push_str(&format!("\n  - {id} (skipped by this run)"));
        }
        if !self.leaked.is_empty() {
            s.push_str(&format!(
                "\n  {} cases leaked (the harness saw the isolation broken) and were not \
                 written, since no entry can excuse a leak: {}",
                self.leaked.len(),
                self.leaked.join(", ")
            ));
        }
        if !self.errored.is_empty() {
            s.push_str(&format!(
                "\n  {} cases errored and were left as they were: {}",
                self.errored.len(),
                self.errored.join(", ")
            ));
        }
        if !self.untouched.is_empty() {
            s.push_str(&format!(
                "\n  {} listed cases were not run, were skipped or do not apply on the run's \
                 host, and were kept: {}",
                self.untouched.len(),
                self.untouched.join(", ")
            ));
        }
        if !self.untyped.is_empty() {
            s.push_str(&format!(
                "\n  warning: {} entries still say only why, not how, the case fails (no run \
                 of theirs was given); the file will not load until they are re-recorded: {}",
                self.untyped.len(),
                self.untyped.join(", ")
            ));
        }
        s
    }
}

/// The updated expectations for `existing` (None: no file yet) after
/// `run`, and what changed.
pub fn apply(
    existing: Option<&ExpectationFile>,
    run: &RunFile,
    prune_skipped: bool,
) -> Result<(ExpectationFile, Update), String> {
    let mut u = Update {
        created: existing.is_none(),
        ..Update::default()
    };
    let mut file = match existing {
        Some(x) => {
            if x.driver != run.driver.name {
                return Err(format!(
                    "the expectation file is for driver {:?} but {} is a run of {:?}",
                    x.driver,
                    run.path.display(),
                    run.driver.name
                ));
            }
            x.clone()
        }
        None => ExpectationFile {
            driver: run.driver.name.clone(),
            cases: BTreeMap::new(),
        },
    };
    let host = run.kernel.as_ref().map(HostConditions::of);
    // The entry that applies on the run's host: the first whose `if`
    // holds (without the run's host facts, only an entry without `if`).
    let applicable = |entries: &[Listed]| -> Option<usize> {
        entries.iter().position(|e| match (&e.condition, &host) {
            (None, _) => true,
            (Some(c), Some(h)) => c.holds(h).unwrap_or(false),
            (Some(_), None) => false,
        })
    };
    for case in &run.cases {
        let listed = file.cases.contains_key(&case.id);
        let at = file.cases.get(&case.id).and_then(|e| applicable(e));
        match case.status {
            Status::Fail | Status::Xfail => {
                if case.failures.iter().any(|f| f.leak) {
                    u.leaked.push(case.id.clone());
                    continue;
                }
                if case.failures.is_empty() {
                    return Err(format!(
                        "{}: case {} failed, but the file does not say which checks failed \
                         (`failures`): it was written by an earlier sandspec; run the corpus \
                         again with this one",
                        run.path.display(),
                        case.id
                    ));
                }
                let mut fails: Vec<Fingerprint> =
                    case.failures.iter().map(Fingerprint::of).collect();
                fails.sort();
                fails.dedup();
                match at {
                    Some(i) => {
                        let e = &mut file.cases.get_mut(&case.id).expect("listed")[i];
                        if e.fails != fails {
                            u.retyped
                                .push((case.id.clone(), describe_fingerprints(&fails)));
                            e.fails = fails;
                        }
                        u.kept.push(case.id.clone());
                    }
                    None => {
                        let reason = case
                            .reason
                            .clone()
                            .filter(|r| !r.trim().is_empty())
                            .unwrap_or_else(|| describe_fingerprints(&fails));
                        let entry = Listed {
                            reason: reason.clone(),
                            bug: None,
                            fails,
                            condition: None,
                        };
                        // After any conditional entries: they apply first
                        // on their hosts, this one everywhere else.
                        file.cases.entry(case.id.clone()).or_default().push(entry);
                        u.added.push((case.id.clone(), reason));
                    }
                }
            }
            Status::Pass | Status::Xpass => {
                if let Some(i) = at {
                    let list = file.cases.get_mut(&case.id).expect("listed");
                    list.remove(i);
                    if list.is_empty() {
                        file.cases.remove(&case.id);
                    }
                    u.removed.push(case.id.clone());
                }
            }
            Status::Error => u.errored.push(case.id.clone()),
            Status::Skip if listed && prune_skipped => {
                file.cases.remove(&case.id);
                u.pruned.push(case.id.clone());
            }
            Status::Skip => {
                if listed {
                    u.untouched.push(case.id.clone());
                }
            }
        }
        if matches!(
            case.status,
            Status::Fail | Status::Xfail | Status::Pass | Status::Xpass
        ) && at.is_none()
            && listed
            && !u.added.iter().any(|(id, _)| id == &case.id)
        {
            u.untouched.push(case.id.clone());
        }
    }
    for id in file.cases.keys() {
        if run.case(id).is_none() {
            u.untouched.push(id.clone());
        }
    }
    for (id, entries) in &file.cases {
        if entries.iter().any(|e| e.fails.is_empty()) {
            u.untyped.push(id.clone());
        }
    }
    Ok((file, u))
}

/// Updates (or creates) the expectation file `path` from `run`; with
/// `prune_skipped`, the entries of cases the run skipped are removed (for
/// a driver that no longer claims what they need).
pub fn update(path: &Path, run: &RunFile, prune_skipped: bool) -> Result<Update, String> {
    let (existing, header) = match crate::input::read_text(path) {
        Ok(text) => (Some(ExpectationFile::parse(&text, path)?), header_of(&text)),
        Err(e) if e.is_not_found() => (
            None,
            format!(
                "# Known failures of the {} driver: for each, the checks that fail and what\n\
                 # was observed, and why. Written by `sandspec expectations update`; edit the\n\
                 # reasons freely, add `bug:` URLs and `if:` conditions: updates keep them.\n",
                run.driver.name
            ),
        ),
        Err(e) => return Err(e.to_string()),
    };
    let (file, u) = apply(existing.as_ref(), run, prune_skipped)?;
    let text = file.render(&header);
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, &text).map_err(|e| format!("failed to write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("failed to replace {}: {e}", path.display()))?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cases: &str) -> RunFile {
        RunFile::parse(
            &format!(
                r#"{{"format":"sandspec-report","format_version":1,"driver":{{"name":"sandlock"}},
                "kernel":{{"release":"6.18","machine":"x86_64","landlock":{{"abi":7}},"seccomp":true,
                "seccomp_user_notif":true,"user_namespaces":true,"euid":0}},"cases":[{cases}]}}"#
            ),
            Path::new("run.json"),
        )
        .unwrap()
    }

    fn fail(check: &str, observed: &str) -> String {
        format!(r#"{{"check":"{check}","kind":"mechanism","observed":"{observed}","message":"m"}}"#)
    }

    fn entry(reason: &str, fails: &[(&str, &str)]) -> Listed {
        Listed {
            reason: reason.into(),
            bug: None,
            fails: fails
                .iter()
                .map(|(c, o)| Fingerprint {
                    check: c.to_string(),
                    observed: o.to_string(),
                })
                .collect(),
            condition: None,
        }
    }

    #[test]
    fn update_keeps_reasons_records_how_cases_fail_and_drops_passes() {
        let mut existing = ExpectationFile {
            driver: "sandlock".into(),
            cases: BTreeMap::new(),
        };
        let mut edited = entry("edited by a person", &[("outcome", "exited 1")]);
        edited.bug = Some("https://example.org/9".into());
        existing.cases.insert("still.fails".into(), vec![edited]);
        existing.cases.insert(
            "now.passes".into(),
            vec![entry("used to fail", &[("outcome", "x")])],
        );
        existing.cases.insert(
            "not.run".into(),
            vec![entry("filtered out by --tag", &[("a", "b")])],
        );
        existing.cases.insert(
            "errored".into(),
            vec![entry("driver died last time", &[("a", "b")])],
        );
        let r = run(&format!(
            r#"{{"id":"still.fails","status":"fail","reason":"harness words","failures":[{}]}},
               {{"id":"now.passes","status":"xpass"}},
               {{"id":"new.fail","status":"fail","reason":"expected exited 0, got setup_error","failures":[{},{}]}},
               {{"id":"leaky","status":"fail","reason":"traffic","failures":[{{"check":"oracle.tcp.received","kind":"property","observed":">0","message":"m","leak":true}}]}},
               {{"id":"errored","status":"error","reason":"driver died"}},
               {{"id":"fine","status":"pass"}}"#,
            fail("outcome", "exited 2"),
            fail("outcome", "setup_error invalid_policy"),
            fail("probe", "no report"),
        ));
        let (file, u) = apply(Some(&existing), &r, false).unwrap();
        let still = &file.cases["still.fails"][0];
        assert_eq!(still.reason, "edited by a person");
        assert_eq!(still.bug.as_deref(), Some("https://example.org/9"));
        assert_eq!(still.fails, entry("", &[("outcome", "exited 2")]).fails);
        assert_eq!(
            u.retyped,
            [("still.fails".to_string(), "outcome: exited 2".to_string())]
        );
        let new = &file.cases["new.fail"][0];
        assert_eq!(new.reason, "expected exited 0, got setup_error");
        assert_eq!(new.fails.len(), 2);
        assert!(!file.cases.contains_key("now.passes"));
        assert!(!file.cases.contains_key("fine"));
        assert!(!file.cases.contains_key("leaky"));
        assert_eq!(u.leaked, ["leaky"]);
        assert_eq!(file.cases["not.run"][0].reason, "filtered out by --tag");
        assert_eq!(file.cases["errored"][0].reason, "driver died last time");
        assert_eq!(u.removed, ["now.passes"]);
        assert_eq!(u.errored, ["errored"]);
        assert_eq!(u.untouched, ["not.run"]);
    }

    #[test]
    fn conditional_entries_are_updated_only_where_they_apply() {
        let mut as_user = entry("as a user", &[("probe.errno", "none")]);
        as_user.condition = Some(Condition {
            root: Some(false),
            ..Condition::default()
        });
        let existing = ExpectationFile {
            driver: "sandlock".into(),
            cases: [("a".to_string(), vec![as_user.clone()])].into(),
        };
        // The run is as root: the user entry does not apply; the failure
        // there is new, and goes after it.
        let r = run(&format!(
            r#"{{"id":"a","status":"fail","reason":"as root","failures":[{}]}}"#,
            fail("outcome", "exited 0")
        ));
        let (file, u) = apply(Some(&existing), &r, false).unwrap();
        assert_eq!(file.cases["a"].len(), 2);
        assert_eq!(file.cases["a"][0], as_user);
        assert_eq!(file.cases["a"][1].reason, "as root");
        assert_eq!(u.added.len(), 1);
        // A pass as root removes nothing that applies only to users.
        let (file, u) = apply(
            Some(&existing),
            &run(r#"{"id":"a","status":"pass"}"#),
            false,
        )
        .unwrap();
        assert_eq!(file.cases["a"], [as_user]);
        assert!(u.removed.is_empty());
        assert_eq!(u.untouched, ["a"]);
    }

    #[test]
    fn an_untyped_file_is_migrated_keeping_its_reasons() {
        let old = "# header\ndriver: sandlock\ncases:\n  a: \"why, in words\"\n  b: \"passes now\"\n  c: \"not run\"\n";
        let x = ExpectationFile::parse(old, Path::new("x.yaml")).unwrap();
        let r = run(&format!(
            r#"{{"id":"a","status":"fail","reason":"r","failures":[{}]}},{{"id":"b","status":"pass"}}"#,
            fail("outcome", "exited 3")
        ));
        let (file, u) = apply(Some(&x), &r, false).unwrap();
        assert_eq!(file.cases["a"][0].reason, "why, in words");
        assert_eq!(file.cases["a"][0].fails.len(), 1);
        assert!(!file.cases.contains_key("b"));
        // Not run: still untyped, and said so.
        assert_eq!(u.untyped, ["c"]);
        assert!(u.describe(Path::new("x.yaml")).contains("will not load"));
        // A case the run skipped is removed only when asked.
        let skipped = run(r#"{"id":"c","status":"skip","reason":"the driver does not claim x"}"#);
        let (file, u) = apply(Some(&x), &skipped, false).unwrap();
        assert!(file.cases.contains_key("c") && u.pruned.is_empty());
        let (file, u) = apply(Some(&x), &skipped, true).unwrap();
        assert!(!file.cases.contains_key("c"));
        assert_eq!(u.pruned, ["c"]);
    }

    #[test]
    fn a_failure_without_its_checks_is_refused() {
        let r = run(r#"{"id":"a","status":"fail","reason":"old file"}"#);
        let e = apply(None, &r, false).unwrap_err();
        assert!(e.contains("earlier sandspec"), "{e}");
    }

    #[test]
    fn another_drivers_file_is_refused() {
        let existing = ExpectationFile {
            driver: "bwrap".into(),
            cases: BTreeMap::new(),
        };
        let e = apply(Some(&existing), &run(""), false).unwrap_err();
        assert!(e.contains("\"bwrap\"") && e.contains("\"sandlock\""), "{e}");
    }

    #[test]
    fn rendered_files_load_back_with_awkward_reasons_and_every_form() {
        let mut f = ExpectationFile {
            driver: "x".into(),
            cases: BTreeMap::new(),
        };
        let mut awkward = entry(
            "quotes \" and: colons, # hashes\nand a newline",
            &[("outcome", "exited 1")],
        );
        awkward.bug = Some("https://example.org/a?b=c#d".into());
        f.cases.insert("a.b".into(), vec![awkward]);
        f.cases.insert(
            "c-d".into(),
            vec![entry(
                "two",
                &[("outcome", "timeout"), ("stdout.equals", "empty")],
            )],
        );
        let mut cond = entry("conditional", &[("probe.errno", "EPERM")]);
        cond.condition = Some(Condition {
            landlock_abi: Some(">=6".into()),
            root: Some(true),
            arch: Some("x86_64".into()),
        });
        f.cases.insert(
            "e".into(),
            vec![cond, entry("otherwise", &[("outcome", "exited 0")])],
        );
        let text = f.render("# header\n");
        assert!(text.starts_with("# header\ndriver: \"x\"\n"), "{text}");
        let back = ExpectationFile::parse(&text, Path::new("f.yaml")).unwrap();
        assert_eq!(back, f, "{text}");
        // And the harness loads it as it is.
        Expectations::parse(&text, Path::new("f.yaml")).unwrap();
    }

    #[test]
    fn update_writes_a_file_and_keeps_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yaml");
        std::fs::write(
            &path,
            "# mine\n# keep me\ndriver: sandlock\ncases:\n  old: \"kept\"\n",
        )
        .unwrap();
        let u = update(
            &path,
            &run(&format!(
                r#"{{"id":"old","status":"fail","failures":[{}]}},{{"id":"new","status":"fail","reason":"r","failures":[{}]}}"#,
                fail("outcome", "exited 1"),
                fail("probe.ok", "true")
            )),
            false,
        )
        .unwrap();
        assert_eq!(u.added, [("new".to_string(), "r".to_string())]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n# keep me\n"), "{text}");
        let back = Expectations::load(&path).unwrap();
        assert_eq!(back.cases["old"][0].reason, "kept");
        assert_eq!(back.cases["new"][0].reason, "r");
        assert_eq!(back.cases["new"][0].fails[0].check, "probe.ok");
    }
}
