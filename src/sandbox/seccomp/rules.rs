//! The rule groups of the sandbox's filter. Each group is one line of the
//! threat model (docs/threat-model.md) and one mutant of the corpus's
//! mutation score. [`super::compile`] turns them into the program.

use std::collections::BTreeMap;

use super::{NetRules, Spec};

/// For each syscall number, its checks in order: the first that holds
/// decides; none holding allows the call.
pub type Rules = BTreeMap<i64, Vec<Check>>;

/// One check of a syscall's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The call fails with this errno, whatever its arguments.
    Always(i32),
    /// The call fails with EPERM when every condition holds.
    When(Vec<Cond>),
    /// The call fails with EPERM when its first argument, a pid, is
    /// negative (a process group, or -1: every process) or is the
    /// supervisor's or the caller's pid (patched per run).
    SignalTarget,
}

/// How an argument is compared with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    /// Argument index, 0..=5.
    pub arg: u8,
    /// All 64 bits; otherwise the low 32 only.
    pub wide: bool,
    pub cmp: Cmp,
    pub value: u64,
}

impl Cond {
    /// Whether it holds for `args` (the reference semantics the compiled
    /// program is tested against).
    #[cfg(test)]
    pub fn holds(&self, args: &[u64; 6]) -> bool {
        let (mut a, mut v) = (args[self.arg as usize], self.value);
        if !self.wide {
            a &= 0xffff_ffff;
            v &= 0xffff_ffff;
        }
        match self.cmp {
            Cmp::Eq => a == v,
            Cmp::Ne => a != v,
            Cmp::MaskedEq(m) => {
                let m = if self.wide { m } else { m & 0xffff_ffff };
                a & m == v
            }
        }
    }
}

const IPPROTO_IP: u64 = 0;
const IPPROTO_TCP: u64 = 6;
const IPPROTO_UDP: u64 = 17;
const SOCK_TYPE_MASK: u64 = 0xf;
const MSG_FASTOPEN: u64 = 0x2000_0000;
/// `MFD_NOEXEC_SEAL` (Linux 6.3): the memfd can never be made executable.
const MFD_NOEXEC_SEAL: u64 = 0x8;
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;
/// `F_SETOWN_EX` (asm-generic/fcntl.h).
const F_SETOWN_EX: u64 = 15;

/// A comparison of an argument's low 32 bits: the kernel reads these
/// arguments as 32-bit ints and ignores the upper half of the register,
/// so the filter must compare the same 32 bits (a 64-bit compare would let
/// high garbage bits slip past).
fn cond(arg: u8, cmp: Cmp, value: u64) -> Cond {
    debug_assert!(arg < 6 && value <= u64::from(u32::MAX));
    Cond {
        arg,
        wide: false,
        cmp,
        value,
    }
}

/// The whole syscall fails.
fn deny(rules: &mut Rules, nrs: &[i64]) {
    for nr in nrs {
        rules
            .entry(*nr)
            .or_default()
            .push(Check::Always(libc::EPERM));
    }
}

/// The syscall fails when any of `conds_list` (each an AND of conditions)
/// holds.
fn deny_when(rules: &mut Rules, nr: i64, conds: Vec<Vec<Cond>>) {
    rules
        .entry(nr)
        .or_default()
        .extend(conds.into_iter().map(Check::When));
}

/// Rules matching the `socket()` calls to deny for an inet `domain` under
/// port rules: every type Landlock does not control on this kernel.
fn inet_socket_rules(domain: i32, s: &Spec) -> Vec<Vec<Cond>> {
    let d = domain as u64;
    let mut out = Vec::new();
    // Socket types 1..=10 (SOCK_STREAM=1, DGRAM=2, RAW=3, RDM=4,
    // SEQPACKET=5, DCCP=6, PACKET=10), matched on the low bits (flags like
    // SOCK_CLOEXEC are above).
    for ty in 1..=10u64 {
        let (allowed, proto_ok): (bool, &[u64]) = match ty {
            1 => (s.landlock_tcp, &[IPPROTO_IP, IPPROTO_TCP]),
            2 => (s.landlock_udp, &[IPPROTO_IP, IPPROTO_UDP]),
            _ => (false, &[]),
        };
        let mut c = vec![
            cond(0, Cmp::Eq, d),
            cond(1, Cmp::MaskedEq(SOCK_TYPE_MASK), ty),
        ];
        if allowed {
            // Allowed type, but only with the protocol Landlock controls
            // (SOCK_STREAM with IPPROTO_SCTP or MPTCP would bypass it).
            for p in proto_ok {
                c.push(cond(2, Cmp::Ne, *p));
            }
        }
        out.push(c);
    }
    out
}

