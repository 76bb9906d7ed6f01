//! Seccomp filters: what Landlock cannot express (or cannot on this ABI),
//! and the kernel surface a sandboxed command is refused by default.
//!
//! Built in the parent into a BPF program ([`compile`]: a binary search on
//! the syscall number, then each syscall's argument checks, assembled by
//! [`asm`]); installed in the child with one raw `seccomp(2)` call (no
//! allocation after fork).
//!
//! What the sandbox filter refuses, by rule group ([`rules`]; each group is
//! a line of docs/threat-model.md):
//! - always: io_uring; BPF, perf events, userfaultfd; keyrings; SysV and
//!   POSIX IPC; new namespaces and `setns`; mounts, modules, kexec and the
//!   rest of machine administration; executable memfds; any x32 syscall;
//!   set-id mode bits, and for root every inode metadata change (Landlock
//!   has no right for metadata); `clone3` fails with ENOSYS (its flags are
//!   in memory the filter cannot read; libc falls back to `clone`, whose
//!   namespace flags are refused);
//! - with the network restricted: every socket family but unix (and unix
//!   too below Landlock ABI 9, which cannot check a socket's path); under
//!   `deny` every inet socket, under port rules the inet sockets Landlock
//!   does not control, `sendto`/`sendmsg` with `MSG_FASTOPEN`, and
//!   `listen()` unless port 0 (ephemeral ports) is in the bind list;
//! - below Landlock ABI 6 (no signal scoping): signals to process groups,
//!   to every process (-1), to the supervisor and to the caller (by kill,
//!   tkill, tgkill and the sigqueue calls); `pidfd_send_signal`, and
//!   naming a signal owner (`F_SETOWN`…);
//! - as root with resource limits: `setrlimit` and `prlimit64` writes.
//!
//! A syscall made through another ABI (i386 `int 0x80` from a 64-bit
//! process) kills the process.

mod asm;
mod compile;
mod rules;

pub use asm::{Slot, SlotKind};

use super::SetupError;
use crate::policy::SetupErrorKind;

/// The network part of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetRules {
    /// Nothing refused.
    Allow,
    /// No inet socket; unix only where Landlock checks its path.
    Deny,
    /// TCP port rules: inet sockets Landlock controls; `listen` only when
    /// ephemeral ports (bind port 0) are granted.
    Ports {
        /// `listen()` is allowed (port 0 is in the bind list).
        listen: bool,
    },
}

/// Rule groups that can be switched off one at a time (mutants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    /// Socket families, types, Fast Open, listen.
    pub sockets: bool,
    /// io_uring.
    pub io_uring: bool,
    /// bpf, perf_event_open, userfaultfd.
    pub kernel_surface: bool,
    /// keyctl, add_key, request_key.
    pub keyrings: bool,
    /// SysV and POSIX IPC.
    pub ipc: bool,
    /// unshare, setns, clone with namespace flags, clone3.
    pub namespaces: bool,
    /// Mounts, modules, kexec, reboot, swap…
    pub admin: bool,
    /// Executable memfds.
    pub memfd_exec: bool,
    /// Inode metadata: set-id bits, and everything for root.
    pub metadata: bool,
    /// Signals outside, below Landlock ABI 6.
    pub signals: bool,
    /// setrlimit/prlimit64 writes (root with rlimits).
    pub rlimits: bool,
}

impl Groups {
    /// Every group on.
    pub const ALL: Groups = Groups {
        sockets: true,
        io_uring: true,
        kernel_surface: true,
        keyrings: true,
        ipc: true,
        namespaces: true,
        admin: true,
        memfd_exec: true,
        metadata: true,
        signals: true,
        rlimits: true,
    };
}

/// What the filter must enforce for one policy on one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The network rules.
    pub network: NetRules,
    /// Landlock controls TCP connect/bind (ABI ≥ 4).
    pub landlock_tcp: bool,
    /// Landlock controls UDP bind/send (ABI ≥ 10).
    pub landlock_udp: bool,
    /// Landlock checks the path of a unix socket (ABI ≥ 9).
    pub landlock_unix: bool,
    /// Landlock scopes signals (ABI ≥ 6); below, the filter's fallback.
    pub landlock_signal_scope: bool,
    /// Root with rlimits: refuse raising them.
    pub lock_rlimits: bool,
    /// The command runs as root (owner of most host files).
    pub root: bool,
    /// The groups in force.
    pub groups: Groups,
}

