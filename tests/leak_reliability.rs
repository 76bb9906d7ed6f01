//! Many runs in a row leak nothing: descriptors, threads, children (zombies
//! included), memory, cgroups. One test in this binary, so that nothing
//! else runs in the process while it counts.
//!
//! `SANDSPEC_SPAWNS` sets the number of runs of each kind (default 200;
//! the README's figure is 4400 runs).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sandspec::driver::reference::ReferenceDriver;
use sandspec::driver::{Driver, RunRequest};
use sandspec::policy::{Command, Limits, Outcome};
use sandspec::sandbox::Sandbox;

/// What the process holds now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    fds: usize,
    threads: usize,
    children: usize,
    rss_kib: u64,
    cgroups: usize,
}

fn count_dir(p: &Path) -> usize {
    std::fs::read_dir(p).map_or(0, |d| d.count())
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// This process's run cgroups: the sandbox's pids cgroups
/// (`sandspec/<pid>-…`) and the harness's cgroup2 ones
/// (`sandspec-runs/r<pid>-…`), in every hierarchy they may be in.
fn cgroups() -> usize {
    let me = std::process::id();
    let mut n = 0;
    for root in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        for (parent, prefix) in [
            ("sandspec", format!("{me}-")),
            ("sandspec-runs", format!("r{me}-")),
        ] {
            n += std::fs::read_dir(Path::new(root).join(parent)).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            });
        }
    }
    n
}

fn held() -> Held {
    let children = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|c| c.split_whitespace().count())
        .sum();
    Held {
        fds: count_dir(Path::new("/proc/self/fd")),
        threads: status_field("Threads:") as usize,
        children,
        rss_kib: status_field("VmRSS:"),
        cgroups: cgroups(),
    }
}

#[test]
fn sequential_runs_leak_nothing() {
    if !landlock_or_refusal() {
        return;
    }
    let n: usize = std::env::var("SANDSPEC_SPAWNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut policy = base_policy();
    // As root a pids cgroup per run (pooled), else RLIMIT_NPROC.
    policy.limits = Limits {
        processes: Some(8),
        ..Default::default()
    };
    let cmd = Command::argv([
        probe().to_string_lossy().into_owned(),
        "exit".into(),
        "0".into(),
    ]);
    let sb = Sandbox::new(&policy).unwrap();
    // Warm up: lazily made things (the cgroup pool, the allocator's arenas,
    // the interrupt hooks' table) are made once, not leaked.
    for _ in 0..20 {
        assert_eq!(sb.run(&cmd).outcome, Outcome::Exited { code: 0 });
    }
    let mut driver = ReferenceDriver::new();
    let req = RunRequest {
        seq: 0,
        case: "leak".into(),
        policy: policy.clone(),
        command: cmd.clone(),
    };
    for _ in 0..20 {
        driver.run(&req, Duration::from_secs(30)).unwrap();
    }
    let before = held();
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let out = sb.run(&cmd);
        assert_eq!(out.outcome, Outcome::Exited { code: 0 }, "run {i}: {out:?}");
        // The in-process driver: a sandbox, a canceller, a thread per run.
        let out = driver.run(&req, Duration::from_secs(30)).unwrap();
        assert_eq!(out.outcome, Outcome::Exited { code: 0 }, "driver run {i}");
    }
    // A moment for the per-run threads to finish exiting.
    std::thread::sleep(Duration::from_millis(200));
    let after = held();
    eprintln!(
        "{} sequential runs ({n} reused sandbox + {n} driver runs) in {:.1}s: before {before:?}, after {after:?}",
        2 * n,
        t0.elapsed().as_secs_f64()
    );
    assert!(after.fds <= before.fds, "descriptors leaked");
    assert!(after.threads <= before.threads, "threads leaked");
    assert_eq!(after.children, 0, "children (or zombies) left");
    assert!(after.cgroups <= before.cgroups, "cgroups left behind");
    assert!(
        after.rss_kib < before.rss_kib + 16 * 1024,
        "RSS grew by {} KiB",
        after.rss_kib.saturating_sub(before.rss_kib)
    );
}
