//! How the reference sandbox's spawn of `/bin/true` grows with the number
//! of allowlisted paths (1, 10, 100, 1000 directories in `read`), with
//! concurrent spawns (1, 2, 8, 32 threads sharing one sandbox, against a
//! bare spawn at the same concurrency), and with the caller's own heap
//! (0 and 256 MiB touched). `sandspec bench --scaling` measures
//! the same interleaved and prints the README's table; this is the
//! criterion view, for regressions.
//!
//! `cargo bench --bench scaling`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sandspec::bench::{bare_spawn, true_policy, TRUE};
use sandspec::policy::{Command, Outcome, Policy};
use sandspec::sandbox::Sandbox;

const PATHS: &[usize] = &[1, 10, 100, 1000];
const THREADS: &[usize] = &[1, 2, 8, 32];

fn run_true(sb: &Sandbox, cmd: &Command) {
    let out = sb.run(black_box(cmd));
    assert_eq!(
        out.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn paths(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("failed to create a temporary directory");
    let most = PATHS.iter().copied().max().unwrap_or(0);
    let dirs: Vec<PathBuf> = (0..most)
        .map(|i| {
            let d = tmp.path().join(format!("d{i:05}"));
            std::fs::create_dir(&d).expect("failed to create a directory");
            d
        })
        .collect();
    let cmd = Command::argv([TRUE]);
    let mut g = c.benchmark_group("paths");
    for &n in PATHS {
        let mut policy: Policy = true_policy();
        policy.read.extend_from_slice(&dirs[..n]);
        // What a driver pays per case: compile the policy, then spawn.
        g.bench_with_input(BenchmarkId::new("build+spawn", n), &policy, |b, p| {
            b.iter(|| {
                let sb = Sandbox::new(black_box(p)).expect("the bench needs Landlock");
                run_true(&sb, &cmd);
            })
        });
        // What a library user pays per spawn with the sandbox built once.
        let sb = Sandbox::new(&policy).expect("the bench needs Landlock");
        g.bench_with_input(BenchmarkId::new("spawn", n), &sb, |b, sb| {
            b.iter(|| run_true(sb, &cmd))
        });
    }
    g.finish();
}

/// The wall time of one burst of `threads` × `per_thread` spawns (the
/// library's burst, which `sandspec bench --scaling` uses too).
fn burst(threads: usize, per_thread: u64, sb: Option<&Sandbox>, cmd: &Command) -> Duration {
    sandspec::bench::scaling::burst(threads, per_thread as usize, sb, cmd)
        .expect("failed to spawn /bin/true")
        .1
}

fn concurrency(c: &mut Criterion) {
    let sb = Sandbox::new(&true_policy()).expect("the bench needs Landlock");
    let cmd = Command::argv([TRUE]);
    let mut g = c.benchmark_group("concurrent");
    g.sample_size(20);
    for &t in THREADS {
        // One iteration = one spawn on each of the `t` threads; criterion's
        // throughput is then spawns per second.
        g.throughput(Throughput::Elements(t as u64));
        g.bench_function(BenchmarkId::new("bare", t), |b| {
            b.iter_custom(|iters| burst(t, iters, None, &cmd))
        });
        g.bench_function(BenchmarkId::new("sandbox", t), |b| {
            b.iter_custom(|iters| burst(t, iters, Some(&sb), &cmd))
        });
    }
    g.finish();
}

fn caller_heap(c: &mut Criterion) {
    let sb = Sandbox::new(&true_policy()).expect("the bench needs Landlock");
    let cmd = Command::argv([TRUE]);
    let mut g = c.benchmark_group("caller_heap");
    g.sample_size(10);
    for mib in [0usize, 256] {
        // Every page written, so the kernel has really mapped it.
        let mut heap = vec![0u8; mib << 20];
        for page in heap.chunks_mut(4096) {
            page[0] = 1;
        }
        let heap = black_box(heap);
        g.bench_function(BenchmarkId::new("bare", mib), |b| {
            b.iter(|| bare_spawn().expect("failed to spawn /bin/true"))
        });
        g.bench_function(BenchmarkId::new("sandbox", mib), |b| {
            b.iter(|| run_true(&sb, &cmd))
        });
        drop(heap);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    targets = paths, concurrency, caller_heap
}
criterion_main!(benches);
