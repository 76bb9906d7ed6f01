//! Driver faults: each deliberately broken behaviour of the faulty driver
//! (tests/harness_faults/driver.rs, this test binary started with
//! `--faulty-driver MODE STATE_DIR`) must make its case ERROR with a reason
//! naming the driver and the case, must never count as a pass, and the next
//! case must still run (and pass) on a restarted driver. A driver without
//! `ping` gets its round trip measured by a refused run in `sandspec bench`.
//!
//! (Runs with libtest-mimic, `harness = false`, so that `main` can play the
//! driver: no interpreter is needed, as in the kernel-matrix guest.)

#[path = "common/bench_json.rs"]
mod bench_json;
#[path = "harness_faults/driver.rs"]
mod driver;
#[path = "harness_faults/liar.rs"]
mod liar;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bench_json::text;
use libtest_mimic::{Arguments, Trial};
use sandspec::corpus;
use sandspec::driver::process::ProcessFactory;
use sandspec::harness::{CaseResult, Harness, HarnessConfig, Status};
use serde_json::Value;

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
    let factory = ProcessFactory::new(format!("faulty-{mode}"), driver::argv(mode, state.path()))
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

/// Pids the faulty driver recorded (each launch, and the grandchild of
/// `hang`).
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

fn a_crashing_driver_is_an_error_with_its_stderr_and_the_next_case_runs() {
    let (r, _s) = run_faulty("crash");
    assert_fault_then_recovery(&r, "crash", &["died", "SIGABRT", "about to crash"]);
}

fn a_hanging_driver_hits_the_watchdog_and_its_whole_group_is_killed() {
    let (r, state) = run_faulty("hang");
    assert_fault_then_recovery(&r, "hang", &["did not answer within"]);
    let pids = recorded_pids(state.path());
    // The first launch, its grandchild, the relaunch.
    assert!(pids.len() >= 3, "pids recorded: {pids:?}");
    let alive: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
    assert!(alive.is_empty(), "driver processes left alive: {alive:?}");
}

fn a_driver_exiting_mid_run_is_an_error() {
    let (r, _s) = run_faulty("exit");
    assert_fault_then_recovery(&r, "exit", &["exited while running seq", "exit status: 0"]);
}

fn a_driver_printing_garbage_is_a_protocol_error() {
    let (r, _s) = run_faulty("garbage");
    assert_fault_then_recovery(&r, "garbage", &["not JSON", "this is not json"]);
}

fn a_driver_answering_the_wrong_seq_is_a_protocol_error() {
    let (r, _s) = run_faulty("wrong-seq");
    assert_fault_then_recovery(&r, "wrong-seq", &["answered seq 1001 to run seq 1"]);
}

fn a_driver_claiming_another_protocol_version_is_an_error() {
    let (r, _s) = run_faulty("bad-version");
    assert_fault_then_recovery(&r, "bad-version", &["protocol version 99"]);
}

fn a_driver_claiming_an_unknown_capability_is_an_error() {
    let (r, _s) = run_faulty("bad-capability");
    assert_fault_then_recovery(&r, "bad-capability", &["unknown capability", "fs.teleport"]);
}

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

fn a_driver_exiting_while_a_setsid_child_holds_its_stdout_is_seen_exiting_and_the_child_killed() {
    let (r, state) = run_faulty("exit-holding-stdout");
    assert_fault_then_recovery(
        &r,
        "exit-holding-stdout",
        &[
            "exited while running seq",
            "exit status: 0",
            "still held its pipes and were killed",
        ],
    );
    // Seen from its pid, not from an EOF that never comes: well within the
    // watchdog (timeout 1 s + margin 1.5 s), and not reported as a hang.
    assert!(
        r[0].duration < Duration::from_millis(2000),
        "took {:?}",
        r[0].duration
    );
    let pids = recorded_pids(state.path());
    assert!(pids.len() >= 3, "pids recorded: {pids:?}");
    let alive: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
    assert!(alive.is_empty(), "processes left alive: {alive:?}");
}

fn a_driver_answering_with_a_duplicate_key_is_a_protocol_error() {
    let (r, _s) = run_faulty("duplicate-key");
    assert_fault_then_recovery(&r, "duplicate-key", &["duplicate key \"seq\""]);
}