/// `network: deny` / port rules: which sockets may exist at all, and the
/// TCP calls Landlock does not see.
pub fn sockets(rules: &mut Rules, s: &Spec) {
    let unix = libc::AF_UNIX as u64;
    match s.network {
        NetRules::Allow => return,
        NetRules::Deny => {
            // No inet socket at all: nothing to connect, bind, listen on
            // (listen() without bind() auto-binds a port) or send through
            // (sendto(MSG_FASTOPEN) connects without connect()). Only unix
            // sockets, and those only where Landlock resolves their paths
            // (ABI 9); below it a path cannot be checked, so none.
            if s.landlock_unix {
                deny_when(rules, libc::SYS_socket, vec![vec![cond(0, Cmp::Ne, unix)]]);
            } else {
                deny(rules, &[libc::SYS_socket]);
            }
        }
        NetRules::Ports { listen } => {
            // Families: inet and inet6 (rules below), unix as above.
            let mut fam = vec![
                cond(0, Cmp::Ne, libc::AF_INET as u64),
                cond(0, Cmp::Ne, libc::AF_INET6 as u64),
            ];
            if s.landlock_unix {
                fam.push(cond(0, Cmp::Ne, unix));
            }
            let mut c = vec![fam];
            if !s.landlock_unix {
                c.push(vec![cond(0, Cmp::Eq, unix)]);
            }
            c.extend(inet_socket_rules(libc::AF_INET, s));
            c.extend(inet_socket_rules(libc::AF_INET6, s));
            deny_when(rules, libc::SYS_socket, c);
            // TCP Fast Open connects from sendto/sendmsg without the
            // connect() hook Landlock checks (landlock-lsm/linux#41).
            let fastopen = |arg| cond(arg, Cmp::MaskedEq(MSG_FASTOPEN), MSG_FASTOPEN);
            deny_when(rules, libc::SYS_sendto, vec![vec![fastopen(3)]]);
            deny_when(rules, libc::SYS_sendmsg, vec![vec![fastopen(2)]]);
            deny_when(rules, libc::SYS_sendmmsg, vec![vec![fastopen(3)]]);
            if !listen {
                // listen() on an unbound socket auto-binds an ephemeral
                // port, which Landlock does not check.
                deny(rules, &[libc::SYS_listen]);
            }
        }
    }
    deny_when(
        rules,
        libc::SYS_socketpair,
        vec![vec![cond(0, Cmp::Ne, unix)]],
    )
}

/// io_uring: its operations bypass this filter (a socket, a connect, a
/// send are io_uring ops, not syscalls), and it is a large attack surface.
pub fn io_uring(rules: &mut Rules) {
    deny(
        rules,
        &[
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ],
    );
}

/// Kernel surface a sandboxed command has no use for and that has a long
/// history of privilege escalations: BPF programs, perf events,
/// userfaultfd (a tool for winning kernel races).
pub fn kernel_surface(rules: &mut Rules) {
    deny(
        rules,
        &[
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
        ],
    );
}

/// Keyrings: shared with processes outside (the user and session keyrings).
pub fn keyrings(rules: &mut Rules) {
    deny(
        rules,
        &[libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key],
    );
}

/// SysV and POSIX IPC: host-wide objects that outlive the run (a refused
/// `mq_open(O_CREAT)` used to leave its queue behind) and are reachable by
/// key or name from outside.
pub fn ipc(rules: &mut Rules) {
    deny(
        rules,
        &[
            libc::SYS_msgget,
            libc::SYS_msgsnd,
            libc::SYS_msgrcv,
            libc::SYS_msgctl,
            libc::SYS_semget,
            libc::SYS_semop,
            libc::SYS_semtimedop,
            libc::SYS_semctl,
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_shmdt,
            libc::SYS_shmctl,
            libc::SYS_mq_open,
            libc::SYS_mq_unlink,
            libc::SYS_mq_timedsend,
            libc::SYS_mq_timedreceive,
            libc::SYS_mq_notify,
            libc::SYS_mq_getsetattr,
        ],
    );
}

/// New namespaces (a user namespace gives back every capability inside it)
/// and joining others. `clone3` takes its flags in memory the filter cannot
/// read, so it fails with ENOSYS (a check `Filter::sandbox` puts first)
/// and libc falls back to
/// `clone`, whose flags are checked here.
pub fn namespaces(rules: &mut Rules) {
    deny(rules, &[libc::SYS_unshare, libc::SYS_setns]);
    let flags = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ];
    let conds = flags
        .iter()
        .map(|f| {
            let f = *f as u64;
            vec![cond(0, Cmp::MaskedEq(f), f)]
        })
        .collect();
    deny_when(rules, libc::SYS_clone, conds)
}

/// Administration of the machine: mounts, modules, kexec, reboot, swap,
/// accounting, the kernel log, raw I/O ports, handles that bypass path
/// checks (the "shocker" escape). All of them need capabilities the
/// sandbox drops; refused here too, so that the promise does not rest on
/// one mechanism.
pub fn admin(rules: &mut Rules) {
    deny(
        rules,
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_mount_setattr,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_acct,
            libc::SYS_syslog,
            libc::SYS_open_by_handle_at,
            libc::SYS_quotactl,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_iopl,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_ioperm,
        ],
    );
}

