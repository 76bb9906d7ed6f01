//! Policy → Landlock ruleset, built once in the parent.
//!
//! Compatibility is stated once, at the hard end of rust-landlock's scale:
//! the ruleset handles every access right the running kernel knows (so
//! nothing unlisted is allowed), every rule the policy needs must be
//! enforceable, and an ABI too old for the policy is an error, never a
//! quietly weaker sandbox.
//!
//! Access granted per list:
//! - `read`: read files, list directories.
//! - `write`: everything but execute and making device nodes (write implies
//!   read: see [`Policy::write`]; a device node would reach hardware or
//!   kernel memory whatever the directory it is made in).
//! - `exec`: execute, read files, list directories (the kernel opens an
//!   executable for reading, and a dynamic loader must be executable too).
//!
//! Beyond the lists, by default:
//! - signal scoping from ABI 6, whatever the policy says: the command can
//!   neither signal its supervisor nor the caller (nor anything outside);
//! - with the network restricted, pathname unix sockets are resolved only
//!   beneath `write` paths (ABI 9, `LANDLOCK_ACCESS_FS_RESOLVE_UNIX`) and
//!   abstract unix sockets made outside are out of reach (ABI 6). With the
//!   network allowed neither is restricted: `allow` means every peer, on
//!   every ABI (below 9 a path could not be checked anyway).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};

use super::SetupError;
use crate::kernel::LandlockSupport;
use crate::policy::{Network, Policy, ScopeKind, SetupErrorKind};

/// The first ABI with TCP rules.
pub const ABI_TCP: u32 = 4;
/// The first ABI with IPC scoping.
pub const ABI_SCOPE: u32 = 6;
/// The first ABI that checks the path of a unix socket.
pub const ABI_RESOLVE_UNIX: u32 = 9;
/// The first ABI with UDP rules.
pub const ABI_UDP: u32 = 10;

/// Which Landlock mechanisms are in force (all of them, except in a
/// mutant: see `sandbox::Mutant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mechanisms {
    /// Filesystem rights.
    pub fs: bool,
    /// Network rights.
    pub net: bool,
    /// IPC scopes.
    pub scope: bool,
}

impl Mechanisms {
    /// Every mechanism.
    pub const ALL: Mechanisms = Mechanisms {
        fs: true,
        net: true,
        scope: true,
    };
}

/// A ruleset ready for `landlock_restrict_self`, and what it implies.
#[derive(Debug)]
pub struct Compiled {
    /// The ruleset file descriptor.
    pub fd: OwnedFd,
    /// Allowlisted paths that do not exist, left out.
    pub filtered: Vec<PathBuf>,
    /// The kernel's ABI.
    pub abi: u32,
    /// Landlock scopes signals (the seccomp fallback is not needed).
    pub signal_scope: bool,
}

fn setup_err(kind: SetupErrorKind, message: String) -> SetupError {
    SetupError { kind, message }
}

fn ruleset_err(e: impl std::fmt::Display) -> SetupError {
    setup_err(
        SetupErrorKind::RestrictFailed,
        format!("failed to build the Landlock ruleset: {e}"),
    )
}

/// The kernel's ABI, or the setup error that a missing Landlock is.
pub fn require_landlock(support: LandlockSupport) -> Result<u32, SetupError> {
    match support {
        LandlockSupport::Abi(v) if v >= 1 => Ok(v),
        LandlockSupport::Abi(v) => Err(setup_err(
            SetupErrorKind::LandlockUnavailable,
            format!("Landlock reports ABI {v}, which is not a usable version; refusing to run unsandboxed"),
        )),
        LandlockSupport::NotBuilt => Err(setup_err(
            SetupErrorKind::LandlockUnavailable,
            "Landlock is unavailable: this kernel is built without it (ENOSYS); refusing to run unsandboxed".into(),
        )),
        LandlockSupport::Disabled => Err(setup_err(
            SetupErrorKind::LandlockDisabled,
            "Landlock is disabled: built into this kernel but not enabled at boot (EOPNOTSUPP; add landlock to lsm=); refusing to run unsandboxed".into(),
        )),
        LandlockSupport::Error(e) => Err(setup_err(
            SetupErrorKind::LandlockUnavailable,
            format!(
                "Landlock is unusable: landlock_create_ruleset failed: {}; refusing to run unsandboxed",
                std::io::Error::from_raw_os_error(e)
            ),
        )),
    }
}

/// Checks that every path is absolute, and that the kernel's ABI covers
/// what the policy asks; names the feature and the ABI it needs.
fn check_policy(policy: &Policy, abi: u32) -> Result<(), SetupError> {
    for p in policy.read.iter().chain(&policy.write).chain(&policy.exec) {
        if !p.is_absolute() {
            return Err(setup_err(
                SetupErrorKind::InvalidPolicy,
                format!(
                    "invalid policy: allowlisted path {} is not absolute",
                    p.display()
                ),
            ));
        }
    }
    let too_low = |what: &str, need: u32| {
        setup_err(
            SetupErrorKind::AbiTooLow,
            format!("{what} needs Landlock ABI {need}, but this kernel has ABI {abi}"),
        )
    };
    if matches!(policy.network, Network::Ports(_)) && abi < ABI_TCP {
        return Err(too_low("a TCP port allowlist", ABI_TCP));
    }
    if !policy.scope.is_empty() && abi < ABI_SCOPE {
        return Err(too_low("IPC scoping (scope:)", ABI_SCOPE));
    }
    Ok(())
}