/// The harness's own peak RSS (KiB) over a `sandspec run` against the
/// faulty driver in `mode`, its output and exit code. Read from the
/// harness's `VmHWM` while it runs: `wait4`'s peak would also count its
/// reaped children (this very binary, as the faulty driver) and the pages
/// it started with when forked from this binary.
fn harness_peak(mode: &str) -> (u64, String, Option<i32>) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let state = tempfile::tempdir().unwrap();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sandspec"))
        .args(["run", "-j", "1", "--driver-cmd"])
        .arg(driver_cmd(mode, state.path()))
        .arg("--cases")
        .arg(fixtures().join("cases/faults"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let watcher = std::thread::spawn(move || {
        // VmHWM is the peak of the current address space: the harness's
        // own since its exec. Gone once it exits (a zombie has none).
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(hwm) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            else {
                break;
            };
            peak_kib = peak_kib.max(hwm);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak_kib
    });
    let mut status = 0;
    // SAFETY: wait4 on our own child with a valid status pointer and no
    // rusage; `child` is never waited for through std.
    let r = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
    assert_eq!(r, pid);
    let peak_kib = watcher.join().unwrap();
    assert!(peak_kib > 0, "the harness's VmHWM was never read");
    let text = reader.join().unwrap();
    (
        peak_kib,
        text,
        std::process::ExitStatus::from_raw(status).code(),
    )
}

/// A driver writing 96 MiB (three times the bound) to stderr without a newline costs the harness
/// no more memory than a quiet driver does (it keeps a bounded tail). The
/// bound is relative: an unoptimised harness alone is about 100 MiB.
fn a_driver_flooding_stderr_without_line_breaks_costs_the_harness_no_memory() {
    let (base_kib, _, _) = harness_peak("ping-silent");
    let (peak_kib, text, code) = harness_peak("stderr-flood");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PASS  fault.trigger"), "{text}");
    let extra_mib = peak_kib.saturating_sub(base_kib) / 1024;
    assert!(
        extra_mib < 32,
        "the harness peaked {extra_mib} MiB above a quiet run's {} MiB while its driver wrote {} MiB to stderr",
        base_kib / 1024,
        driver::FLOOD_BYTES >> 20
    );
}

fn a_daemon_left_by_a_driver_that_dies_is_listed_and_killed() {
    let (r, state) = run_faulty("daemon-exit");
    assert_fault_then_recovery(
        &r,
        "daemon-exit",
        &["exited while running seq", "left 1 process(es) alive"],
    );
    let pids = recorded_pids(state.path());
    // The first launch, its daemon, the relaunch.
    assert_eq!(pids.len(), 3, "pids recorded: {pids:?}");
    let daemon = pids[1];
    let listed = &r[0].survivors;
    assert_eq!(
        listed.iter().map(|s| s.pid).collect::<Vec<_>>(),
        [daemon],
        "{listed:?}"
    );
    assert!(!is_alive(daemon), "the daemon {daemon} is still alive");
}

/// `s` as one word for `sh` (`--driver-cmd` runs its string with `sh -c`),
/// so paths with spaces or quotes survive.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `--driver-cmd` line that starts the faulty driver in `mode`.
fn driver_cmd(mode: &str, state: &Path) -> String {
    driver::argv(mode, state)
        .iter()
        .map(|a| sh_quote(a.to_str().expect("a UTF-8 path")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn drivers_without_ping_fall_back_to_a_refused_run_and_say_why() {
    // A space in the state directory's name: the command line is `sh -c`'d.
    let d = tempfile::Builder::new()
        .prefix("faulty state ")
        .tempdir()
        .unwrap();
    let (error_state, silent_state) = (d.path().join("error"), d.path().join("silent"));
    std::fs::create_dir(&error_state).unwrap();
    std::fs::create_dir(&silent_state).unwrap();
    let erroring = driver_cmd("ping-error", &error_state);
    let silent = driver_cmd("ping-silent", &silent_state);
    let json = d.path().join("bench.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandspec"))
        .args(["bench", "-n", "2", "--warmup", "0", "--driver", "none"])
        .args(["--driver-cmd", &erroring, "--driver-cmd", &silent])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    let e = bench_json::driver(&v, &erroring);
    assert_eq!(e["roundtrip_method"], "refused_run", "{e}");
    assert!(
        e["roundtrip_note"]
            .as_str()
            .unwrap()
            .contains("ping is not supported"),
        "{e}"
    );
    let rt = e["roundtrip_us"].as_f64().unwrap();
    assert!(rt > 0.0, "roundtrip_us = {rt} is not positive in {e}");

    let s = bench_json::driver(&v, &silent);
    assert_eq!(s["roundtrip_method"], "refused_run", "{s}");
    assert!(
        s["roundtrip_note"].as_str().unwrap().contains("restarted"),
        "{s}"
    );
    assert_eq!(s["net"]["samples"], 2);
    // The silent instance was killed, its replacement said bye.
    let pids = recorded_pids(&silent_state);
    assert_eq!(pids.len(), 2, "launches of the silent driver: {pids:?}");
    let alive: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
    assert!(alive.is_empty(), "driver processes left alive: {alive:?}");
}

/// Runs the whole corpus through the lying driver: a case it passes rests
/// on the driver's word alone, since the liar isolates nothing. Exactly
/// those cases must be the ones whose verdict the report says rests on the
/// driver (no property check), and every isolation case with a property
/// check must catch the liar.
fn a_lying_driver_passes_exactly_the_cases_resting_on_the_driver_word() {
    let state = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    std::fs::write(state.path().join("cases"), corpus.to_str().unwrap()).unwrap();
    let cases = corpus::load(&corpus).unwrap();
    let factory = ProcessFactory::new("faulty-liar", driver::argv("liar", state.path()))
        .hello_timeout(Duration::from_secs(20));
    let mut config = HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe"));
    // Not the reference: a pass by another mechanism would be a pass.
    config.hold_mechanism = false;
    let harness = Harness::new(config).unwrap();
    // One case at a time: a process one case leaves behind is then never
    // seen in another's run.
    let results = harness.run_all(&cases, &factory, 1, None, &mut |_| {});
    let mut fooled = Vec::new();
    let mut caught = Vec::new();
    let mut wrong = Vec::new();
    for r in results.iter().filter(|r| r.is_isolation()) {
        match r.status {
            Status::Skip => continue,
            Status::Pass => fooled.push(r.id.as_str()),
            Status::Fail => caught.push(r.id.as_str()),
            _ => {
                wrong.push(format!("{} {}: {:?}", r.status, r.id, r.reason));
                continue;
            }
        }
        // Resting on the driver's word: the liar passes. Observed by the
        // harness: it does not (a leak, or a control it cannot fake).
        let word = r.evidence.driver_word_only();
        if word != (r.status == Status::Pass) {
            wrong.push(format!(
                "{}: {} by the liar ({:?}), but its evidence says {} (property checks: {:?})",
                r.id,
                r.status,
                r.reason,
                r.evidence.rests_on().as_str(),
                r.evidence.property
            ));
        }
    }
    eprintln!(
        "lying driver: of {} isolation cases run, it passed {} (the driver's word alone) and the harness caught {}
  passed: {}",
        fooled.len() + caught.len(),
        fooled.len(),
        caught.len(),
        fooled.join(", ")
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(!caught.is_empty(), "the harness caught nothing");
}

fn main() {
    // Started by a test below as the driver: play it and exit.
    driver::run_if_requested();

    let args = Arguments::from_args();
    let tests: &[(&str, fn())] = &[
        (
            "a_crashing_driver_is_an_error_with_its_stderr_and_the_next_case_runs",
            a_crashing_driver_is_an_error_with_its_stderr_and_the_next_case_runs,
        ),
        (
            "a_hanging_driver_hits_the_watchdog_and_its_whole_group_is_killed",
            a_hanging_driver_hits_the_watchdog_and_its_whole_group_is_killed,
        ),
        (
            "a_driver_exiting_mid_run_is_an_error",
            a_driver_exiting_mid_run_is_an_error,
        ),
        (
            "a_driver_printing_garbage_is_a_protocol_error",
            a_driver_printing_garbage_is_a_protocol_error,
        ),
        (
            "a_driver_answering_the_wrong_seq_is_a_protocol_error",
            a_driver_answering_the_wrong_seq_is_a_protocol_error,
        ),
        (
            "a_driver_claiming_another_protocol_version_is_an_error",
            a_driver_claiming_another_protocol_version_is_an_error,
        ),
        (
            "a_driver_claiming_an_unknown_capability_is_an_error",
            a_driver_claiming_an_unknown_capability_is_an_error,
        ),
        (
            "a_daemon_left_by_a_driver_that_dies_is_listed_and_killed",
            a_daemon_left_by_a_driver_that_dies_is_listed_and_killed,
        ),
        (
            "a_driver_refusing_a_run_is_an_error_but_keeps_its_instance",
            a_driver_refusing_a_run_is_an_error_but_keeps_its_instance,
        ),
        (
            "a_driver_exiting_while_a_setsid_child_holds_its_stdout_is_seen_exiting_and_the_child_killed",
            a_driver_exiting_while_a_setsid_child_holds_its_stdout_is_seen_exiting_and_the_child_killed,
        ),
        (
            "a_driver_answering_with_a_duplicate_key_is_a_protocol_error",
            a_driver_answering_with_a_duplicate_key_is_a_protocol_error,
        ),
        (
            "a_driver_flooding_stderr_without_line_breaks_costs_the_harness_no_memory",
            a_driver_flooding_stderr_without_line_breaks_costs_the_harness_no_memory,
        ),
        (
            "drivers_without_ping_fall_back_to_a_refused_run_and_say_why",
            drivers_without_ping_fall_back_to_a_refused_run_and_say_why,
        ),
        (
            "a_lying_driver_passes_exactly_the_cases_resting_on_the_driver_word",
            a_lying_driver_passes_exactly_the_cases_resting_on_the_driver_word,
        ),
    ];
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            Trial::test(name, move || {
                f();
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