/// A compiled filter, ready to install after fork.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    slots: Vec<Slot>,
}

/// Longest program that can be patched per run: G copies it onto its own
/// stack (8 bytes an instruction).
pub const MAX_PATCHED_LEN: usize = 1024;

fn arch() -> Result<u32, SetupError> {
    compile::AUDIT_ARCH.ok_or_else(|| SetupError {
        kind: SetupErrorKind::RestrictFailed,
        message: format!(
            "failed to build the seccomp filter: unsupported architecture {}",
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

impl Filter {
    /// The sandbox's filter for `spec`.
    pub fn sandbox(spec: &Spec) -> Result<Filter, SetupError> {
        let f = Self::compile(&Self::rules(spec), true)?;
        if !f.slots.is_empty() && f.prog.len() > MAX_PATCHED_LEN {
            return Err(err(
                "layout",
                format!(
                    "{} instructions, more than {MAX_PATCHED_LEN} can be patched per run",
                    f.prog.len()
                ),
            ));
        }
        Ok(f)
    }

    /// The rules of the sandbox's filter for `spec`.
    fn rules(spec: &Spec) -> rules::Rules {
        let g = spec.groups;
        let mut rules = rules::Rules::new();
        if g.namespaces {
            // First: whatever else clone3 is checked for, it fails as on a
            // kernel without it.
            rules
                .entry(libc::SYS_clone3)
                .or_default()
                .push(rules::Check::Always(libc::ENOSYS));
        }
        if g.sockets {
            rules::sockets(&mut rules, spec);
        }
        if g.io_uring {
            rules::io_uring(&mut rules);
        }
        if g.kernel_surface {
            rules::kernel_surface(&mut rules);
        }
        if g.keyrings {
            rules::keyrings(&mut rules);
        }
        if g.ipc {
            rules::ipc(&mut rules);
        }
        if g.namespaces {
            rules::namespaces(&mut rules);
        }
        if g.admin {
            rules::admin(&mut rules);
        }
        if g.memfd_exec {
            rules::memfd_exec(&mut rules);
        }
        if g.metadata {
            rules::metadata(&mut rules, spec.root);
        }
        if g.signals && !spec.landlock_signal_scope {
            rules::signals_fallback(&mut rules);
        }
        if spec.lock_rlimits && g.rlimits {
            rules::lock_rlimits(&mut rules);
        }
        rules
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
        let rules = syscalls
            .iter()
            .map(|nr| (*nr, vec![rules::Check::Always(errno)]))
            .collect();
        Self::compile(&rules, false)
    }

    fn compile(rules: &rules::Rules, deny_x32: bool) -> Result<Filter, SetupError> {
        let head = compile::Head {
            arch: arch()?,
            deny_x32,
        };
        let (prog, slots) = compile::program(rules, head).map_err(|e| err("layout", e))?;
        Ok(Filter { prog, slots })
    }

    /// The program as `seccomp(SECCOMP_SET_MODE_FILTER)` takes it, for the
    /// spawn path, which makes that call as a raw syscall (it may not touch
    /// errno). Points into `self`: valid while `self` is. When
    /// [`Filter::slots`] is not empty the program must be copied and
    /// patched per run first.
    pub fn sock_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        }
    }

    /// Instructions whose constant is a pid known only per run.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The instructions (for tests and `sandspec probe`-like inspection).
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    /// Never true: a filter has at least its architecture check.
    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }

    /// Installs the filter on the calling thread. Sets `no_new_privs` first
    /// (required for unprivileged filters). Only for filters without
    /// slots.
    ///
    /// # Safety
    /// Async-signal-safe: no allocation, two syscalls; may be called between
    /// fork and exec. The filter is irreversible for the caller.
    pub unsafe fn install(&self) -> std::io::Result<()> {
        if !self.slots.is_empty() {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fprog = self.sock_fprog();
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

#[cfg(test)]
mod tests;
