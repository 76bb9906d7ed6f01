//! Seccomp filters: what Landlock cannot express (or cannot on this ABI).
//!
//! Built in the parent with `seccompiler` into a BPF program; installed in
//! the child with one raw `seccomp(2)` call (no allocation after fork).
//!
//! What the sandbox filter denies (with EPERM):
//! - with the network restricted:
//!   - `io_uring_setup/enter/register`: io_uring can create and connect
//!     sockets without the `socket()` call the filter watches (its file
//!     opens go through Landlock like any other, so with the network
//!     allowed there is nothing to deny);
//!   - `socket(AF_INET|AF_INET6, …)` of any type
//!     Landlock does not control on this kernel (UDP below ABI 10, raw, SCTP,
//!     DCCP…, and even TCP below ABI 4 where Landlock has no TCP rules), and
//!     `socket(AF_PACKET, …)`.
//! - as root with resource limits: `setrlimit` and `prlimit64` with a new
//!   limit, since root may raise a hard limit.
//!
//! With none of these to deny (network allowed, no rlimits for root to
//! lock) no filter is loaded at all: an allow-all filter would enforce
//! nothing and still cost the spawn (~50 µs measured here).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SetupError;
use crate::policy::SetupErrorKind;

/// A compiled filter, ready to install after fork.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: BpfProgram,
}

/// What the socket rules must leave to Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRules {
    /// Landlock controls TCP connect/bind (ABI ≥ 4), so TCP sockets may be created.
    pub landlock_tcp: bool,
    /// Landlock controls UDP bind/send (ABI ≥ 10), so UDP sockets may be created.
    pub landlock_udp: bool,
}

const IPPROTO_IP: u64 = 0;
const IPPROTO_TCP: u64 = 6;
const IPPROTO_UDP: u64 = 17;
const SOCK_TYPE_MASK: u64 = 0xf;

fn arch() -> Result<TargetArch, SetupError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SetupError {
        kind: SetupErrorKind::RestrictFailed,
        message: format!(
            "failed to build the seccomp filter: unsupported architecture {}: {e}",
            std::env::consts::ARCH
        ),
    })
}

fn err(what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError {
        kind: SetupErrorKind::RestrictFailed,
        message: format!("failed to build the seccomp filter ({what}): {e}"),
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SetupError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| err("condition", e))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SetupError> {
    SeccompRule::new(conds).map_err(|e| err("rule", e))
}

/// Rules matching the `socket()` calls to deny for an inet `domain`.
fn inet_socket_rules(domain: i32, s: SocketRules) -> Result<Vec<SeccompRule>, SetupError> {
    let d = domain as u64;
    let mut rules = Vec::new();
    // Socket types 1..=10 (SOCK_STREAM=1, DGRAM=2, RAW=3, RDM=4,
    // SEQPACKET=5, DCCP=6, PACKET=10); deny every type Landlock does not
    // control, matched on the low bits (flags like SOCK_CLOEXEC are above).
    for ty in 1..=10u64 {
        let (allowed, proto_ok): (bool, &[u64]) = match ty {
            1 => (s.landlock_tcp, &[IPPROTO_IP, IPPROTO_TCP]),
            2 => (s.landlock_udp, &[IPPROTO_IP, IPPROTO_UDP]),
            _ => (false, &[]),
        };
        let base = || -> Result<Vec<SeccompCondition>, SetupError> {
            Ok(vec![
                cond(0, SeccompCmpOp::Eq, d)?,
                cond(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), ty)?,
            ])
        };
        if !allowed {
            rules.push(rule(base()?)?);
        } else {
            // Allowed type, but only with the protocol Landlock controls
            // (SOCK_STREAM with IPPROTO_SCTP would bypass the TCP rules).
            let mut c = base()?;
            for p in proto_ok {
                c.push(cond(2, SeccompCmpOp::Ne, *p)?);
            }
            rules.push(rule(c)?);
        }
    }
    Ok(rules)
}

impl Filter {
    /// The sandbox's filter for a policy, or `None` when it has nothing to
    /// deny (network allowed, no rlimits to lock): an allow-all filter
    /// enforces nothing and still costs each spawn to load.
    pub fn sandbox(
        network_restricted: bool,
        sockets: SocketRules,
        lock_rlimits: bool,
    ) -> Result<Option<Filter>, SetupError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        if network_restricted {
            for nr in [
                libc::SYS_io_uring_setup,
                libc::SYS_io_uring_enter,
                libc::SYS_io_uring_register,
            ] {
                rules.insert(nr, vec![]);
            }
            let mut sock = inet_socket_rules(libc::AF_INET, sockets)?;
            sock.extend(inet_socket_rules(libc::AF_INET6, sockets)?);
            sock.push(rule(vec![cond(
                0,
                SeccompCmpOp::Eq,
                libc::AF_PACKET as u64,
            )?])?);
            rules.insert(libc::SYS_socket, sock);
        }
        if lock_rlimits {
            rules.insert(libc::SYS_setrlimit, vec![]);
            // prlimit64(pid, resource, new_limit, old_limit): reading is fine.
            rules.insert(
                libc::SYS_prlimit64,
                vec![rule(vec![SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::Ne,
                    0,
                )
                .map_err(|e| err("condition", e))?])?],
            );
        }
        if rules.is_empty() {
            return Ok(None);
        }
        Self::compile(rules, libc::EPERM).map(Some)
    }

    /// A filter making the landlock syscalls (444–446) fail with `errno`:
    /// a kernel without Landlock (ENOSYS) or with it disabled (EOPNOTSUPP).
    pub fn no_landlock(errno: i32) -> Result<Filter, SetupError> {
        Self::failing(
            &[
                libc::SYS_landlock_create_ruleset,
                libc::SYS_landlock_add_rule,
                libc::SYS_landlock_restrict_self,
            ],
            errno,
        )
    }

    /// A filter making exactly `syscalls` fail with `errno`; everything
    /// else is allowed. For fault injection (tests, platform simulation).
    pub fn failing(syscalls: &[i64], errno: i32) -> Result<Filter, SetupError> {
        let rules = syscalls.iter().map(|nr| (*nr, vec![])).collect();
        Self::compile(rules, errno)
    }

    fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<Filter, SetupError> {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch()?,
        )
        .map_err(|e| err("filter", e))?;
        let prog: BpfProgram = filter.try_into().map_err(|e| err("compile", e))?;
        Ok(Filter { prog })
    }

    /// The program as `seccomp(SECCOMP_SET_MODE_FILTER)` takes it, for the
    /// spawn path, which makes that call as a raw syscall (it may not touch
    /// errno). Points into `self`: valid while `self` is.
    pub fn sock_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        }
    }

    /// Installs the filter on the calling thread. Sets `no_new_privs` first
    /// (required for unprivileged filters).
    ///
    /// # Safety
    /// Async-signal-safe: no allocation, two syscalls; may be called between
    /// fork and exec. The filter is irreversible for the caller.
    pub unsafe fn install(&self) -> std::io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fprog = libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program from `fprog`, which points to
        // `self.prog`, alive for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
