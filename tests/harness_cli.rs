//! `sandspec run` and `sandspec driver-check` from the outside: exit codes,
//! reports, expectation files, and clear errors for bad input.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sandspec() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandspec"));
    c.env("NO_COLOR", "1");
    c
}

fn run_basic() -> Command {
    let mut c = sandspec();
    c.arg("run")
        .arg("--cases")
        .arg(fixtures().join("cases/basic"));
    c
}

/// Landlock works on this kernel. Without it (the kernel matrix boots such
/// kernels) the reference sandbox refuses every run, and its cases are
/// skipped with that reason: the tests below check that instead.
fn landlock_works() -> bool {
    matches!(
        sandspec::kernel::landlock(),
        sandspec::kernel::LandlockSupport::Abi(_)
    )
}

const NO_LANDLOCK_SKIP: &str = "SKIP  fixture.echo: the backend requires Landlock ABI 1";

#[test]
fn a_green_run_exits_0_and_writes_json_and_junit_reports() {
    let d = tempfile::tempdir().unwrap();
    let (json, junit) = (d.path().join("r.json"), d.path().join("r.xml"));
    let run = run_basic()
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(0);
    if !landlock_works() {
        run.stdout(predicate::str::contains(NO_LANDLOCK_SKIP))
            .stdout(predicate::str::contains(
                "refuses every run on this kernel: its cases are skipped",
            ));
        let report = sandspec::harness::report::json::read(&json).unwrap();
        assert_eq!(report.driver.requires_landlock_abi, Some(1));
        assert_eq!((report.counts.pass, report.counts.skip), (0, 7));
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains("requires Landlock ABI 1"), "{xml}");
        return;
    }
    run.stdout(predicate::str::contains("PASS  fixture.echo"))
        .stdout(predicate::str::contains(
            "SKIP  fixture.unmet-requirement: needs sandspec-fixture-no-such-program on PATH",
        ))
        .stdout(predicate::str::contains("result: ok"));
    let report = sandspec::harness::report::json::read(&json).unwrap();
    assert_eq!(report.driver.name, "reference");
    assert_eq!(report.driver.backend, "sandspec-reference");
    assert_eq!(report.cases.len(), 7);
    assert_eq!(report.counts.pass, 6);
    assert_eq!(report.counts.skip, 1);
    let timeout = report
        .cases
        .iter()
        .find(|c| c.id == "fixture.timeout")
        .unwrap();
    assert_eq!(timeout.outcome, Some(sandspec::policy::Outcome::Timeout));
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(raw["cases"][0]["status"], "pass");
    assert!(raw["kernel"]["landlock"].is_object() || raw["kernel"]["landlock"].is_string());
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testcase name=\"fixture.echo\""), "{xml}");
    assert!(
        xml.contains("<skipped message=\"needs sandspec-fixture-no-such-program on PATH\""),
        "{xml}"
    );
}

