//! Regression drills: a backend broken on purpose, gated by the
//! expectation file of the working one, must fail wherever the harness saw
//! the isolation broken. An expectation file says how a backend is known
//! to fail; it must never be able to hide a leak.
//!
//! - `bwrap_without_unshare_net`: the shipped bwrap driver, copied and
//!   changed to leave the network shared, against
//!   conformance/expectations/bwrap.yaml.
//! - `reference_without_network_mechanisms::<mutant>`: the reference
//!   sandbox with one network mechanism switched off, against a file that
//!   lists exactly how the mutant fails, short of what the oracles saw.
//!
//! (libtest-mimic: a drill whose backend is not installed is reported as
//! ignored, with the reason, never as a pass. `SANDSPEC_REQUIRE_PEERS=1`
//! makes it a failure, as in tests/drivers_peers.rs.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use sandspec::corpus::{self, case::Tag, LoadedCase};
use sandspec::driver::process::ProcessFactory;
use sandspec::harness::expectations::Expectations;
use sandspec::harness::{CaseResult, Harness, HarnessConfig, Status};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn harness(hold_mechanism: bool) -> Harness {
    let mut config = HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe"));
    config.hold_mechanism = hold_mechanism;
    Harness::new(config).expect("failed to start the harness runtime")
}

/// The corpus's network cases.
fn network_cases() -> Vec<LoadedCase> {
    corpus::load(&root().join("conformance"))
        .expect("the corpus loads")
        .into_iter()
        .filter(|c| c.case.tags.contains(&Tag::Network))
        .collect()
}

/// The results in which an oracle counted traffic the case forbids.
fn oracle_leaks(results: &[CaseResult]) -> Vec<&CaseResult> {
    results
        .iter()
        .filter(|r| {
            r.failures
                .iter()
                .any(|f| f.leak && f.check.starts_with("oracle.") && f.check.ends_with(".received"))
        })
        .collect()
}

/// Every case whose oracle received traffic is FAIL (not XFAIL, not a
/// pass of any kind), and names the leak.
fn assert_leaks_fail(results: &[CaseResult], what: &str) -> Result<Vec<String>, Failed> {
    let leaks = oracle_leaks(results);
    let mut wrong = Vec::new();
    for r in &leaks {
        let why = r.reason.clone().unwrap_or_default();
        if r.status != Status::Fail || !why.contains("the traffic reached the host") {
            wrong.push(format!("{} {}: {why}", r.status, r.id));
        }
    }
    if !wrong.is_empty() {
        return Err(format!(
            "{what}: cases whose oracle received traffic did not FAIL:\n{}",
            wrong.join("\n")
        )
        .into());
    }
    Ok(leaks.iter().map(|r| r.id.clone()).collect())
}

/// Why bwrap cannot run here, if it cannot.
fn bwrap_missing() -> Option<String> {
    let ok = |prog: &str, arg: &str| {
        std::process::Command::new(prog)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok("bwrap", "--version") {
        return Some("bwrap is not installed (conformance/drivers/bwrap/setup)".into());
    }
    if !ok("python3", "--version") {
        return Some("python3 (which runs the bwrap driver) is not installed".into());
    }
    None
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The drill: bwrap stops unsharing the network, a real
/// regression (the command reaches the host's network). With bwrap's own
/// expectation file, every network case whose oracle now receives traffic
/// must FAIL; the same file with the unchanged driver is green.
fn bwrap_without_unshare_net() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let drivers = root().join("conformance/drivers");
    copy_dir(&drivers.join("_common"), &dir.path().join("_common"));
    copy_dir(&drivers.join("bwrap"), &dir.path().join("bwrap"));
    let driver = dir.path().join("bwrap/driver.py");
    let text = std::fs::read_to_string(&driver).unwrap();
    let needle = "a.append(\"--unshare-net\")";
    if text.matches(needle).count() != 1 {
        return Err(
            format!("the bwrap driver no longer has one `{needle}`: update the drill").into(),
        );
    }
    std::fs::write(
        &driver,
        text.replace(needle, "pass  # the drill: the network stays shared"),
    )
    .unwrap();

    let cases = network_cases();
    let x = Expectations::load(&root().join("conformance/expectations/bwrap.yaml"))
        .map_err(|e| format!("bwrap.yaml: {e}"))?;
    let h = harness(false);
    let run = |argv: Vec<std::ffi::OsString>| {
        let f = ProcessFactory::new("bwrap", argv).hello_timeout(Duration::from_secs(60));
        h.run_all(&cases, &f, 2, Some(&x), &mut |_| {})
    };

    let working = run(vec![
        "python3".into(),
        drivers.join("bwrap/driver.py").into(),
    ]);
    let bad: Vec<String> = working
        .iter()
        .filter(|r| !r.status.is_ok())
        .map(|r| format!("{} {}: {:?}", r.status, r.id, r.reason))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "the working bwrap is not green with bwrap.yaml on the network cases:\n{}",
            bad.join("\n")
        )
        .into());
    }

    let broken = run(vec!["python3".into(), driver.into()]);
    let leaked = assert_leaks_fail(&broken, "bwrap without --unshare-net")?;
    for id in ["net.deny.tcp-connect", "net.deny.udp-send"] {
        if !leaked.iter().any(|l| l == id) {
            return Err(format!(
                "{id}: its oracle saw no traffic from bwrap without --unshare-net (leaks seen: {leaked:?})"
            )
            .into());
        }
    }
    eprintln!(
        "bwrap without --unshare-net: {} network cases FAIL on what their oracle received: {}",
        leaked.len(),
        leaked.join(", ")
    );
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let require = std::env::var("SANDSPEC_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let mut trials = Vec::new();
    let missing = bwrap_missing();
    if let Some(why) = &missing {
        eprintln!("bwrap drill skipped: {why}");
    }
    let why = missing.clone();
    trials.push(
        Trial::test("bwrap_without_unshare_net", move || match why {
            Some(why) => Err(format!("bwrap required but not available: {why}").into()),
            None => bwrap_without_unshare_net(),
        })
        .with_ignored_flag(missing.is_some() && !require),
    );
    libtest_mimic::run(&args, trials).exit();
}
