//! Driver faults: each deliberately broken behaviour of
//! tests/fixtures/drivers/faulty.py must make its case ERROR with a reason
//! naming the driver and the case, must never count as a pass, and the next
//! case must still run (and pass) on a restarted driver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandspec::corpus;
use sandspec::driver::process::ProcessFactory;
use sandspec::harness::{CaseResult, Harness, HarnessConfig, Status};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs the two fault cases (trigger, then after) through the faulty driver
/// in `mode`, one worker, so the order is fixed. Returns the results and the
/// state directory (launches and pids).
fn run_faulty(mode: &str) -> (Vec<CaseResult>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let cases = corpus::load(&fixtures().join("cases/faults")).unwrap();
    assert_eq!(
        cases.iter().map(|c| c.case.id.as_str()).collect::<Vec<_>>(),
        ["fault.trigger", "fault.after"]
    );
    let factory = ProcessFactory::new(
        format!("faulty-{mode}"),
        vec![
            "python3".into(),
            fixtures().join("drivers/faulty.py").into(),
            mode.into(),
            state.path().into(),
        ],
    )
    .hello_timeout(Duration::from_secs(20));
    let mut config = HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe"));
    config.watchdog_margin = Duration::from_millis(1500);
    let harness = Harness::new(config).unwrap();
    let results = harness.run_all(&cases, &factory, 1, None, &mut |_| {});
    (results, state)
}

fn assert_fault_then_recovery(results: &[CaseResult], mode: &str, needles: &[&str]) {
    let trigger = &results[0];
    let why = trigger.reason.as_deref().unwrap_or("");
    assert_eq!(trigger.status, Status::Error, "{mode}: {trigger:?}");
    assert!(
        why.contains(&format!("faulty-{mode}")) && why.contains("fault.trigger"),
        "{mode}: the reason must name the driver and the case: {why}"
    );
    for n in needles {
        assert!(why.contains(n), "{mode}: expected {n:?} in: {why}");
    }
    let after = &results[1];
    assert_eq!(after.status, Status::Pass, "{mode}: {after:?}");
}

/// Pids the faulty driver recorded (itself, each launch, and children).
fn recorded_pids(state: &Path) -> Vec<i32> {
    std::fs::read_to_string(state.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn is_alive(pid: i32) -> bool {
    // A zombie is dead for our purposes; it only waits to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

#[test]
fn a_crashing_driver_is_an_error_with_its_stderr_and_the_next_case_runs() {
    let (r, _s) = run_faulty("crash");
    assert_fault_then_recovery(&r, "crash", &["died", "SIGABRT", "about to crash"]);
}

#[test]
fn a_hanging_driver_hits_the_watchdog_and_its_whole_group_is_killed() {
    let (r, state) = run_faulty("hang");
    assert_fault_then_recovery(&r, "hang", &["did not answer within"]);
    let pids = recorded_pids(state.path());
    // The first launch, its `sleep` grandchild, the relaunch.
    assert!(pids.len() >= 3, "pids recorded: {pids:?}");
    let alive: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
    assert!(alive.is_empty(), "driver processes left alive: {alive:?}");
}

#[test]
fn a_driver_exiting_mid_run_is_an_error() {
    let (r, _s) = run_faulty("exit");
    assert_fault_then_recovery(&r, "exit", &["exited while running seq", "exit status: 0"]);
}

#[test]
fn a_driver_printing_garbage_is_a_protocol_error() {
    let (r, _s) = run_faulty("garbage");
    assert_fault_then_recovery(&r, "garbage", &["not JSON", "this is not json"]);
}

#[test]
fn a_driver_answering_the_wrong_seq_is_a_protocol_error() {
    let (r, _s) = run_faulty("wrong-seq");
    assert_fault_then_recovery(&r, "wrong-seq", &["answered seq 1001 to run seq 1"]);
}

#[test]
fn a_driver_claiming_another_protocol_version_is_an_error() {
    let (r, _s) = run_faulty("bad-version");
    assert_fault_then_recovery(&r, "bad-version", &["protocol version 99"]);
}

#[test]
fn a_driver_claiming_an_unknown_capability_is_an_error() {
    let (r, _s) = run_faulty("bad-capability");
    assert_fault_then_recovery(&r, "bad-capability", &["unknown capability", "fs.teleport"]);
}

#[test]
fn a_driver_refusing_a_run_is_an_error_but_keeps_its_instance() {
    let (r, state) = run_faulty("error");
    assert_fault_then_recovery(&r, "error", &["backend refused the policy"]);
    // Refusing is not a fault: the same instance served the next case.
    let launches = recorded_pids(state.path()).len();
    assert_eq!(
        launches, 1,
        "the driver was restarted after an error answer"
    );
}
