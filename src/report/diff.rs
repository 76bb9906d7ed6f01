//! Comparing two runs (`sandspec report --diff OLD.json NEW.json`): which
//! cases newly fail, which are fixed, which changed otherwise, which did not
//! change.
//!
//! A case "fails" when its status is `fail`, `xfail` or `error` (the backend
//! did not do what the case asks, or could not be checked). `skip` is not a
//! failure, so a case that starts failing once its capability is claimed
//! counts as a new failure. A case whose status stayed but whose failing
//! checks (or, for a pass, its differing mechanisms) changed is `changed`:
//! it fails, or passes, another way.

use std::fmt::Write as _;

use super::input::{is_failure, RunFile, Status};

/// One case that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The case id.
    pub id: String,
    /// Its status in the old run (`None`: not in it).
    pub old: Option<Status>,
    /// Its status in the new run (`None`: not in it).
    pub new: Option<Status>,
    /// The new run's reason (or the old one's, for a removed case).
    pub reason: Option<String>,
}

/// The comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Failing now, not failing (or absent) before.
    pub new_failures: Vec<Change>,
    /// Failing before, present and not failing now.
    pub fixed: Vec<Change>,
    /// Status changed without crossing the failing line (e.g. pass → skip,
    /// fail → error), or a passing case was added or removed.
    pub changed: Vec<Change>,
    /// Same status in both (ids only).
    pub unchanged: Vec<String>,
}

fn failing(s: Option<Status>) -> bool {
    s.is_some_and(is_failure)
}

/// Compares `old` with `new`, cases in `new`'s order, then the ones only
/// `old` has.
pub fn diff(old: &RunFile, new: &RunFile) -> Diff {
    let mut d = Diff::default();
    let mut ids: Vec<&str> = new.cases.iter().map(|c| c.id.as_str()).collect();
    for c in &old.cases {
        if new.case(&c.id).is_none() {
            ids.push(&c.id);
        }
    }
    for id in ids {
        let o = old.case(id);
        let n = new.case(id);
        let change = Change {
            id: id.to_string(),
            old: o.map(|c| c.status),
            new: n.map(|c| c.status),
            reason: n.or(o).and_then(|c| c.reason.clone()),
        };
        let how = |c: Option<&super::input::RunCase>| {
            c.map(|c| {
                let mut v: Vec<String> = c
                    .failures
                    .iter()
                    .chain(&c.mechanism_differs)
                    .map(|f| f.fingerprint())
                    .collect();
                v.sort();
                v
            })
        };
        if change.old == change.new && how(o) != how(n) {
            d.changed.push(change);
        } else if change.old == change.new {
            d.unchanged.push(change.id);
        } else if failing(change.new) && !failing(change.old) {
            d.new_failures.push(change);
        } else if failing(change.old) && change.new.is_some() && !failing(change.new) {
            d.fixed.push(change);
        } else {
            d.changed.push(change);
        }
    }
    d
}

fn status_name(s: Option<Status>) -> &'static str {
    s.map(Status::as_str).unwrap_or("absent")
}

/// The comparison for people.
pub fn render(d: &Diff, old: &RunFile, new: &RunFile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "old: {} ({} {}), {}\nnew: {} ({} {}), {}\n",
        old.driver.name,
        old.driver.backend,
        old.driver.version,
        old.path.display(),
        new.driver.name,
        new.driver.backend,
        new.driver.version,
        new.path.display()
    );
    let section = |out: &mut String, title: &str, items: &[Change]| {
        let _ = writeln!(out, "{title} ({}):", items.len());
        if items.is_empty() {
            out.push_str("  none\n");
        }
        for c in items {
            let _ = write!(
                out,
                "  {}: {} -> {}",
                c.id,
                status_name(c.old),
                status_name(c.new)
            );
            if let Some(r) = &c.reason {
                let _ = write!(out, " — {}", r.replace('\n', "; "));
            }
            out.push('\n');
        }
        out.push('\n');
    };
    section(&mut out, "new failures", &d.new_failures);
    section(&mut out, "fixed", &d.fixed);
    section(&mut out, "changed", &d.changed);
    let _ = writeln!(out, "unchanged: {} cases", d.unchanged.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(file: &str, cases: &str) -> RunFile {
        RunFile::parse(
            &format!(
                r#"{{"format":"sandspec-report","format_version":1,"driver":{{"name":"x"}},"cases":[{cases}]}}"#
            ),
            Path::new(file),
        )
        .unwrap()
    }

    #[test]
    fn the_same_status_reached_another_way_is_a_change() {
        let f = |check: &str, observed: &str| {
            format!(
                r#"{{"check":"{check}","kind":"mechanism","observed":"{observed}","message":"m"}}"#
            )
        };
        let old = run(
            "old.json",
            &format!(
                r#"{{"id":"a","status":"xfail","failures":[{}]}},{{"id":"b","status":"pass","mechanism_differs":[{}]}},{{"id":"c","status":"pass"}}"#,
                f("outcome", "exited 137"),
                f("probe.errno", "ECONNREFUSED")
            ),
        );
        let new = run(
            "new.json",
            &format!(
                r#"{{"id":"a","status":"xfail","failures":[{}]}},{{"id":"b","status":"pass"}},{{"id":"c","status":"pass"}}"#,
                f("outcome", "exited 1")
            ),
        );
        let d = diff(&old, &new);
        let ids: Vec<&str> = d.changed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(d.unchanged, ["c"]);
    }

    #[test]
    fn cases_are_sorted_into_new_failures_fixed_changed_and_unchanged() {
        let old = run(
            "old.json",
            r#"{"id":"a","status":"pass"},{"id":"b","status":"fail"},{"id":"c","status":"pass"},
               {"id":"d","status":"skip"},{"id":"e","status":"xfail"},{"id":"gone","status":"fail"}"#,
        );
        let new = run(
            "new.json",
            r#"{"id":"a","status":"fail","reason":"leaked"},{"id":"b","status":"pass"},
               {"id":"c","status":"pass"},{"id":"d","status":"error","reason":"driver died"},
               {"id":"e","status":"skip"},{"id":"added","status":"fail"}"#,
        );
        let d = diff(&old, &new);
        let ids = |v: &[Change]| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&d.new_failures), ["a", "d", "added"]);
        assert_eq!(ids(&d.fixed), ["b", "e"]);
        assert_eq!(ids(&d.changed), ["gone"]);
        assert_eq!(d.unchanged, ["c"]);
        assert_eq!(d.new_failures[0].reason.as_deref(), Some("leaked"));
        let text = render(&d, &old, &new);
        assert!(text.contains("new failures (3):"), "{text}");
        assert!(text.contains("  a: pass -> fail — leaked"), "{text}");
        assert!(text.contains("  gone: fail -> absent"), "{text}");
    }
}
