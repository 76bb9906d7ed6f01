//! The harness and the built-in drivers on the fixture cases
//! (tests/fixtures/cases/basic): verdicts under `reference`, under the
//! protocol path (`sandspec driver`), and under `none`, which must fail the
//! isolation cases.

use std::path::{Path, PathBuf};

use sandspec::corpus::{self, LoadedCase};
use sandspec::driver::none::NoneFactory;
use sandspec::driver::process::ProcessFactory;
use sandspec::driver::reference::ReferenceFactory;
use sandspec::driver::DriverFactory;
use sandspec::harness::{CaseResult, Harness, HarnessConfig, Status};
use sandspec::policy::{Outcome, SetupErrorKind};

fn cases() -> Vec<LoadedCase> {
    corpus::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases/basic")).unwrap()
}

fn config() -> HarnessConfig {
    HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe"))
}

fn run(factory: &dyn DriverFactory, config: HarnessConfig) -> Vec<CaseResult> {
    let h = Harness::new(config).unwrap();
    h.run_all(&cases(), factory, 2, None, &mut |_| {})
}

fn sandspec_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandspec"))
}

/// Landlock works on this kernel. Without it (the kernel matrix boots such
/// kernels) the reference sandbox refuses every run, so its tests check that
/// instead: see [`assert_skipped_for_want_of_landlock`].
fn landlock_works() -> bool {
    matches!(
        sandspec::kernel::landlock(),
        sandspec::kernel::LandlockSupport::Abi(_)
    )
}

/// Without Landlock every fixture case is skipped under the reference, with
/// the reason (its hello declares it needs Landlock), and none of them ran.
fn assert_skipped_for_want_of_landlock(rs: &[CaseResult]) {
    assert_eq!(rs.len(), cases().len());
    for r in rs {
        assert_eq!(r.status, Status::Skip, "{r:?}");
        let why = r.reason.as_deref().unwrap_or("");
        assert!(why.contains("requires Landlock ABI 1"), "{r:?}");
        assert_eq!(r.outcome, None, "a skipped case must not run: {r:?}");
    }
}

fn by_id<'a>(rs: &'a [CaseResult], id: &str) -> &'a CaseResult {
    rs.iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no result for {id}"))
}

#[test]
fn fixture_cases_pass_under_reference_and_an_unmet_requirement_skips_with_its_reason() {
    let rs = run(&ReferenceFactory::new(Some(sandspec_exe())), config());
    if !landlock_works() {
        return assert_skipped_for_want_of_landlock(&rs);
    }
    for r in &rs {
        if r.id == "fixture.unmet-requirement" {
            assert_eq!(r.status, Status::Skip, "{r:?}");
            assert_eq!(
                r.reason.as_deref(),
                Some("needs sandspec-fixture-no-such-program on PATH")
            );
            assert_eq!(r.outcome, None, "a skipped case must not run");
        } else {
            assert_eq!(r.status, Status::Pass, "{r:?}");
        }
    }
    assert_eq!(
        by_id(&rs, "fixture.timeout").outcome,
        Some(Outcome::Timeout)
    );
    // The simulated platform really ran without Landlock: a setup error,
    // while the control on the real kernel succeeded.
    let nl = by_id(&rs, "fixture.no-landlock");
    assert!(matches!(
        nl.outcome,
        Some(Outcome::SetupError {
            kind: SetupErrorKind::LandlockUnavailable,
            ..
        })
    ));
    assert_eq!(nl.control_outcome, Some(Outcome::Exited { code: 0 }));
}