#[test]
fn isolation_cases_under_none_fail_the_run_with_exit_1() {
    run_basic()
        .args(["--driver", "none", "--tag", "isolation"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  fixture.write-denied"))
        .stdout(predicate::str::contains("FAIL  fixture.no-landlock"))
        .stdout(predicate::str::contains("FAIL  fixture.net-deny-tcp"))
        .stdout(predicate::str::contains(
            "result: FAILED (3 fail, 0 error, 0 xpass)",
        ));
}

fn expect_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("expect.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_leak_fails_even_when_listed_in_the_expectation_file() {
    // Under `none` every isolation case leaks: the harness sees the file,
    // the connection. Listing exactly that failure excuses nothing.
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(
        d.path(),
        "driver: none\ncases:\n  \
         fixture.write-denied:\n    reason: no sandbox\n    fails:\n      \
         - {check: outcome, observed: exited 0}\n      - {check: host.absent, observed: exists}\n  \
         fixture.net-deny-tcp:\n    reason: no sandbox\n    fails:\n      \
         - {check: probe.ok, observed: 'true'}\n      - {check: oracle.tcp.received, observed: '>0'}\n",
    );
    run_basic()
        .args([
            "--driver",
            "none",
            "--filter",
            "write-denied|net-deny-tcp",
            "--expect",
        ])
        .arg(&x)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  fixture.write-denied"))
        .stdout(predicate::str::contains("FAIL  fixture.net-deny-tcp"))
        .stdout(predicate::str::contains("which no expectation excuses"))
        .stdout(predicate::str::contains("XFAIL").not());
}

fn run_mechanism() -> Command {
    let mut c = sandspec();
    c.arg("run")
        .arg("--cases")
        .arg(fixtures().join("cases/mechanism"));
    c
}

/// The errno the reference gives fixture.errno-differs, read from a run's
/// JSON report (it depends on the mechanism: Landlock's EACCES, seccomp's
/// EPERM).
fn reference_errno(dir: &Path) -> String {
    let json = dir.join("errno.json");
    let _ = run_mechanism().arg("--json").arg(&json).output().unwrap();
    let report = sandspec::harness::report::json::read(&json).unwrap();
    let f = &report.cases[0].failures;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].check, "probe.errno", "{f:?}");
    f[0].observed.clone()
}

/// An expectation file listing fixture.errno-differs as failing with
/// `errno`: first an entry for hosts without Landlock (which does not
/// apply here, so it must be skipped), then the one for every other host.
fn errno_listed(errno: &str) -> String {
    format!(
        "driver: reference\ncases:\n  fixture.errno-differs:\n    \
         - if: {{landlock_abi: none}}\n      reason: never here\n      \
         check: outcome\n      observed: setup_error landlock_unavailable\n    \
         - reason: the reference refuses the connect\n      check: probe.errno\n      \
         observed: {errno}\n"
    )
}

#[test]
fn a_failure_exactly_as_listed_is_xfail_and_the_gate_passes() {
    if !landlock_works() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(d.path(), &errno_listed(&reference_errno(d.path())));
    run_mechanism()
        .arg("--expect")
        .arg(&x)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("XFAIL fixture.errno-differs"))
        .stdout(predicate::str::contains("[expected: "));
}

#[test]
fn a_listed_case_failing_another_way_is_fail() {
    if !landlock_works() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(d.path(), &errno_listed("ENETUNREACH"));
    run_mechanism()
        .arg("--expect")
        .arg(&x)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  fixture.errno-differs"))
        .stdout(predicate::str::contains("failed differently than expected"))
        .stdout(predicate::str::contains("probe.errno: ENETUNREACH"));
}

#[test]
fn a_backend_keeping_every_property_by_another_mechanism_passes_visibly() {
    if !landlock_works() {
        return;
    }
    // The reference behind the protocol, started as any other driver: not
    // held to the case's mechanism, so EACCES for ECONNREFUSED is a pass
    // that says so; the reference by name is held to both (previous tests).
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("r.json");
    let cmd = format!("'{}' driver", env!("CARGO_BIN_EXE_sandspec"));
    run_mechanism()
        .args(["--driver-cmd", &cmd, "--json"])
        .arg(&json)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("PASS  fixture.errno-differs"))
        .stdout(predicate::str::contains(
            "mechanism differs (probe.errno: E",
        ))
        .stdout(predicate::str::contains("(1 by another mechanism"));
    let report = sandspec::harness::report::json::read(&json).unwrap();
    assert_eq!(report.counts.mechanism_differs, 1);
    let c = &report.cases[0];
    assert_eq!(c.mechanism_differs[0].check, "probe.errno");
    assert_eq!(c.evidence.property, ["oracle.tcp.received"]);
    // --hold-mechanism holds any backend to both.
    run_mechanism()
        .args(["--driver-cmd", &cmd, "--hold-mechanism"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  fixture.errno-differs"));
}

#[test]
fn an_untyped_expectation_file_is_exit_2_with_how_to_migrate() {
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(
        d.path(),
        "driver: none\ncases:\n  fixture.write-denied: no sandbox\n",
    );
    run_basic()
        .args(["--driver", "none", "--expect"])
        .arg(&x)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expect.yaml:3:"))
        .stderr(predicate::str::contains("untyped form"))
        .stderr(predicate::str::contains(
            "sandspec run --driver none --json run.json",
        ))
        .stderr(predicate::str::contains(
            "sandspec expectations update --from run.json",
        ));
}

#[test]
fn a_listed_case_that_passes_is_xpass_and_fails_the_gate() {
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(
        d.path(),
        "driver: reference\ncases:\n  fixture.echo: {reason: stale, check: outcome, observed: exited 1}\n",
    );
    let run = run_basic().arg("--expect").arg(&x).assert();
    if !landlock_works() {
        // A skip stays a skip: neither the expected failure nor a pass.
        run.code(0)
            .stdout(predicate::str::contains(NO_LANDLOCK_SKIP));
        return;
    }
    run.code(1)
        .stdout(predicate::str::contains("XPASS fixture.echo"));
}

#[test]
fn an_expectation_naming_an_unknown_case_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let x = expect_file(
        d.path(),
        "driver: reference\ncases:\n  fixture.nope: {reason: x, check: outcome, observed: timeout}\n",
    );
    run_basic()
        .arg("--expect")
        .arg(&x)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fixture.nope"));
}

