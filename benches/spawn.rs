//! Spawn latency: a bare `/bin/true` against the reference sandbox with each
//! feature turned on in turn, in one run, plus each setup step on its own so
//! a regression can be located. Read the ratios, not the absolute numbers:
//! these machines are noisy.
//!
//! `cargo bench --bench spawn`
//!
//! Criterion measures one benchmark after the other, so on a loaded machine
//! the load can change between bare and sandboxed. The group
//! `spawn_true_interleaved` (printed as a table, not a criterion benchmark)
//! therefore runs every variant once per round, in shuffled order, and
//! reports medians, p90s and ratios to bare from the same rounds:
//! `cargo bench --bench spawn -- interleaved`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use sandspec::policy::{Command, Limits, Network, Policy, ScopeKind, Size, Timeout};
use sandspec::sandbox::landlock;
use sandspec::sandbox::seccomp::{Filter, Groups, NetRules, Spec};
use sandspec::sandbox::Sandbox;

/// The bench policy with the network allowed: files only.
fn fs_policy() -> Policy {
    Policy {
        network: Network::Allow,
        ..sandspec::bench::true_policy()
    }
}

fn policies() -> Vec<(&'static str, Policy)> {
    let fs = fs_policy();
    let net = Policy {
        network: Network::Deny,
        ..fs.clone()
    };
    let limits = Policy {
        limits: Limits {
            memory: Some(Size(1 << 30)),
            open_files: Some(256),
            cpu_seconds: Some(10),
            ..Default::default()
        },
        ..net.clone()
    };
    let abi = sandspec::kernel::landlock().abi().unwrap_or(0);
    let everything = Policy {
        timeout: Some(Timeout(Duration::from_secs(10))),
        limits: Limits {
            processes: Some(64),
            output_bytes: Some(Size(1 << 20)),
            ..limits.limits.clone()
        },
        scope: if abi >= landlock::ABI_SCOPE {
            vec![ScopeKind::Signal, ScopeKind::AbstractUnixSocket]
        } else {
            vec![]
        },
        env: [("HOME".to_string(), "/tmp".to_string())].into(),
        ..limits.clone()
    };
    vec![
        ("fs", fs),
        ("fs+net", net),
        ("fs+net+limits", limits),
        ("everything", everything),
    ]
}

/// `/bin/true` without a sandbox, with the environment a sandboxed run
/// gets (just PATH; `everything` adds HOME): the caller's may carry
/// variables that slow the dynamic loader down (`cargo bench` sets
/// LD_LIBRARY_PATH, which made the bare spawn ~30 % slower than the
/// sandboxed ones here).
fn bare_true() {
    let st = std::process::Command::new("/bin/true")
        .env_clear()
        .env("PATH", sandspec::policy::DEFAULT_PATH)
        .status()
        .unwrap();
    assert!(st.success());
}

fn sandboxed_true(sb: &Sandbox, cmd: &Command) {
    let out = sb.run(black_box(cmd));
    assert_eq!(
        out.outcome,
        sandspec::policy::Outcome::Exited { code: 0 },
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_true");
    g.bench_function("bare", |b| b.iter(bare_true));
    let cmd = Command::argv(["/bin/true"]);
    for (name, policy) in policies() {
        let sb = Sandbox::new(&policy).expect("the bench needs a kernel with Landlock");
        g.bench_function(name, |b| b.iter(|| sandboxed_true(&sb, &cmd)));
    }
    g.finish();
}

/// Rounds of the interleaved comparison (a smoke run of 2 under `cargo test`).
const INTERLEAVED_ROUNDS: usize = 400;

/// Bare and every sandbox variant once per round, in an order shuffled per
/// round; prints median, p90 and the ratio of medians to bare.
fn spawn_interleaved(rounds: usize) {
    let cmd = Command::argv(["/bin/true"]);
    let sandboxes: Vec<(&str, Sandbox)> = policies()
        .into_iter()
        .map(|(name, p)| {
            let sb = Sandbox::new(&p).expect("the bench needs a kernel with Landlock");
            (name, sb)
        })
        .collect();
    let n = sandboxes.len() + 1;
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); n];
    // xorshift64, seeded from the clock: no dependency for a shuffle.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..rounds {
        for i in (1..n).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let t = std::time::Instant::now();
            match i.checked_sub(1) {
                None => bare_true(),
                Some(s) => sandboxed_true(&sandboxes[s].1, &cmd),
            }
            times[i].push(t.elapsed());
        }
    }
    let quantile = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let bare = quantile(&mut times[0], 0.5);
    println!(
        "spawn_true_interleaved: {rounds} rounds, each variant once per round in shuffled order"
    );
    println!(
        "{:<16} {:>10} {:>10} {:>7}",
        "variant", "median_us", "p90_us", "x bare"
    );
    for (i, t) in times.iter_mut().enumerate() {
        let name = i.checked_sub(1).map_or("bare", |s| sandboxes[s].0);
        let median = quantile(t, 0.5);
        let p90 = quantile(t, 0.9);
        println!(
            "{name:<16} {:>10.0} {:>10.0} {:>7.2}",
            us(median),
            us(p90),
            median.as_secs_f64() / bare.as_secs_f64()
        );
    }
}

/// Forks a child that runs `f` and exits; waits for it.
fn in_child(f: impl Fn()) {
    // SAFETY: the child runs `f` (syscalls on prepared data only) and
    // exits without returning.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            f();
            libc::_exit(0);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// The filter of `network: deny` on an ABI-7 kernel, root with rlimits.
fn bench_spec() -> Spec {
    Spec {
        network: NetRules::Deny,
        landlock_tcp: true,
        landlock_udp: false,
        landlock_unix: false,
        landlock_signal_scope: true,
        lock_rlimits: true,
        root: true,
        groups: Groups::ALL,
    }
}

fn steps(c: &mut Criterion) {
    let abi = sandspec::kernel::landlock().abi().expect("Landlock needed");
    let policy = policies().pop().unwrap().1;
    let mut g = c.benchmark_group("steps");
    g.bench_function("build_ruleset", |b| {
        b.iter(|| landlock::compile(black_box(&policy), abi, landlock::Mechanisms::ALL).unwrap())
    });
    g.bench_function("build_seccomp", |b| {
        b.iter(|| Filter::sandbox(&bench_spec()).unwrap())
    });
    g.bench_function("sandbox_new", |b| {
        b.iter(|| Sandbox::new(black_box(&policy)).unwrap())
    });
    g.bench_function("fork_exit", |b| b.iter(|| in_child(|| {})));
    let compiled = landlock::compile(&policy, abi, landlock::Mechanisms::ALL).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&compiled.fd);
    g.bench_function("fork_restrict_self_exit", |b| {
        b.iter(|| {
            in_child(|| {
                // SAFETY: integer-only syscalls in the forked child.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32);
                }
            })
        })
    });
    let filter = Filter::sandbox(&bench_spec()).unwrap();
    g.bench_function("fork_seccomp_exit", |b| {
        b.iter(|| {
            in_child(|| {
                // SAFETY: installing a prebuilt filter in the forked child.
                let _ = unsafe { filter.install() };
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(200)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    targets = spawn, steps
}

fn main() {
    // Criterion's own filter syntax: the first free argument selects
    // benchmarks by substring; without `--bench` (cargo test) it is a smoke run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if filter.is_none_or(|f| "spawn_true_interleaved".contains(f.as_str())) {
        let bench = args.iter().any(|a| a == "--bench");
        spawn_interleaved(if bench { INTERLEAVED_ROUNDS } else { 2 });
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
