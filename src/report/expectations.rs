//! Writing expectation files from a run (`sandspec expectations update
//! --from RUN.json FILE`).
//!
//! An expectation file lists a backend's known failures, each with the
//! behaviour observed:
//!
//! ```yaml
//! driver: sandlock
//! cases:
//!   "fs.missing.filtered": "the whole run fails when an allowlisted path is missing"
//! ```
//!
//! [`update`] keeps every existing reason (people edit them into plain
//! words), adds each new failure with the harness's fail reason, and
//! removes the cases that now pass. Skips and errors say nothing about the
//! backend, so their entries stay as they are; so do entries for cases the
//! run did not select.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::input::{RunFile, Status};

/// The contents of an expectation file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationFile {
    /// The driver the file is for.
    pub driver: String,
    /// Case id → the behaviour observed.
    #[serde(default)]
    pub cases: BTreeMap<String, String>,
}

impl ExpectationFile {
    /// Parses an expectation file's text; errors name `file:line:col`.
    pub fn parse(text: &str, path: &Path) -> Result<ExpectationFile, String> {
        crate::corpus::reject_yaml_tags(text, path)?;
        serde_saphyr::from_str(text).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            format!("{}:{l}:{c}: {e}", path.display())
        })
    }

    /// The file's text: `header` (comment lines, kept from the old file),
    /// then the driver and the cases sorted by id, every scalar quoted.
    pub fn render(&self, header: &str) -> String {
        let mut out = String::from(header);
        out.push_str(&format!("driver: {}\n", quote(&self.driver)));
        if self.cases.is_empty() {
            out.push_str("cases: {}\n");
        } else {
            out.push_str("cases:\n");
            for (id, reason) in &self.cases {
                out.push_str(&format!("  {}: {}\n", quote(id), quote(reason)));
            }
        }
        out
    }
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
    /// Listed cases still failing, reason kept.
    pub kept: Vec<String>,
    /// Cases that errored: not a verdict on the backend, left as they were.
    pub errored: Vec<String>,
    /// Listed cases the run did not contain (or skipped), left as they were.
    pub untouched: Vec<String>,
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
        for id in &self.removed {
            s.push_str(&format!("\n  - {id} (passes now)"));
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
                "\n  {} listed cases were not run or were skipped, and were kept: {}",
                self.untouched.len(),
                self.untouched.join(", ")
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
    for case in &run.cases {
        let listed = file.cases.contains_key(&case.id);
        match case.status {
            Status::Fail | Status::Xfail => {
                if listed {
                    u.kept.push(case.id.clone());
                } else {
                    let reason = case
                        .reason
                        .clone()
                        .or_else(|| case.expected_failure.clone())
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| "fails (the run recorded no reason)".to_string());
                    file.cases.insert(case.id.clone(), reason.clone());
                    u.added.push((case.id.clone(), reason));
                }
            }
            Status::Pass | Status::Xpass => {
                if file.cases.remove(&case.id).is_some() {
                    u.removed.push(case.id.clone());
                }
            }
            Status::Error => u.errored.push(case.id.clone()),
            Status::Skip => {
                if listed {
                    u.untouched.push(case.id.clone());
                }
            }
        }
    }
    for id in file.cases.keys() {
        if run.case(id).is_none() {
            u.untouched.push(id.clone());
        }
    }
    Ok((file, u))
}

/// Updates (or creates) the expectation file `path` from `run`.
pub fn update(path: &Path, run: &RunFile) -> Result<Update, String> {
    let (existing, header) = match crate::input::read_text(path) {
        Ok(text) => (Some(ExpectationFile::parse(&text, path)?), header_of(&text)),
        Err(e) if e.is_not_found() => (
            None,
            format!(
                "# Known failures of the {} driver, each with the behaviour observed.\n\
                 # Written by `sandspec expectations update`; edit the reasons freely,\n\
                 # updates keep them.\n",
                run.driver.name
            ),
        ),
        Err(e) => return Err(e.to_string()),
    };
    let (file, u) = apply(existing.as_ref(), run)?;
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
                r#"{{"format":"sandspec-report","format_version":1,"driver":{{"name":"sandlock"}},"cases":[{cases}]}}"#
            ),
            Path::new("run.json"),
        )
        .unwrap()
    }

    #[test]
    fn update_keeps_reasons_adds_failures_and_drops_passes() {
        let mut existing = ExpectationFile {
            driver: "sandlock".into(),
            cases: BTreeMap::new(),
        };
        existing
            .cases
            .insert("still.fails".into(), "edited by a person".into());
        existing
            .cases
            .insert("now.passes".into(), "used to fail".into());
        existing
            .cases
            .insert("not.run".into(), "filtered out by --tag".into());
        existing
            .cases
            .insert("errored".into(), "driver died last time".into());
        let r = run(
            r#"{"id":"still.fails","status":"xfail","reason":"harness words"},
               {"id":"now.passes","status":"xpass"},
               {"id":"new.fail","status":"fail","reason":"expected exited 0, got setup_error"},
               {"id":"errored","status":"error","reason":"driver died"},
               {"id":"fine","status":"pass"}"#,
        );
        let (file, u) = apply(Some(&existing), &r).unwrap();
        assert_eq!(file.cases["still.fails"], "edited by a person");
        assert_eq!(file.cases["new.fail"], "expected exited 0, got setup_error");
        assert!(!file.cases.contains_key("now.passes"));
        assert!(!file.cases.contains_key("fine"));
        assert_eq!(file.cases["not.run"], "filtered out by --tag");
        assert_eq!(file.cases["errored"], "driver died last time");
        assert_eq!(u.removed, ["now.passes"]);
        assert_eq!(u.errored, ["errored"]);
        assert_eq!(u.untouched, ["not.run"]);
    }

    #[test]
    fn another_drivers_file_is_refused() {
        let existing = ExpectationFile {
            driver: "bwrap".into(),
            cases: BTreeMap::new(),
        };
        let e = apply(Some(&existing), &run("")).unwrap_err();
        assert!(e.contains("\"bwrap\"") && e.contains("\"sandlock\""), "{e}");
    }

    #[test]
    fn rendered_files_parse_back_with_awkward_reasons() {
        let mut f = ExpectationFile {
            driver: "x".into(),
            cases: BTreeMap::new(),
        };
        f.cases.insert(
            "a.b".into(),
            "quotes \" and: colons, # hashes\nand a newline".into(),
        );
        f.cases.insert("c-d".into(), "yes".into());
        let text = f.render("# header\n");
        assert!(text.starts_with("# header\ndriver: \"x\"\n"), "{text}");
        let back = ExpectationFile::parse(&text, Path::new("f.yaml")).unwrap();
        assert_eq!(back, f);
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
            &run(r#"{"id":"old","status":"fail"},{"id":"new","status":"fail","reason":"r"}"#),
        )
        .unwrap();
        assert_eq!(u.added, [("new".to_string(), "r".to_string())]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n# keep me\n"), "{text}");
        let back = ExpectationFile::parse(&text, &path).unwrap();
        assert_eq!(back.cases["old"], "kept");
        assert_eq!(back.cases["new"], "r");
    }
}
