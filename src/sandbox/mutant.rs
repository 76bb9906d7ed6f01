//! Mutants: the reference sandbox with exactly one enforcement mechanism
//! switched off, to measure the corpus rather than the code. A corpus that
//! still passes everything against a mutant has no case that depends on
//! that mechanism: the mechanism is untested.
//!
//! Only reachable through [`super::Sandbox::new_mutant`] (and the reference
//! driver's `with_mutant`): no flag, file or environment variable turns a
//! mutant on.
//!
//! Mechanisms are cut where a case can observe them. Two layers that guard
//! the same promise with the same observable result are one mechanism
//! here (capabilities and the seccomp group for machine administration:
//! both make `mount` fail with EPERM for root), so that every mutant can be
//! caught; each layer is still described on its own in
//! docs/threat-model.md.

use std::fmt;
use std::str::FromStr;

/// One enforcement mechanism of the reference sandbox, switched off.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// Landlock handles no filesystem right.
    LandlockFs,
    /// Landlock handles no network right.
    LandlockNet,
    /// No Landlock scoping (signals, abstract unix sockets).
    LandlockScope,
    /// seccomp: no socket family, type, Fast Open or listen rule.
    SeccompSockets,
    /// seccomp: io_uring allowed.
    SeccompIoUring,
    /// seccomp: bpf, perf_event_open, userfaultfd allowed.
    SeccompKernelSurface,
    /// seccomp: keyrings allowed.
    SeccompKeyrings,
    /// seccomp: SysV and POSIX IPC allowed.
    SeccompIpc,
    /// seccomp: namespaces (unshare, setns, clone flags, clone3) allowed.
    SeccompNamespaces,
    /// seccomp: executable memfds allowed.
    SeccompMemfdExec,
    /// seccomp: set-id bits, and root's metadata changes, allowed.
    SeccompMetadata,
    /// seccomp: the signal fallback below Landlock ABI 6 off.
    SeccompSignals,
    /// Capabilities kept, and the seccomp rules that guard the same
    /// promises allowed (machine administration; root raising rlimits).
    Privileges,
    /// No rlimits (memory, open files, CPU).
    Rlimits,
    /// No process limit (pids cgroup or RLIMIT_NPROC).
    ProcessLimit,
    /// The tree is not killed after the command.
    TreeKill,
    /// No deadline.
    Timeout,
    /// The caller's environment is passed on.
    EnvClear,
    /// Output is not capped.
    OutputCap,
    /// No new session: the command keeps the caller's terminal.
    NewSession,
    /// The supervisor does not close the fds the command was not given.
    CloseFds,
}

impl Mutant {
    /// Every mutant, in a stable order.
    pub fn all() -> &'static [Mutant] {
        use Mutant::*;
        &[
            LandlockFs,
            LandlockNet,
            LandlockScope,
            SeccompSockets,
            SeccompIoUring,
            SeccompKernelSurface,
            SeccompKeyrings,
            SeccompIpc,
            SeccompNamespaces,
            SeccompMemfdExec,
            SeccompMetadata,
            SeccompSignals,
            Privileges,
            Rlimits,
            ProcessLimit,
            TreeKill,
            Timeout,
            EnvClear,
            OutputCap,
            NewSession,
            CloseFds,
        ]
    }

    /// Its name (kebab case), as `FromStr` reads it.
    pub fn name(self) -> &'static str {
        use Mutant::*;
        match self {
            LandlockFs => "landlock-fs",
            LandlockNet => "landlock-net",
            LandlockScope => "landlock-scope",
            SeccompSockets => "seccomp-sockets",
            SeccompIoUring => "seccomp-io-uring",
            SeccompKernelSurface => "seccomp-kernel-surface",
            SeccompKeyrings => "seccomp-keyrings",
            SeccompIpc => "seccomp-ipc",
            SeccompNamespaces => "seccomp-namespaces",
            SeccompMemfdExec => "seccomp-memfd-exec",
            SeccompMetadata => "seccomp-metadata",
            SeccompSignals => "seccomp-signals",
            Privileges => "privileges",
            Rlimits => "rlimits",
            ProcessLimit => "process-limit",
            TreeKill => "tree-kill",
            Timeout => "timeout",
            EnvClear => "env-clear",
            OutputCap => "output-cap",
            NewSession => "new-session",
            CloseFds => "close-fds",
        }
    }

    /// Why this mutant changes nothing here, if it does not: the mechanism
    /// is not used on this kernel (Landlock `abi`) or for this user
    /// (`euid`). Such a mutant cannot be caught and is reported as not
    /// applicable, never as survived.
    pub fn not_applicable(self, abi: u32, euid: u32) -> Option<String> {
        match self {
            Mutant::SeccompSignals if abi >= super::landlock::ABI_SCOPE => Some(format!(
                "the seccomp signal fallback is only used below Landlock ABI {}; this kernel has ABI {abi}, where Landlock scopes signals",
                super::landlock::ABI_SCOPE
            )),
            Mutant::LandlockNet if abi < super::landlock::ABI_TCP => Some(format!(
                "Landlock has no network rights below ABI {}; this kernel has ABI {abi}",
                super::landlock::ABI_TCP
            )),
            Mutant::LandlockScope if abi < super::landlock::ABI_SCOPE => Some(format!(
                "Landlock has no scopes below ABI {}; this kernel has ABI {abi}",
                super::landlock::ABI_SCOPE
            )),
            Mutant::Privileges if euid != 0 => Some(
                "only root holds capabilities and can raise a hard rlimit; this run is not root"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Mutant, String> {
        Mutant::all()
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutant::all().iter().map(|m| m.name()).collect();
                format!("unknown mutant {s:?}: expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in Mutant::all() {
            assert!(seen.insert(m.name()), "duplicate {}", m.name());
            assert_eq!(m.name().parse::<Mutant>().unwrap(), *m);
        }
        assert!("landlock"
            .parse::<Mutant>()
            .unwrap_err()
            .contains("landlock-fs"));
    }
}
