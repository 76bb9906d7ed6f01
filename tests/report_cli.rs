//! `sandspec report` and `sandspec expectations update` as a person or CI
//! calls them: files in, files and exit codes out.

use std::path::Path;
use std::process::{Command, Output};

fn sandspec(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandspec"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sandspec")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A run file of `driver` with `(id, status, reason)` cases; a failing
/// case failed its outcome check (`exited 0`).
fn run_file(dir: &Path, name: &str, driver: &str, cases: &[(&str, &str, Option<&str>)]) {
    let cases: Vec<serde_json::Value> = cases
        .iter()
        .map(|(id, status, reason)| {
            let failures = if matches!(*status, "fail" | "xfail") {
                serde_json::json!([{"check": "outcome", "kind": "mechanism",
                    "observed": "exited 0", "message": reason}])
            } else {
                serde_json::json!([])
            };
            serde_json::json!({"id": id, "status": status, "reason": reason, "duration_us": 10,
                "outcome": {"exited": {"code": 0}}, "control_outcome": null,
                "expected_failure": null, "tags": ["seed"], "file": "x.yaml",
                "failures": failures})
        })
        .collect();
    let doc = serde_json::json!({"format": "sandspec-report", "format_version": 1,
        "suite_version": "0.1.0", "generated_unix": 0,
        "driver": {"name": driver, "backend": driver, "version": "1", "capabilities": []},
        "counts": {}, "cases": cases});
    std::fs::write(dir.join(name), doc.to_string()).unwrap();
}

#[test]
fn report_writes_a_self_contained_html_page_and_markdown() {
    let d = tempfile::tempdir().unwrap();
    run_file(d.path(), "a.json", "alpha", &[("net.x", "pass", None)]);
    run_file(
        d.path(),
        "b.json",
        "beta",
        &[("net.x", "fail", Some("the connection arrived"))],
    );
    let o = sandspec(
        &[
            "report",
            "a.json",
            "b.json",
            "--html",
            "m.html",
            "--markdown",
            "m.md",
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(d.path().join("m.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("the connection arrived"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    let md = std::fs::read_to_string(d.path().join("m.md")).unwrap();
    assert!(md.contains("| `net.x` | PASS | FAIL [1] |"), "{md}");
}

#[test]
fn report_prints_a_text_matrix_without_output_options() {
    let d = tempfile::tempdir().unwrap();
    run_file(
        d.path(),
        "a.json",
        "alpha",
        &[("fs.y", "skip", Some("no cap"))],
    );
    let o = sandspec(&["report", "a.json"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("fs.y") && out.contains("SKIP"), "{out}");
    assert!(out.contains("fs.y on alpha (skip): no cap"), "{out}");
}

#[test]
fn a_bad_run_file_is_exit_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bad.json"), "{\"format\": 3").unwrap();
    let o = sandspec(&["report", "bad.json"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad.json:1:"), "{}", text(&o));
    let o = sandspec(&["report", "missing.json"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("failed to read missing.json"),
        "{}",
        text(&o)
    );
}

#[test]
fn diff_exits_1_on_new_failures_and_0_otherwise() {
    let d = tempfile::tempdir().unwrap();
    run_file(
        d.path(),
        "old.json",
        "x",
        &[("a", "pass", None), ("b", "fail", Some("old"))],
    );
    run_file(
        d.path(),
        "new.json",
        "x",
        &[("a", "fail", Some("now broken")), ("b", "pass", None)],
    );
    let o = sandspec(&["report", "--diff", "old.json", "new.json"], d.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("new failures (1):\n  a: pass -> fail — now broken"),
        "{out}"
    );
    assert!(out.contains("fixed (1):\n  b: fail -> pass"), "{out}");

    let o = sandspec(&["report", "--diff", "new.json", "old.json"], d.path());
    assert_eq!(o.status.code(), Some(1), "b fails again: {}", text(&o));
    let o = sandspec(&["report", "--diff", "old.json", "old.json"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = sandspec(&["report", "--diff", "old.json"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn expectations_update_creates_then_keeps_reasons() {
    let d = tempfile::tempdir().unwrap();
    run_file(
        d.path(),
        "run1.json",
        "mybox",
        &[("a", "fail", Some("harness words")), ("b", "pass", None)],
    );
    let o = sandspec(
        &["expectations", "update", "--from", "run1.json", "x.yaml"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("created x.yaml: 1 added"), "{}", text(&o));
    let written = std::fs::read_to_string(d.path().join("x.yaml")).unwrap();
    assert!(written.contains("driver: \"mybox\""), "{written}");
    // A person rewrites the reason; the next run keeps it.
    std::fs::write(
        d.path().join("x.yaml"),
        written.replace("harness words", "what mybox really does"),
    )
    .unwrap();
    run_file(
        d.path(),
        "run2.json",
        "mybox",
        &[
            ("a", "xfail", Some("harness words")),
            ("b", "fail", Some("new")),
        ],
    );
    let o = sandspec(
        &["expectations", "update", "--from", "run2.json", "x.yaml"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let written = std::fs::read_to_string(d.path().join("x.yaml")).unwrap();
    assert!(
        written.contains("\"a\":\n    reason: \"what mybox really does\"\n    check: \"outcome\"\n    observed: \"exited 0\"\n"),
        "{written}"
    );
    assert!(
        written.contains("\"b\":\n    reason: \"new\"\n"),
        "{written}"
    );

    // The file the update writes is one `sandspec run --expect` accepts.
    let x = sandspec::harness::expectations::Expectations::load(&d.path().join("x.yaml"))
        .expect("the harness loads the written file");
    assert_eq!(x.driver, "mybox");
    assert_eq!(x.cases.len(), 2);

    run_file(d.path(), "other.json", "otherbox", &[]);
    let o = sandspec(
        &["expectations", "update", "--from", "other.json", "x.yaml"],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