/// Executable memfds: a memfd lives on an internal mount no Landlock rule
/// covers, so a binary copied into one runs (fexecve) whatever the exec
/// allowlist says. Only memfds sealed non-executable may be created
/// (`MFD_NOEXEC_SEAL`, Linux 6.3; older kernels reject the flag, so there
/// no memfd can be made at all).
pub fn memfd_exec(rules: &mut Rules) {
    deny_when(
        rules,
        libc::SYS_memfd_create,
        vec![vec![cond(1, Cmp::MaskedEq(MFD_NOEXEC_SEAL), 0)]],
    )
}

/// The signal syscalls whose first argument is the target process (or,
/// for tkill, thread: a thread id that is a process's pid is its main
/// thread).
pub const SIGNAL_SYSCALLS: [i64; 5] = [
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_tgkill,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
];

/// Below Landlock ABI 6 there is no signal scoping: signals to the
/// supervisor, the caller, process groups and -1 are refused by pid, and
/// the other ways to signal a pid are closed.
pub fn signals_fallback(rules: &mut Rules) {
    // tkill is checked by pid as kill is: musl's raise() is tkill on the
    // caller's own thread.
    for nr in SIGNAL_SYSCALLS {
        rules.entry(nr).or_default().push(Check::SignalTarget);
    }
    // A pidfd may name the supervisor or the caller, and the filter cannot
    // tell which.
    deny(rules, &[libc::SYS_pidfd_send_signal]);
    // SIGIO/SIGURG to an owner the command names.
    deny_when(
        rules,
        libc::SYS_fcntl,
        vec![
            vec![cond(1, Cmp::Eq, libc::F_SETOWN as u64)],
            vec![cond(1, Cmp::Eq, F_SETOWN_EX)],
        ],
    );
    deny_when(
        rules,
        libc::SYS_ioctl,
        vec![
            vec![cond(1, Cmp::Eq, FIOSETOWN)],
            vec![cond(1, Cmp::Eq, SIOCSPGRP)],
        ],
    )
}

/// Syscalls numbered after the unified table (same number on every
/// architecture), not in every libc crate target yet.
const SYS_FCHMODAT2: i64 = 452;
const SYS_SETXATTRAT: i64 = 463;
const SYS_REMOVEXATTRAT: i64 = 466;

/// Inode metadata. Landlock has no right for it (mode, owner, times,
/// extended attributes change without opening the file), so only the
/// owner's DAC check stands between a command and any file it can name.
/// - Everyone: no set-user-ID or set-group-ID bit (a setuid root binary
///   left on the host is a privilege escalation for every local user).
/// - `root`: owns almost every host file, so every metadata change is
///   refused (a root command cannot chmod or touch even inside its write
///   paths; run it as another user to keep that).
pub fn metadata(rules: &mut Rules, root: bool) {
    // (syscall, index of the mode argument)
    let mut chmods = vec![
        (libc::SYS_fchmod, 1u8),
        (libc::SYS_fchmodat, 2),
        (SYS_FCHMODAT2, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    chmods.push((libc::SYS_chmod, 1));
    if root {
        let mut all: Vec<i64> = chmods.iter().map(|(nr, _)| *nr).collect();
        all.extend([
            libc::SYS_fchown,
            libc::SYS_fchownat,
            libc::SYS_utimensat,
            libc::SYS_setxattr,
            libc::SYS_lsetxattr,
            libc::SYS_fsetxattr,
            libc::SYS_removexattr,
            libc::SYS_lremovexattr,
            libc::SYS_fremovexattr,
            SYS_SETXATTRAT,
            SYS_REMOVEXATTRAT,
        ]);
        #[cfg(target_arch = "x86_64")]
        all.extend([
            libc::SYS_chown,
            libc::SYS_lchown,
            libc::SYS_utime,
            libc::SYS_utimes,
            libc::SYS_futimesat,
        ]);
        deny(rules, &all);
        return;
    }
    for (nr, arg) in chmods {
        let bit = |b: u64| vec![cond(arg, Cmp::MaskedEq(b), b)];
        deny_when(
            rules,
            nr,
            vec![bit(libc::S_ISUID as u64), bit(libc::S_ISGID as u64)],
        );
    }
}

/// As root with rlimits: root may raise a hard limit back.
pub fn lock_rlimits(rules: &mut Rules) {
    deny(rules, &[libc::SYS_setrlimit]);
    // prlimit64(pid, resource, new_limit, old_limit): reading is fine.
    let write = Cond {
        arg: 2,
        wide: true,
        cmp: Cmp::Ne,
        value: 0,
    };
    deny_when(rules, libc::SYS_prlimit64, vec![vec![write]])
}
