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
use sandspec::driver::reference::ReferenceFactory;
use sandspec::harness::expectations::Expectations;
use sandspec::harness::{CaseResult, Harness, HarnessConfig, Status};
use sandspec::sandbox::Mutant;

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

/// The expectation file of a backend that works but fails these cases by
/// mechanism only: for each case, exactly the failures of `results` that
/// are not leaks (how a namespace backend fails them: the operation
/// succeeds inside its own network, and nothing reaches the host). With
/// `with_leaks`, the leak fingerprints are listed too, as if someone had
/// tried to excuse them.
fn mechanism_only_file(results: &[CaseResult], with_leaks: bool) -> String {
    let mut s = String::from("driver: reference\ncases:\n");
    for r in results.iter().filter(|r| !r.failures.is_empty()) {
        let fails: Vec<String> = r
            .failures
            .iter()
            .filter(|f| with_leaks || !f.leak)
            .map(|f| {
                format!(
                    "      - {{check: {}, observed: {}}}\n",
                    serde_json::to_string(&f.check).unwrap(),
                    serde_json::to_string(&f.observed).unwrap()
                )
            })
            .collect();
        if fails.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "  {}:\n    reason: \"a working backend fails it by mechanism only\"\n    fails:\n{}",
            serde_json::to_string(&r.id).unwrap(),
            fails.concat()
        ));
    }
    s
}

/// The reference with one network mechanism switched off (a broken
/// backend), gated by the file of a working backend whose failures are
/// all mechanism-only (the same checks failing with the same observations,
/// short of the oracles'): every case whose oracle saw traffic is FAIL.
/// Listing the leak itself changes nothing.
fn reference_without_network_mechanism(m: Mutant) -> Result<(), Failed> {
    let cases = network_cases();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sandspec"));
    let broken = ReferenceFactory::new(Some(exe)).with_mutant(m);
    let h = harness(true);
    let plain = h.run_all(&cases, &broken, 2, None, &mut |_| {});
    if oracle_leaks(&plain).is_empty() {
        return Err(
            format!("mutant {m}: no oracle saw traffic, so the drill shows nothing").into(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    for with_leaks in [false, true] {
        let path = dir.path().join(format!("working-{with_leaks}.yaml"));
        std::fs::write(&path, mechanism_only_file(&plain, with_leaks)).unwrap();
        let x = Expectations::load(&path).map_err(|e| format!("the drill's file: {e}"))?;
        let gated = h.run_all(&cases, &broken, 2, Some(&x), &mut |_| {});
        let leaked = assert_leaks_fail(&gated, &format!("mutant {m}, leaks listed: {with_leaks}"))?;
        // The file does excuse what it should: the mechanism-only failures
        // of cases that did not leak.
        if !with_leaks {
            let excused = gated.iter().filter(|r| r.status == Status::Xfail).count();
            eprintln!(
                "mutant {m}: {} cases FAIL on what their oracle received ({}); {excused} \
                 mechanism-only failures are XFAIL",
                leaked.len(),
                leaked.join(", ")
            );
        }
    }
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
    let landlock = sandspec::kernel::landlock();
    // The network mechanisms whose absence lets traffic reach the host on
    // their own (io_uring's connect still meets Landlock's, for one).
    for &m in &[Mutant::LandlockNet, Mutant::SeccompSockets] {
        let why = match landlock.abi() {
            None => Some(format!(
                "the reference needs Landlock; this kernel's is {landlock}"
            )),
            Some(abi) => m.not_applicable(abi, nix::unistd::geteuid().as_raw()),
        };
        let ignored = why.is_some();
        if let Some(why) = why {
            eprintln!("drill with mutant {m}: not applicable here: {why}");
        }
        trials.push(
            Trial::test(
                format!("reference_without_network_mechanisms::{m}"),
                move || reference_without_network_mechanism(m),
            )
            .with_ignored_flag(ignored),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