#[test]
fn the_protocol_path_gives_the_same_verdicts_and_outcomes_as_in_process() {
    let in_process = run(&ReferenceFactory::new(Some(sandspec_exe())), config());
    let proto = ProcessFactory::new(
        "reference-proto",
        vec![sandspec_exe().into(), "driver".into()],
    );
    let over_protocol = run(&proto, config());
    let key = |rs: &[CaseResult]| {
        rs.iter()
            .map(|r| {
                (
                    r.id.clone(),
                    r.status,
                    r.outcome.clone(),
                    r.control_outcome.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&in_process), key(&over_protocol));
}

#[test]
fn isolation_fixtures_fail_under_none_with_the_observed_reason() {
    let rs = run(&NoneFactory, config());
    let wd = by_id(&rs, "fixture.write-denied");
    assert_eq!(wd.status, Status::Fail, "{wd:?}");
    // The reason leads with the leak the host saw; every failed check is
    // recorded with what was observed.
    assert!(
        wd.reason
            .as_deref()
            .unwrap()
            .contains("to be absent on the host; it exists"),
        "{wd:?}"
    );
    let seen: Vec<String> = wd.failures.iter().map(|f| f.fingerprint()).collect();
    assert_eq!(seen, ["outcome: exited 0", "host.absent: exists"], "{wd:?}");
    let nl = by_id(&rs, "fixture.no-landlock");
    assert_eq!(nl.status, Status::Fail, "{nl:?}");
    // Decided by the probe's report and the harness's listener.
    let tcp = by_id(&rs, "fixture.net-deny-tcp");
    assert_eq!(tcp.status, Status::Fail, "{tcp:?}");
    assert!(
        tcp.reason
            .as_deref()
            .unwrap()
            .contains("the traffic reached the host"),
        "{tcp:?}"
    );
    assert!(
        tcp.failures
            .iter()
            .any(|f| f.fingerprint() == "probe.ok: true"),
        "{tcp:?}"
    );
    // A setsid grandchild outlives the timeout without a sandbox.
    let setsid = by_id(&rs, "fixture.timeout-kills-setsid-grandchild");
    assert_eq!(setsid.status, Status::Fail, "{setsid:?}");
    assert!(
        setsid
            .reason
            .as_deref()
            .unwrap()
            .contains("alive after it ended"),
        "{setsid:?}"
    );
    // Listed (with how it was found), and killed.
    assert_eq!(setsid.survivors.len(), 1, "{setsid:?}");
    let pid = setsid.survivors[0].pid;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "survivor {pid} still exists"
    );
    // Cases that restrict nothing still pass under none.
    assert_eq!(by_id(&rs, "fixture.echo").status, Status::Pass);
    assert_eq!(by_id(&rs, "fixture.timeout").status, Status::Pass);
}

#[test]
fn a_simulated_case_that_cannot_start_its_backend_is_an_error_not_a_pass() {
    // Without the sandspec executable the simulated backend cannot start.
    let rs = run(&ReferenceFactory::new(None), config());
    if !landlock_works() {
        // Skipped before any backend is started.
        return assert_skipped_for_want_of_landlock(&rs);
    }
    let nl = by_id(&rs, "fixture.no-landlock");
    assert_eq!(nl.status, Status::Error, "{nl:?}");
    assert!(nl
        .reason
        .as_deref()
        .unwrap()
        .contains("fixture.no-landlock"));
}

#[test]
fn keep_preserves_each_run_s_scratch_directory() {
    let mut c = config();
    c.keep = true;
    let rs = run(&ReferenceFactory::new(Some(sandspec_exe())), c);
    if !landlock_works() {
        return assert_skipped_for_want_of_landlock(&rs);
    }
    let wd = by_id(&rs, "fixture.write-denied");
    // The run under test and the control each have their own directory;
    // the control wrote `out` into its own.
    assert_eq!(wd.kept.len(), 2, "{wd:?}");
    assert!(!wd.kept[0].join("out").exists());
    assert_eq!(
        std::fs::read_to_string(wd.kept[1].join("out")).unwrap(),
        "x\n"
    );
    for r in &rs {
        for d in &r.kept {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

#[test]
fn none_under_a_simulated_platform_really_runs_its_command_without_landlock() {
    use sandspec::corpus::case::SimulatedLandlock;
    use sandspec::driver::RunRequest;
    use sandspec::policy::{Command, Policy};
    let req = RunRequest {
        seq: 1,
        case: "simulate.check".into(),
        policy: Policy::default(),
        command: Command::argv([env!("CARGO_BIN_EXE_sandspec"), "probe", "--json"]),
    };
    for (how, want) in [
        (SimulatedLandlock::Enosys, "\"not_built\""),
        (SimulatedLandlock::Eopnotsupp, "\"disabled\""),
    ] {
        let mut d = NoneFactory.spawn(Some(how)).unwrap();
        let out = d.run(&req, std::time::Duration::from_secs(20)).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("\"landlock\": {want}")),
            "{how:?}: {text}"
        );
    }
}