#[test]
fn a_bad_filter_regex_is_exit_2() {
    run_basic()
        .args(["--filter", "fixture.(echo"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid --filter regex"));
}

#[test]
fn a_selection_matching_nothing_is_exit_2() {
    run_basic()
        .args(["--filter", "^nothing-matches$"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no case"));
}

#[test]
fn a_malformed_case_file_is_exit_2_with_file_line_column() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.yaml");
    std::fs::write(
        &f,
        "id: bad.case\nsummary: s\nrun: {argv: [\"true\"]}\nexpect: {outcom: timeout}\n",
    )
    .unwrap();
    sandspec()
        .arg("run")
        .arg("--cases")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("{}:4:", f.display())));
}

#[test]
fn an_unknown_driver_is_exit_2() {
    run_basic()
        .args(["--driver", "no-such-driver"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown driver \"no-such-driver\"",
        ));
}

#[test]
fn a_driver_that_cannot_start_is_exit_2_naming_the_driver() {
    run_basic()
        .args(["--driver-cmd", "/nonexistent/driver --flag"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/driver --flag"));
}

#[test]
fn driver_check_accepts_the_reference_over_the_protocol() {
    let run = sandspec()
        .args(["driver-check", "--driver", "reference-proto"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("handshake: ok"))
        .stdout(predicate::str::contains("requires Landlock ABI 1 or later"));
    if landlock_works() {
        run.stdout(predicate::str::contains("ok ("));
    } else {
        run.stdout(predicate::str::contains("refused as declared"));
    }
}

#[test]
fn driver_check_fails_a_driver_that_runs_below_the_landlock_abi_it_declares() {
    // Declares it needs Landlock ABI 99 (no kernel has it), then answers
    // the run as if the command had run: a broken fail-closed promise.
    let liar = r#"read l; echo '{"type":"hello","protocol":1,"driver":{"name":"liar","version":"0"},"capabilities":[],"requires_landlock_abi":99}'; read l; echo '{"type":"result","seq":1,"outcome":{"exited":{"code":0}},"stdout_b64":"c2FuZHNwZWMtZHJpdmVyLWNoZWNrCg==","stderr_b64":"","duration_us":1}'; read l"#;
    sandspec()
        .args(["driver-check", "--driver-cmd", liar])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "requires Landlock ABI 99 or later",
        ))
        .stdout(predicate::str::contains("must refuse"))
        .stdout(predicate::str::contains("hint:"));
}

#[test]
fn driver_check_explains_a_driver_that_prints_garbage() {
    sandspec()
        .args(["driver-check", "--driver-cmd", "echo hello; sleep 5"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("handshake: FAILED"))
        .stdout(predicate::str::contains("not JSON"))
        .stdout(predicate::str::contains("hint:"));
}
