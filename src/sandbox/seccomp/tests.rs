//! The filter's decisions, checked by running the BPF program on
//! `seccomp_data` in a small interpreter (no kernel, no fork): every rule
//! group is asked the questions an attacker would ask it.

use super::*;

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const fn errno(e: i32) -> u32 {
    0x0005_0000 | e as u32
}

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const ARCH: u32 = 243 | 0x8000_0000 | 0x4000_0000;

/// Runs classic BPF as seccomp does, on (nr, arch, args).
fn run(prog: &[libc::sock_filter], nr: i64, arch: u32, args: [u64; 6]) -> u32 {
    run_counted(prog, nr, arch, args).0
}

/// [`run`], and how many instructions it took.
fn run_counted(prog: &[libc::sock_filter], nr: i64, arch: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&(nr as u32).to_le_bytes());
    data.extend_from_slice(&arch.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    for a in args {
        data.extend_from_slice(&a.to_le_bytes());
    }
    let word =
        |off: u32| u32::from_le_bytes(data[off as usize..off as usize + 4].try_into().unwrap());
    let (mut a, mut x) = (0u32, 0u32);
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = &prog[pc];
        pc += 1;
        steps += 1;
        match i.code {
            0x20 => a = word(i.k),           // ld w abs
            0x54 => a &= i.k,                // alu and k
            0x04 => a = a.wrapping_add(i.k), // alu add k
            0x07 => x = a,                   // tax
            0x87 => a = x,                   // txa
            0x05 => pc += i.k as usize,      // ja
            0x15 | 0x25 | 0x35 | 0x45 => {
                let t = match i.code {
                    0x15 => a == i.k,
                    0x25 => a > i.k,
                    0x35 => a >= i.k,
                    _ => a & i.k != 0,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            0x06 => return (i.k, steps), // ret k
            c => panic!("unexpected BPF opcode {c:#x} at {}", pc - 1),
        }
    }
}

fn spec(network: NetRules) -> Spec {
    Spec {
        network,
        landlock_tcp: true,
        landlock_udp: false,
        landlock_unix: false,
        landlock_signal_scope: true,
        lock_rlimits: false,
        root: false,
        groups: Groups::ALL,
    }
}

struct F(Filter);

impl F {
    fn new(s: Spec) -> F {
        F(Filter::sandbox(&s).expect("filter builds"))
    }
    fn call(&self, nr: i64, args: &[u64]) -> u32 {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        run(&self.0.prog, nr, ARCH, a)
    }
    fn patched(&self, supervisor: u32, caller: u32) -> F {
        let mut f = self.0.clone();
        for s in &f.slots {
            f.prog[s.index].k = match s.kind {
                SlotKind::Supervisor => supervisor,
                SlotKind::Caller => caller,
            };
        }
        F(f)
    }
}

const INET: u64 = libc::AF_INET as u64;
const INET6: u64 = libc::AF_INET6 as u64;
const UNIX: u64 = libc::AF_UNIX as u64;
const STREAM: u64 = libc::SOCK_STREAM as u64;
const DGRAM: u64 = libc::SOCK_DGRAM as u64;
const EPERM: u32 = errno(libc::EPERM);

#[test]
fn deny_refuses_every_inet_socket_and_unix_sockets_below_abi_9() {
    let f = F::new(spec(NetRules::Deny));
    for (fam, ty) in [(INET, STREAM), (INET6, STREAM), (INET, DGRAM), (INET, 3)] {
        assert_eq!(f.call(libc::SYS_socket, &[fam, ty, 0]), EPERM, "{fam} {ty}");
    }
    for fam in [
        libc::AF_NETLINK,
        libc::AF_PACKET,
        libc::AF_VSOCK,
        libc::AF_ALG,
    ] {
        assert_eq!(f.call(libc::SYS_socket, &[fam as u64, DGRAM, 0]), EPERM);
    }
    assert_eq!(f.call(libc::SYS_socket, &[UNIX, STREAM, 0]), EPERM);
    // socketpair stays for unix: it reaches nothing outside.
    assert_eq!(f.call(libc::SYS_socketpair, &[UNIX, STREAM, 0]), ALLOW);
    let mut s = spec(NetRules::Deny);
    s.landlock_unix = true;
    let f = F::new(s);
    assert_eq!(f.call(libc::SYS_socket, &[UNIX, STREAM, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_socket, &[INET, STREAM, 0]), EPERM);
}

#[test]
fn high_bits_of_an_int_argument_do_not_slip_past_the_filter() {
    let f = F::new(spec(NetRules::Deny));
    // The kernel reads `domain` as an int: 0x1_0000_0002 is AF_INET.
    assert_eq!(
        f.call(libc::SYS_socket, &[(1 << 32) | INET, STREAM, 0]),
        EPERM
    );
}

#[test]
fn port_rules_leave_tcp_to_landlock_but_refuse_fast_open_and_unbound_listen() {
    let f = F::new(spec(NetRules::Ports { listen: false }));
    assert_eq!(f.call(libc::SYS_socket, &[INET, STREAM, 0]), ALLOW);
    assert_eq!(
        f.call(libc::SYS_socket, &[INET6, STREAM | 0x80000, 6]),
        ALLOW
    );
    assert_eq!(
        f.call(libc::SYS_socket, &[INET, STREAM, 132]),
        EPERM,
        "SCTP"
    );
    assert_eq!(
        f.call(libc::SYS_socket, &[INET, DGRAM, 0]),
        EPERM,
        "UDP below ABI 10"
    );
    assert_eq!(
        f.call(libc::SYS_socket, &[libc::AF_NETLINK as u64, 3, 0]),
        EPERM
    );
    assert_eq!(f.call(libc::SYS_socket, &[UNIX, STREAM, 0]), EPERM);
    assert_eq!(
        f.call(libc::SYS_sendto, &[3, 0, 1, 0x2000_0000, 0, 16]),
        EPERM
    );
    assert_eq!(f.call(libc::SYS_sendto, &[3, 0, 1, 0x4000, 0, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_sendmsg, &[3, 0, 0x2000_0040]), EPERM);
    assert_eq!(f.call(libc::SYS_sendmmsg, &[3, 0, 1, 0x2000_0000]), EPERM);
    assert_eq!(f.call(libc::SYS_listen, &[3, 1]), EPERM);
    let f = F::new(spec(NetRules::Ports { listen: true }));
    assert_eq!(f.call(libc::SYS_listen, &[3, 1]), ALLOW);
}

#[test]
fn allow_leaves_sockets_alone_but_not_the_kernel_surface() {
    let f = F::new(spec(NetRules::Allow));
    assert_eq!(f.call(libc::SYS_socket, &[INET, DGRAM, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_socket, &[UNIX, STREAM, 0]), ALLOW);
    assert_eq!(
        f.call(libc::SYS_sendto, &[3, 0, 1, 0x2000_0000, 0, 16]),
        ALLOW
    );
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_msgget,
        libc::SYS_shmget,
        libc::SYS_semget,
        libc::SYS_mq_open,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_fsopen,
        libc::SYS_open_tree,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_kexec_load,
        libc::SYS_open_by_handle_at,
    ] {
        assert_eq!(f.call(nr, &[0, 0, 0]), EPERM, "syscall {nr}");
    }
    assert_eq!(f.call(libc::SYS_clone3, &[0, 88]), errno(libc::ENOSYS));
    assert_eq!(f.call(libc::SYS_clone, &[libc::SIGCHLD as u64]), ALLOW);
    let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
    assert_eq!(f.call(libc::SYS_clone, &[thread]), ALLOW);
    for ns in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
    ] {
        assert_eq!(f.call(libc::SYS_clone, &[ns as u64 | 17]), EPERM);
    }
    // memfds only sealed non-executable.
    assert_eq!(f.call(libc::SYS_memfd_create, &[0, 1]), EPERM);
    assert_eq!(f.call(libc::SYS_memfd_create, &[0, 1 | 8]), ALLOW);
    assert_eq!(f.call(libc::SYS_read, &[0, 0, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_execve, &[0, 0, 0]), ALLOW);
}

#[test]
fn x32_numbers_and_foreign_architectures_never_reach_the_body() {
    let f = F::new(spec(NetRules::Deny));
    let x32 = compile::X32_SYSCALL_BIT as i64;
    assert_eq!(f.call(x32 | libc::SYS_socket, &[INET, DGRAM, 0]), EPERM);
    assert_eq!(f.call(x32 | libc::SYS_read, &[0, 0, 0]), EPERM);
    // i386's socketcall through int 0x80 arrives with another arch.
    let i386 = 3 | 0x4000_0000;
    let mut a = [0u64; 6];
    a[0] = 1;
    assert_eq!(run(&f.0.prog, 102, i386, a), KILL_PROCESS);
}

#[test]
fn below_abi_6_signals_reach_neither_the_supervisor_nor_the_caller_nor_groups() {
    let mut s = spec(NetRules::Allow);
    s.landlock_signal_scope = false;
    let f = F::new(s);
    assert_eq!(f.0.slots().len(), 2);
    let f = f.patched(4242, 777);
    for nr in [
        libc::SYS_kill,
        libc::SYS_tkill,
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
    ] {
        assert_eq!(f.call(nr, &[4242, 9]), EPERM, "supervisor via {nr}");
        assert_eq!(f.call(nr, &[777, 9]), EPERM, "caller via {nr}");
        assert_eq!(f.call(nr, &[(-1i64) as u64, 9]), EPERM, "-1 via {nr}");
        assert_eq!(
            f.call(nr, &[(-777i64) as u64, 9]),
            EPERM,
            "a group via {nr}"
        );
        assert_eq!(f.call(nr, &[5000, 9]), ALLOW, "another pid via {nr}");
    }
    assert_eq!(f.call(libc::SYS_kill, &[0, 15]), ALLOW, "its own group");
    assert_eq!(f.call(libc::SYS_pidfd_send_signal, &[3, 9, 0, 0]), EPERM);
    assert_eq!(
        f.call(libc::SYS_fcntl, &[3, libc::F_SETOWN as u64, 4242]),
        EPERM
    );
    assert_eq!(f.call(libc::SYS_fcntl, &[3, libc::F_GETFL as u64]), ALLOW);
    // From ABI 6 Landlock scopes signals: no fallback, no slots.
    let f = F::new(spec(NetRules::Allow));
    assert!(f.0.slots().is_empty());
    assert_eq!(f.call(libc::SYS_kill, &[(-1i64) as u64, 9]), ALLOW);
}

#[test]
fn a_group_switched_off_refuses_nothing_of_its_own() {
    let mut s = spec(NetRules::Deny);
    s.groups.ipc = false;
    s.groups.sockets = false;
    let f = F::new(s);
    assert_eq!(f.call(libc::SYS_msgget, &[0, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_socket, &[INET, DGRAM, 0]), ALLOW);
    assert_eq!(f.call(libc::SYS_keyctl, &[0]), EPERM);
}

#[test]
fn root_with_rlimits_cannot_raise_them_but_may_read_them() {
    let mut s = spec(NetRules::Allow);
    s.lock_rlimits = true;
    let f = F::new(s);
    assert_eq!(f.call(libc::SYS_setrlimit, &[7, 0]), EPERM);
    assert_eq!(f.call(libc::SYS_prlimit64, &[0, 7, 0x1000, 0]), EPERM);
    assert_eq!(f.call(libc::SYS_prlimit64, &[0, 7, 0, 0x1000]), ALLOW);
    // A new-limit pointer whose low 32 bits are zero is still a pointer.
    assert_eq!(
        f.call(libc::SYS_prlimit64, &[0, 7, 0x7fff_0000_0000, 0]),
        EPERM
    );
}

#[test]
fn nobody_may_set_set_id_bits_and_root_may_change_no_metadata() {
    let f = F::new(spec(NetRules::Allow));
    assert_eq!(f.call(libc::SYS_fchmodat, &[0, 0, 0o4755]), EPERM);
    assert_eq!(f.call(libc::SYS_fchmod, &[3, 0o2755]), EPERM);
    assert_eq!(f.call(libc::SYS_fchmodat, &[0, 0, 0o755]), ALLOW);
    assert_eq!(f.call(libc::SYS_utimensat, &[0, 0, 0, 0]), ALLOW);
    let mut s = spec(NetRules::Allow);
    s.root = true;
    let f = F::new(s);
    for nr in [
        libc::SYS_fchmodat,
        libc::SYS_fchmod,
        libc::SYS_fchownat,
        libc::SYS_utimensat,
        libc::SYS_setxattr,
        libc::SYS_fremovexattr,
    ] {
        assert_eq!(f.call(nr, &[0, 0, 0o644, 0]), EPERM, "syscall {nr}");
    }
}

/// What the rules say, read directly (no BPF): the reference the program
/// is checked against.
fn decide(r: &rules::Rules, nr: i64, arch: u32, args: &[u64; 6], pids: (u32, u32)) -> u32 {
    if arch != ARCH {
        return KILL_PROCESS;
    }
    if nr as u32 >= compile::X32_SYSCALL_BIT {
        return EPERM;
    }
    for check in r.get(&nr).into_iter().flatten() {
        match check {
            rules::Check::Always(e) => return errno(*e),
            rules::Check::When(conds) => {
                if conds.iter().all(|c| c.holds(args)) {
                    return EPERM;
                }
            }
            rules::Check::SignalTarget => {
                let pid = args[0] as u32;
                if pid & 0x8000_0000 != 0 || pid == pids.0 || pid == pids.1 {
                    return EPERM;
                }
            }
        }
    }
    ALLOW
}

/// Every spec the sandbox can ask for (groups all on, or one off).
fn all_specs() -> Vec<Spec> {
    let mut out = Vec::new();
    let nets = [
        NetRules::Allow,
        NetRules::Deny,
        NetRules::Ports { listen: true },
        NetRules::Ports { listen: false },
    ];
    for network in nets {
        for bits in 0..64u32 {
            let b = |i: u32| bits & (1 << i) != 0;
            out.push(Spec {
                network,
                landlock_tcp: b(0),
                landlock_udp: b(1),
                landlock_unix: b(2),
                landlock_signal_scope: b(3),
                lock_rlimits: b(4),
                root: b(5),
                groups: Groups::ALL,
            });
        }
    }
    let mut one_off = Vec::new();
    for i in 0..11 {
        let mut s = out[out.len() - 1];
        let g = &mut s.groups;
        let field = [
            &mut g.sockets,
            &mut g.io_uring,
            &mut g.kernel_surface,
            &mut g.keyrings,
            &mut g.ipc,
            &mut g.namespaces,
            &mut g.admin,
            &mut g.memfd_exec,
            &mut g.metadata,
            &mut g.signals,
            &mut g.rlimits,
        ];
        *field.into_iter().nth(i).unwrap() = false;
        one_off.push(s);
    }
    out.extend(one_off);
    out
}

/// An argument an attacker would try against `r`: the rules' own values
/// and masks, with high bits, off by one, and noise.
fn attacker_arg(rng: &mut fastrand::Rng, values: &[u64]) -> u64 {
    let v = if values.is_empty() || rng.bool() {
        [0, 1, u64::MAX, 0x8000_0000, 0xffff_ffff, 1 << 32][rng.usize(..6)]
    } else {
        values[rng.usize(..values.len())]
    };
    match rng.u8(..6) {
        0 => v,
        1 => v | (rng.u64(..) << 32),
        2 => v.wrapping_add(1),
        3 => v | rng.u64(..0x1_0000),
        4 => v & !(1 << rng.u32(..32)),
        _ => rng.u64(..),
    }
}

#[test]
fn the_program_decides_every_call_as_the_rules_say() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let pids = (4242u32, 777u32);
    for s in all_specs() {
        let r = Filter::rules(&s);
        let f = F::new(s).patched(pids.0, pids.1);
        let values: Vec<u64> = r
            .values()
            .flatten()
            .flat_map(|c| match c {
                rules::Check::When(cs) => cs
                    .iter()
                    .flat_map(|c| match c.cmp {
                        rules::Cmp::MaskedEq(m) => vec![c.value, m],
                        _ => vec![c.value],
                    })
                    .collect(),
                rules::Check::SignalTarget => vec![4242, 777, (-1i64) as u64],
                rules::Check::Always(_) => vec![],
            })
            .collect();
        // Every syscall number, and past the table; x32 numbers.
        let nrs = (0..=600i64).chain([
            compile::X32_SYSCALL_BIT as i64 | libc::SYS_socket,
            0x7fff_ffff,
            0xffff_ffff,
        ]);
        for nr in nrs {
            let tries = if r.contains_key(&nr) { 64 } else { 2 };
            for _ in 0..tries {
                let args: [u64; 6] = std::array::from_fn(|_| attacker_arg(&mut rng, &values));
                let got = run(&f.0.prog, nr, ARCH, args);
                let want = decide(&r, nr, ARCH, &args, pids);
                assert_eq!(got, want, "{s:?}: syscall {nr} with {args:x?}");
            }
        }
        let a = [0u64; 6];
        assert_eq!(run(&f.0.prog, 0, ARCH ^ 1, a), KILL_PROCESS);
    }
}

#[test]
fn a_syscall_without_rules_is_decided_in_a_few_instructions() {
    // The kernel runs the filter for every syscall number when it is
    // installed (to cache the ones always allowed), and on every call it
    // cannot cache: the program's cost is its path, not its length.
    for s in all_specs() {
        let r = Filter::rules(&s);
        let f = F::new(s);
        let keys = r.len().max(1) as f64;
        // Arch check and x32 (6), two per level of the search, a leaf.
        let bound =
            6 + 2 * (keys / compile::LEAF as f64).log2().ceil() as usize + 2 * compile::LEAF + 1;
        let mut longest = 0;
        for nr in (0..=600i64).filter(|nr| !r.contains_key(nr)) {
            let (ret, steps) = run_counted(&f.0.prog, nr, ARCH, [0; 6]);
            assert_eq!(ret, ALLOW, "{s:?}: syscall {nr}");
            longest = longest.max(steps);
        }
        assert!(
            longest <= bound,
            "{s:?}: {longest} instructions for an allowed syscall, more than {bound} ({} rules, {} instructions)",
            r.len(),
            f.0.len()
        );
    }
}

#[test]
fn a_program_too_long_for_short_jumps_is_laid_out_with_ja() {
    // 300 syscalls, each with its own check: far more than 255
    // instructions, so the search reaches right halves and blocks by `ja`.
    let r: rules::Rules = (0..300i64)
        .map(|nr| {
            let c = rules::Cond {
                arg: (nr % 6) as u8,
                wide: nr % 2 == 0,
                cmp: rules::Cmp::Eq,
                value: nr as u64 * 3,
            };
            (nr, vec![rules::Check::When(vec![c])])
        })
        .collect();
    let head = compile::Head {
        arch: ARCH,
        deny_x32: true,
    };
    let (prog, slots) = compile::program(&r, head).expect("the long layout assembles");
    assert!(prog.len() > 1000, "{} instructions", prog.len());
    assert!(slots.is_empty());
    assert!(prog.iter().any(|i| i.code == 0x05), "no ja in the program");
    for nr in 0..320i64 {
        for hit in [false, true] {
            let mut args = [nr as u64 * 3 + 1; 6];
            if hit {
                args[(nr % 6) as usize] = nr as u64 * 3;
            }
            let want = decide(&r, nr, ARCH, &args, (0, 0));
            assert_eq!(run(&prog, nr, ARCH, args), want, "syscall {nr}, hit {hit}");
        }
    }
}

#[test]
fn a_program_the_kernel_would_refuse_is_a_build_error() {
    // Found by an attack on the compiler: the kernel loads at most 4096
    // instructions; longer must fail when built, not when installed.
    let nrs: Vec<i64> = (0..2000).collect();
    let e = Filter::failing(&nrs, libc::EPERM).unwrap_err();
    assert!(e.message.contains("4096"), "{}", e.message);
}

#[test]
fn a_fault_injection_filter_changes_nothing_but_its_syscalls() {
    let f = Filter::no_landlock(libc::ENOSYS).unwrap();
    let a = [0u64; 6];
    assert_eq!(
        run(&f.prog, libc::SYS_landlock_create_ruleset, ARCH, a),
        errno(libc::ENOSYS)
    );
    for nr in [0, libc::SYS_read, 0xffff_ffff, 0x4000_0000 | libc::SYS_read] {
        assert_eq!(run(&f.prog, nr, ARCH, a), ALLOW, "syscall {nr:#x}");
    }
    assert_eq!(run(&f.prog, 0, ARCH ^ 1, a), KILL_PROCESS);
}
