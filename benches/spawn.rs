//! Spawn latency: a bare `/bin/true` against the reference sandbox with each
//! feature turned on in turn, in one run, plus each setup step on its own so
//! a regression can be located. Read the ratios, not the absolute numbers:
//! these machines are noisy.
//!
//! `cargo bench --bench spawn`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sandspec::policy::{Command, Limits, Network, Policy, ScopeKind, Size, Timeout};
use sandspec::sandbox::landlock;
use sandspec::sandbox::seccomp::{Filter, SocketRules};
use sandspec::sandbox::Sandbox;

fn fs_policy() -> Policy {
    Policy {
        read: ["/usr", "/lib", "/lib64", "/etc"]
            .map(PathBuf::from)
            .to_vec(),
        exec: ["/usr/bin", "/bin", "/lib", "/lib64"]
            .map(PathBuf::from)
            .to_vec(),
        network: Network::Allow,
        ..Default::default()
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

fn spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_true");
    g.bench_function("bare", |b| {
        b.iter(|| {
            let st = std::process::Command::new("/bin/true").status().unwrap();
            assert!(st.success());
        })
    });
    let cmd = Command::argv(["/bin/true"]);
    for (name, policy) in policies() {
        let sb = Sandbox::new(&policy).expect("the bench needs a kernel with Landlock");
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = sb.run(black_box(&cmd));
                assert_eq!(
                    out.outcome,
                    sandspec::policy::Outcome::Exited { code: 0 },
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            })
        });
    }
    g.finish();
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

fn steps(c: &mut Criterion) {
    let abi = sandspec::kernel::landlock().abi().expect("Landlock needed");
    let policy = policies().pop().unwrap().1;
    let mut g = c.benchmark_group("steps");
    g.bench_function("build_ruleset", |b| {
        b.iter(|| landlock::compile(black_box(&policy), abi).unwrap())
    });
    g.bench_function("build_seccomp", |b| {
        b.iter(|| {
            Filter::sandbox(
                true,
                SocketRules {
                    landlock_tcp: true,
                    landlock_udp: false,
                },
                true,
            )
            .unwrap()
        })
    });
    g.bench_function("sandbox_new", |b| {
        b.iter(|| Sandbox::new(black_box(&policy)).unwrap())
    });
    g.bench_function("fork_exit", |b| b.iter(|| in_child(|| {})));
    let compiled = landlock::compile(&policy, abi).unwrap();
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
    let filter = Filter::sandbox(
        true,
        SocketRules {
            landlock_tcp: true,
            landlock_udp: false,
        },
        true,
    )
    .unwrap();
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
criterion_main!(benches);
