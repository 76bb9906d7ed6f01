//! `sandspec list`: prints the cases of a corpus; a malformed case file is
//! exit code 2 with `file:line:col` on stderr.

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;

const CASE: &str = "\
id: fs.read.listed
summary: a listed file can be read
tags: [filesystem]
run: {argv: [/bin/true]}
expect: {outcome: {exited: {code: 0}}}
";

fn sandspec() -> Command {
    Command::cargo_bin("sandspec").unwrap()
}

#[test]
fn list_prints_every_case_and_filters_by_tag() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("a.yaml"), CASE).unwrap();
    fs::write(
        tmp.path().join("b.yaml"),
        CASE.replace("fs.read.listed", "net.deny.other")
            .replace("[filesystem]", "[network]"),
    )
    .unwrap();
    sandspec()
        .args(["list", "--cases"])
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("fs.read.listed")
                .and(predicate::str::contains("net.deny.other")),
        );
    sandspec()
        .args(["list", "--tag", "network", "--cases"])
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("net.deny.other")
                .and(predicate::str::contains("fs.read.listed").not()),
        );
}

#[test]
fn list_rejects_a_malformed_case_with_file_line_col_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    fs::write(&bad, CASE.replace("run:", "rnu:")).unwrap();
    sandspec()
        .args(["list", "--cases"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "{}:4:1: unknown field `rnu`",
            bad.display()
        )));
}

#[test]
fn list_rejects_an_unknown_tag_with_exit_2() {
    sandspec()
        .args(["list", "--tag", "isolaton"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown tag \"isolaton\""));
}

#[test]
fn a_reader_that_stops_early_does_not_make_it_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandspec"))
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before it writes: like `sandspec list | head -0`.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE like any filter; or, had it written everything
    // before the pipe closed (a slow start of this test), exit 0.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "{:?}",
        out.status
    );
}
