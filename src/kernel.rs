//! Kernel facts the sandbox and the harness depend on, probed with the
//! syscalls themselves (never inferred from the kernel version).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the running kernel offers of Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockSupport {
    /// Landlock works, at this ABI version.
    Abi(u32),
    /// `landlock_create_ruleset` returned ENOSYS: not built into the kernel.
    NotBuilt,
    /// EOPNOTSUPP: built in but disabled at boot (`lsm=` without landlock).
    Disabled,
    /// Any other errno (e.g. EPERM from a seccomp filter); the number.
    Error(i32),
}

impl LandlockSupport {
    /// The ABI version, if Landlock works.
    pub fn abi(self) -> Option<u32> {
        match self {
            LandlockSupport::Abi(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LandlockSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LandlockSupport::Abi(v) => write!(f, "ABI {v}"),
            LandlockSupport::NotBuilt => {
                f.write_str("unavailable (ENOSYS: not built into this kernel)")
            }
            LandlockSupport::Disabled => {
                f.write_str("disabled (EOPNOTSUPP: built in but not enabled at boot, see lsm=)")
            }
            LandlockSupport::Error(e) => write!(
                f,
                "unusable (landlock_create_ruleset failed: {})",
                std::io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

/// Probes Landlock: `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub fn landlock() -> LandlockSupport {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attr, size 0 and the VERSION flag the syscall reads
    // and writes no memory; it only returns the ABI version or an errno.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret >= 0 {
        return LandlockSupport::Abi(ret as u32);
    }
    match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::ENOSYS => LandlockSupport::NotBuilt,
        libc::EOPNOTSUPP => LandlockSupport::Disabled,
        e => LandlockSupport::Error(e),
    }
}

/// Everything `sandspec probe` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    /// `uname -m`.
    pub machine: String,
    /// Landlock support.
    pub landlock: LandlockSupport,
    /// Seccomp filter mode is available (`PR_GET_SECCOMP` works).
    pub seccomp: bool,
    /// Seccomp user notification is available.
    pub seccomp_user_notif: bool,
    /// Unprivileged user namespaces can be created (tested in a child).
    pub user_namespaces: bool,
    /// The effective uid of the prober.
    pub euid: u32,
}

/// Probes the running kernel.
pub fn probe() -> KernelFacts {
    let uts = nix::sys::utsname::uname().ok();
    let (release, machine) = uts
        .map(|u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.machine().to_string_lossy().into_owned(),
            )
        })
        .unwrap_or_default();
    KernelFacts {
        release,
        machine,
        landlock: landlock(),
        seccomp: seccomp_available(),
        seccomp_user_notif: seccomp_action_available(SECCOMP_RET_USER_NOTIF),
        user_namespaces: user_namespaces_available(),
        euid: nix::unistd::geteuid().as_raw(),
    }
}

const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

fn seccomp_available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointers; it returns the mode or -1.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    mode >= 0 && seccomp_action_available(SECCOMP_RET_ERRNO)
}

fn seccomp_action_available(action: u32) -> bool {
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which
    // points at a live local.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    ret == 0
}

fn user_namespaces_available() -> bool {
    // unshare(CLONE_NEWUSER) changes the caller, so try it in a throwaway
    // child: `unshare -U true` would need util-linux; a fork does not.
    // SAFETY: the child only calls async-signal-safe functions (unshare,
    // _exit) before exiting; the parent waits for it.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: unshare and _exit are async-signal-safe syscalls.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_a_release_and_a_landlock_state() {
        let f = probe();
        assert!(!f.release.is_empty());
        // Whatever the kernel, the state must be one of the classified ones
        // and agree with a second probe.
        assert_eq!(f.landlock, landlock());
    }
}
