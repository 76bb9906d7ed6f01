//! Interrupts leave nothing behind. CI cancels jobs with SIGINT, then
//! SIGTERM: `sandspec sandbox` forwards the signal to the command's whole
//! tree and exits 128+N; `sandspec run` stops dispatching, tears down every
//! running case (drivers, oracles, sandboxed processes, scratch
//! directories, cgroups), writes its reports marked interrupted and exits
//! 128+N. Every test counts what is left: processes (found by a path of
//! the test's own in their argv, not by anything they could change), the
//! test's private TMPDIR (where every scratch directory goes), and the
//! pids cgroup the sandboxed processes were seen in.
//!
//! `random_interrupts_leave_nothing_behind` interrupts at random points;
//! SANDSPEC_INTERRUPT_ROUNDS sets its rounds per user (default 3), e.g.
//! 100 for the figure in the README.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command as Proc, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sandspec::oracle::processes_naming;

const SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
];

/// `cmd` with SIGINT, SIGTERM and SIGHUP at their defaults: a test runner
/// started in the background of a shell inherits SIGINT ignored, which
/// sandspec (rightly) keeps ignored.
fn with_default_signals(cmd: &mut Proc) -> &mut Proc {
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            for (s, _) in SIGNALS {
                libc::signal(s, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` for at most `timeout`; kills it and fails past that.
fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sandspec did not exit within {timeout:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes naming `marker` in their argv, except sandspec's own (whose
/// `--exec` names the marker directory; its sandbox supervisor is a clone of
/// it): the sandboxed processes and whatever they started.
fn started_from(marker: &std::path::Path) -> Vec<i32> {
    let me = std::fs::canonicalize(sandspec()).unwrap();
    processes_naming(marker)
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e != me))
        .collect()
}

/// Until `delay` has passed (or, without one, until `alive` lists at least
/// `want` processes), notes the run cgroups of every process `alive` lists.
fn watch(
    delay: Option<Duration>,
    what: &str,
    want: usize,
    cgroups: &mut Vec<PathBuf>,
    alive: impl Fn() -> Vec<i32>,
) {
    let t0 = Instant::now();
    loop {
        let procs = alive();
        for p in &procs {
            for c in run_cgroups(*p) {
                if !cgroups.contains(&c) {
                    cgroups.push(c);
                }
            }
        }
        match delay {
            Some(d) if t0.elapsed() >= d => return,
            None if procs.len() >= want => return,
            None => assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            ),
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with integers.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The cgroup directories `pid` is in that this process is not in: those
/// the sandbox or the harness made for the run (a pids cgroup, a per-run
/// cgroup2), in every hierarchy.
fn run_cgroups(pid: i32) -> Vec<PathBuf> {
    let cg = |p: &str| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
    let (theirs, mine) = (cg(&pid.to_string()), cg("self"));
    let v2_mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        });
    theirs
        .lines()
        .filter(|l| !mine.lines().any(|m| m == *l))
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            let base = if ctl.is_empty() {
                v2_mount.clone()?
            } else {
                PathBuf::from("/sys/fs/cgroup").join(ctl.trim_start_matches("name="))
            };
            let dir = PathBuf::from(format!("{}{path}", base.display()));
            dir.is_dir().then_some(dir)
        })
        .collect()
}

/// A directory holding a link to the probe: every process started from the
/// link carries its path in argv, whatever else it does.
struct Marker {
    dir: tempfile::TempDir,
}

impl Marker {
    fn new() -> Marker {
        let dir = scratch();
        std::os::unix::fs::symlink(probe(), dir.path().join("probe")).unwrap();
        Marker { dir }
    }
    fn probe(&self) -> PathBuf {
        self.dir.path().join("probe")
    }
    fn alive(&self) -> Vec<i32> {
        started_from(self.dir.path())
    }
}

/// `sandspec sandbox` running the probe (via `marker`) as a setsid daemon
/// plus a holding parent, so both a group member and an escapee are in
/// flight. `as_nobody`: through runuser.
fn sandbox_cmd(marker: &Marker, as_nobody: bool) -> Proc {
    let mut c = if as_nobody {
        let mut c = Proc::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(sandspec());
        c
    } else {
        Proc::new(sandspec())
    };
    c.arg("sandbox");
    let p = base_policy();
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in p.exec.iter().chain([&marker.dir.path().to_path_buf()]) {
        c.arg("--exec").arg(e);
    }
    c.args(["--max-procs", "16", "--"])
        .arg(marker.probe())
        .args(["setsid-daemon", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    with_default_signals(&mut c);
    c
}

/// The pid to signal: sandspec itself, below runuser when there is one.
/// runuser may fork (util-linux) or exec all the way down (the kernel
/// matrix's stand-in, through busybox su): the first process at or below
/// the child whose executable is sandspec, once it has exec'd (a shell on
/// the way would take the signal instead).
fn sandspec_pid(child: &Child, as_nobody: bool) -> u32 {
    if !as_nobody {
        return child.id();
    }
    let me = std::fs::canonicalize(sandspec()).unwrap();
    let is_sandspec = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == me);
    let children = |p: u32| -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut found = None;
    wait_until(
        "sandspec under runuser",
        time_scaled(Duration::from_secs(20)),
        || {
            let mut p = child.id();
            // runuser, then at most su and a shell above sandspec
            for _ in 0..4 {
                if is_sandspec(p) {
                    found = Some(p);
                    return true;
                }
                match children(p).first() {
                    Some(&c) => p = c,
                    None => return false,
                }
            }
            false
        },
    );
    found.unwrap()
}

fn runuser_available() -> bool {
    is_root()
        && Proc::new("runuser")
            .args(["-u", "nobody", "--", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// What a round left behind, and whether it ended as it must.
#[derive(Debug, Default)]
struct Left {
    processes: Vec<i32>,
    dirs: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    /// Run cgroups seen while the processes ran (the check above is only
    /// as good as this is non-zero where cgroups are made).
    seen_cgroups: usize,
}

impl Left {
    fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.dirs.is_empty() && self.cgroups.is_empty()
    }
    fn add(&mut self, o: Left) {
        self.processes.extend(o.processes);
        self.dirs.extend(o.dirs);
        self.cgroups.extend(o.cgroups);
        self.seen_cgroups += o.seen_cgroups;
    }
}

/// Interrupts `sandspec sandbox` with `sig` once `in_flight` processes run
/// (or after `delay`, whichever `delay` says); returns the status and
/// what is left.
fn interrupt_sandbox(
    sig: libc::c_int,
    delay: Option<Duration>,
    as_nobody: bool,
) -> (ExitStatus, Left) {
    let marker = Marker::new();
    let mut child = sandbox_cmd(&marker, as_nobody).spawn().unwrap();
    let pid = sandspec_pid(&child, as_nobody);
    let mut cgroups: Vec<PathBuf> = Vec::new();
    watch(delay, "the probe and its daemon", 2, &mut cgroups, || {
        marker.alive()
    });
    kill(pid, sig);
    let st = wait_bounded(&mut child, Duration::from_secs(20));
    let left = Left {
        processes: marker.alive(),
        dirs: Vec::new(),
        seen_cgroups: cgroups.len(),
        cgroups: cgroups.into_iter().filter(|c| c.exists()).collect(),
    };
    for p in &left.processes {
        kill(*p as u32, libc::SIGKILL);
    }
    (st, left)
}

fn exit_by(st: ExitStatus, sig: libc::c_int) -> bool {
    st.code() == Some(128 + sig) || st.signal() == Some(sig)
}

#[test]
fn sandbox_forwards_the_interrupt_kills_the_tree_and_exits_128_plus_n() {
    if !landlock_or_refusal() {
        return;
    }
    for (sig, name) in SIGNALS {
        let (st, left) = interrupt_sandbox(sig, None, false);
        assert_eq!(st.code(), Some(128 + sig), "{name}: {st:?}");
        assert!(left.is_empty(), "{name}: left behind {left:?}");
        // As root --max-procs is a pids cgroup made for the run.
        assert!(
            !is_root() || left.seen_cgroups > 0,
            "{name}: no run cgroup seen"
        );
    }
}

#[test]
fn sandbox_gives_the_tree_its_grace_then_kills_it() {
    if !landlock_or_refusal() {
        return;
    }
    let marker = Marker::new();
    let p = shell_policy();
    let mut c = Proc::new(sandspec());
    c.arg("sandbox");
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in p.exec.iter().chain([&marker.dir.path().to_path_buf()]) {
        c.arg("--exec").arg(e);
    }
    let script = format!(
        "trap '' INT TERM; exec {} sleep 60",
        marker.probe().display()
    );
    c.args(["--", "sh", "-c", &script]).stderr(Stdio::piped());
    with_default_signals(&mut c);
    let mut child = c.spawn().unwrap();
    wait_until("the probe", Duration::from_secs(20), || {
        !marker.alive().is_empty()
    });
    let t0 = Instant::now();
    kill(child.id(), libc::SIGTERM);
    let st = wait_bounded(&mut child, Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(143), "{st:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "a tree ignoring SIGTERM must get the 2 s grace, then be killed; took {took:?}"
    );
    assert!(marker.alive().is_empty(), "{:?}", marker.alive());
}

/// Two cases that hold while sandspec run is interrupted: a probe whose
/// setsid daemon lives on, and one sleeping in a pids cgroup.
const HOLDING_CASES: &str = "\
id: hold.daemon
summary: a probe that holds while its setsid daemon lives on
tags: [process]
policy: {timeout: 30s, read: [/usr, /lib, /lib64, /etc], exec: [/lib, /lib64]}
run: {argv: [\"${PROBE}\", setsid-daemon, \"60\"]}
expect: {outcome: {exited: {code: 0}}}
---
id: hold.sleep
summary: a probe that sleeps in a pids cgroup
tags: [process]
policy: {timeout: 30s, read: [/usr, /lib, /lib64, /etc], exec: [/lib, /lib64], limits: {processes: 16}}
run: {argv: [\"${PROBE}\", sleep, \"60\"]}
expect: {outcome: {exited: {code: 0}}}
";

/// One interrupted `sandspec run`: its private TMPDIR, cases and reports.
struct RunRound {
    dir: tempfile::TempDir,
}

impl RunRound {
    fn new(owner_nobody: bool) -> RunRound {
        let dir = scratch();
        for sub in ["tmp", "cases", "out"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            chmod(&dir.path().join(sub), 0o777);
        }
        std::fs::write(dir.path().join("cases/hold.yaml"), HOLDING_CASES).unwrap();
        if owner_nobody {
            // The run directory sweep only touches the user's own: make the
            // TMPDIR nobody's, as it would be.
            let _ = Proc::new("chown")
                .args(["nobody"])
                .arg(dir.path().join("tmp"))
                .status();
        }
        RunRound { dir }
    }
    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }
    fn cmd(&self, driver: &str, as_nobody: bool) -> Proc {
        let mut c = if as_nobody {
            let mut c = Proc::new("runuser");
            c.args(["-u", "nobody", "--", "env"])
                .arg(format!("TMPDIR={}", self.tmp().display()))
                .arg(sandspec());
            c
        } else {
            let mut c = Proc::new(sandspec());
            c.env("TMPDIR", self.tmp());
            c
        };
        c.args(["run", "-j", "2", "--driver", driver, "--cases"])
            .arg(self.dir.path().join("cases"))
            .arg("--json")
            .arg(self.dir.path().join("out/r.json"))
            .arg("--junit")
            .arg(self.dir.path().join("out/r.xml"))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        with_default_signals(&mut c);
        c
    }
    /// Everything left in the TMPDIR (nothing may be).
    fn dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }
}

/// Interrupts `sandspec run` with `sig` once both cases are in flight (or
/// after `delay`); returns its status, what is left, and the round.
fn interrupt_run(
    driver: &str,
    sig: libc::c_int,
    delay: Option<Duration>,
    as_nobody: bool,
) -> (ExitStatus, Left, RunRound) {
    let round = RunRound::new(as_nobody);
    let mut child = round.cmd(driver, as_nobody).spawn().unwrap();
    let pid = sandspec_pid(&child, as_nobody);
    let mut cgroups: Vec<PathBuf> = Vec::new();
    // The daemon case has two processes, the sleep case one.
    watch(delay, "both cases in flight", 3, &mut cgroups, || {
        started_from(&round.tmp())
    });
    kill(pid, sig);
    // Teardown is prompt: drivers are cancelled, not waited out (their
    // bound, 10 s, would hide a run that was never cancelled). Under TCG
    // (the kernel matrix) the bound is stretched, and only what is left
    // behind is checked there.
    let st = wait_bounded(&mut child, time_scaled(Duration::from_secs(8)));
    let left = Left {
        processes: started_from(&round.tmp()),
        dirs: round.dirs(),
        seen_cgroups: cgroups.len(),
        cgroups: cgroups.into_iter().filter(|c| c.exists()).collect(),
    };
    for p in &left.processes {
        kill(*p as u32, libc::SIGKILL);
    }
    (st, left, round)
}

#[test]
fn run_tears_down_every_running_case_writes_reports_and_exits_128_plus_n() {
    if !landlock_or_refusal() {
        return;
    }
    for ((sig, name), driver) in SIGNALS
        .into_iter()
        .zip(["reference", "reference-proto", "none"])
    {
        let (st, left, round) = interrupt_run(driver, sig, None, false);
        assert_eq!(st.code(), Some(128 + sig), "{driver} {name}: {st:?}");
        assert!(left.is_empty(), "{driver} {name}: left behind {left:?}");
        assert!(
            !is_root() || left.seen_cgroups > 0,
            "{driver} {name}: no run cgroup seen"
        );
        let json: serde_json::Value =
            serde_json::from_str(&read(&round.dir.path().join("out/r.json"))).unwrap();
        assert_eq!(json["interrupted"], name, "{json}");
        assert_eq!(json["counts"]["error"], 2, "{json}");
        for c in json["cases"].as_array().unwrap() {
            let why = c["reason"].as_str().unwrap_or("");
            assert!(
                c["status"] == "error" && why.contains(&format!("interrupted by {name}")),
                "{driver}: {c}"
            );
        }
        let xml = read(&round.dir.path().join("out/r.xml"));
        assert!(
            xml.contains(&format!("name=\"interrupted\" value=\"{name}\"")),
            "{xml}"
        );
    }
}

#[test]
fn random_interrupts_leave_nothing_behind() {
    if !landlock_or_refusal() {
        return;
    }
    let rounds: usize = std::env::var("SANDSPEC_INTERRUPT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed = std::env::var("SANDSPEC_INTERRUPT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut users = vec![false];
    if runuser_available() {
        users.push(true);
    }
    let mut left = Left::default();
    let mut tries = 0;
    let drivers = ["reference", "reference-proto", "none"];
    for &nobody in &users {
        for _ in 0..rounds {
            let (sig, name) = SIGNALS[rng.usize(..SIGNALS.len())];
            // From before the handlers exist to well into the cases.
            let delay = Duration::from_millis(rng.u64(0..2500));
            let (st, l, _round) = if rng.bool() {
                let driver = drivers[rng.usize(..drivers.len())];
                let (st, l, r) = interrupt_run(driver, sig, Some(delay), nobody);
                (st, l, Some(r))
            } else {
                let (st, l) = interrupt_sandbox(sig, Some(delay), nobody);
                (st, l, None)
            };
            tries += 1;
            // Before the handlers are installed the signal's default action
            // ends sandspec, which has started nothing yet.
            assert!(
                exit_by(st, sig),
                "seed {seed}: {name} after {delay:?} (nobody: {nobody}): {st:?}"
            );
            left.add(l);
        }
    }
    eprintln!(
        "random interrupts: {tries} tries (seed {seed}), left: {} processes, {} dirs, {} \
         cgroups ({} run cgroups seen in flight)",
        left.processes.len(),
        left.dirs.len(),
        left.cgroups.len(),
        left.seen_cgroups
    );
    assert!(left.is_empty(), "seed {seed}: left behind {left:?}");
}

#[test]
fn a_run_outliving_the_reference_watchdog_has_its_tree_killed_first() {
    use sandspec::driver::reference::ReferenceDriver;
    use sandspec::driver::{Driver, DriverError, RunRequest};
    use sandspec::policy::Command;
    if !landlock_or_refusal() {
        return;
    }
    let marker = Marker::new();
    let mut policy = base_policy();
    policy.exec.push(marker.dir.path().to_path_buf());
    let req = RunRequest {
        seq: 1,
        case: "watchdog".into(),
        policy,
        command: Command::argv([
            marker.probe().to_string_lossy().into_owned(),
            "setsid-daemon".into(),
            "60".into(),
        ]),
    };
    let t0 = Instant::now();
    let r = ReferenceDriver::new().run(&req, Duration::from_millis(1500));
    assert!(matches!(r, Err(DriverError::Hung { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Nothing is waited for here: the driver returned after the tree died.
    assert_eq!(marker.alive(), Vec::<i32>::new());
}