/// Opens an allowlisted path. `Ok(None)` when it does not exist (filtered);
/// any other failure is an error naming the path.
fn open_rule_path(path: &Path) -> Result<Option<(PathFd, bool)>, SetupError> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let fd = PathFd::new(path).map_err(|e| {
                setup_err(
                    SetupErrorKind::PathError,
                    format!("failed to open allowlisted path {}: {e}", path.display()),
                )
            })?;
            Ok(Some((fd, m.is_dir())))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(setup_err(
            SetupErrorKind::PathError,
            format!("failed to open allowlisted path {}: {e}", path.display()),
        )),
    }
}

/// Compiles the policy into a Landlock ruleset for a kernel with `abi`.
pub fn compile(policy: &Policy, abi: u32, on: Mechanisms) -> Result<Compiled, SetupError> {
    check_policy(policy, abi)?;
    let kabi = ABI::from(abi as i32);
    let restrict_net = !matches!(policy.network, Network::Allow);
    let mut all = AccessFs::from_all(kabi);
    if !restrict_net {
        all &= !AccessFs::ResolveUnix;
    }
    let file_rights = AccessFs::from_file(kabi);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let exec: BitFlags<AccessFs> = read | AccessFs::Execute;
    let write: BitFlags<AccessFs> =
        all & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock);

    let landlock_tcp = abi >= ABI_TCP;
    let landlock_udp = abi >= ABI_UDP;

    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if on.fs {
        ruleset = ruleset.handle_access(all).map_err(ruleset_err)?;
    } else {
        // A ruleset must handle something: execute alone, granted on `/`
        // below, restricts nothing.
        ruleset = ruleset
            .handle_access(AccessFs::Execute)
            .map_err(ruleset_err)?;
    }
    if restrict_net && landlock_tcp && on.net {
        let mut net = AccessNet::BindTcp | AccessNet::ConnectTcp;
        if landlock_udp {
            net |= AccessNet::from_all(kabi) & !(AccessNet::BindTcp | AccessNet::ConnectTcp);
        }
        ruleset = ruleset.handle_access(net).map_err(ruleset_err)?;
    }
    let mut scopes = BitFlags::<Scope>::empty();
    for s in &policy.scope {
        scopes |= match s {
            ScopeKind::Signal => Scope::Signal,
            ScopeKind::AbstractUnixSocket => Scope::AbstractUnixSocket,
        };
    }
    if abi >= ABI_SCOPE {
        scopes |= Scope::Signal;
        if restrict_net {
            scopes |= Scope::AbstractUnixSocket;
        }
    }
    if !on.scope {
        scopes = BitFlags::empty();
    }
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes).map_err(ruleset_err)?;
    }
    let signal_scope = scopes.contains(Scope::Signal);
    let mut created = ruleset.create().map_err(ruleset_err)?;

    let mut filtered = Vec::new();
    if !on.fs {
        let root = PathFd::new("/").map_err(ruleset_err)?;
        created = created
            .add_rule(PathBeneath::new(root, AccessFs::Execute))
            .map_err(ruleset_err)?;
    }
    let lists: [(&[PathBuf], BitFlags<AccessFs>); 3] = [
        (&policy.read, read),
        (&policy.write, write),
        (&policy.exec, exec),
    ];
    for (paths, access) in lists {
        for path in paths {
            match open_rule_path(path)? {
                None => {
                    if !filtered.contains(path) {
                        filtered.push(path.clone());
                    }
                }
                Some(_) if !on.fs => {}
                Some((fd, is_dir)) => {
                    let rights = if is_dir { access } else { access & file_rights };
                    created = created
                        .add_rule(PathBeneath::new(fd, rights))
                        .map_err(|e| {
                            setup_err(
                                SetupErrorKind::RestrictFailed,
                                format!(
                                    "failed to add a Landlock rule for {}: {e}",
                                    path.display()
                                ),
                            )
                        })?;
                }
            }
        }
    }
    if let (Network::Ports(ports), true) = (&policy.network, on.net) {
        let rules = ports
            .tcp_connect
            .iter()
            .map(|p| (*p, AccessNet::ConnectTcp))
            .chain(ports.tcp_bind.iter().map(|p| (*p, AccessNet::BindTcp)));
        for (port, access) in rules {
            created = created.add_rule(NetPort::new(port, access)).map_err(|e| {
                setup_err(
                    SetupErrorKind::RestrictFailed,
                    format!("failed to add a Landlock rule for TCP port {port}: {e}"),
                )
            })?;
        }
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| {
        setup_err(
            SetupErrorKind::LandlockUnavailable,
            "failed to create the Landlock ruleset: the kernel returned no ruleset".into(),
        )
    })?;
    Ok(Compiled {
        fd,
        filtered,
        abi,
        signal_scope,
    })
}
