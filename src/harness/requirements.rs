//! Requirements: what a case needs from the driver and the host. An unmet
//! requirement makes the case a skip whose reason says exactly what is
//! missing; it is never run and never counted as a pass.

use std::collections::BTreeSet;
use std::path::Path;

use crate::corpus::case::{Capability, Requires};
use crate::corpus::matcher::AbiRequirement;
use crate::corpus::vocab::capability_name;
use crate::kernel::LandlockSupport;

/// Host facts, probed once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Landlock as the harness's own process sees it.
    pub landlock: LandlockSupport,
    /// The harness's effective uid.
    pub euid: u32,
}

impl HostFacts {
    /// Probes the running kernel and user.
    pub fn probe() -> HostFacts {
        HostFacts {
            landlock: crate::kernel::landlock(),
            euid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// Checks `req`; `Err` carries the skip reason (every unmet requirement,
/// joined by "; ").
pub fn check(
    req: &Requires,
    capabilities: &BTreeSet<Capability>,
    host: &HostFacts,
) -> Result<(), String> {
    let mut unmet = Vec::new();
    let missing: Vec<String> = req
        .capabilities
        .iter()
        .filter(|c| !capabilities.contains(c))
        .map(|c| capability_name(*c))
        .collect();
    if !missing.is_empty() {
        unmet.push(format!("the driver does not claim {}", missing.join(", ")));
    }
    if let Some(spec) = &req.landlock_abi {
        match abi_matches(spec, host.landlock) {
            Ok(true) => {}
            Ok(false) => unmet.push(format!(
                "needs Landlock ABI {spec}; this kernel's Landlock is {}",
                host.landlock
            )),
            Err(e) => unmet.push(e),
        }
    }
    for p in &req.programs {
        if !on_path(p) {
            unmet.push(format!("needs {p} on PATH"));
        }
    }
    match req.root {
        Some(true) if host.euid != 0 => unmet.push("needs root".into()),
        Some(false) if host.euid == 0 => {
            unmet.push("needs a non-root user (running as root)".into())
        }
        _ => {}
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(unmet.join("; "))
    }
}

/// Does `landlock` satisfy `spec` (`"any"`, `"none"`, `">=4"`…, see
/// [`AbiRequirement`])? `Err` for a malformed spec.
pub fn abi_matches(spec: &str, landlock: LandlockSupport) -> Result<bool, String> {
    Ok(AbiRequirement::parse(spec)?.satisfied_by(landlock.abi()))
}

/// An executable `name` on the harness's `PATH` (or at that path, when it
/// has a slash).
pub fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        return is_exe(Path::new(name));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| is_exe(&d.join(name))))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(landlock: LandlockSupport, euid: u32) -> HostFacts {
        HostFacts { landlock, euid }
    }

    #[test]
    fn abi_specs_compare_against_the_probed_abi() {
        let seven = LandlockSupport::Abi(7);
        assert!(abi_matches(">=4", seven).unwrap());
        assert!(!abi_matches("<4", seven).unwrap());
        assert!(abi_matches("==7", seven).unwrap());
        assert!(abi_matches("any", seven).unwrap());
        assert!(!abi_matches("none", seven).unwrap());
        assert!(abi_matches("none", LandlockSupport::NotBuilt).unwrap());
        assert!(!abi_matches("<4", LandlockSupport::Disabled).unwrap());
        assert!(abi_matches(">=x", seven).is_err());
    }

    #[test]
    fn every_unmet_requirement_is_named_in_the_reason() {
        let req = Requires {
            capabilities: vec![Capability::NetDeny, Capability::Script],
            landlock_abi: Some(">=9".into()),
            programs: vec!["sandspec-no-such-program".into(), "sh".into()],
            root: Some(false),
        };
        let caps: BTreeSet<_> = [Capability::NetDeny].into_iter().collect();
        let why = check(&req, &caps, &host(LandlockSupport::Abi(7), 0)).unwrap_err();
        assert!(why.contains("does not claim script"), "{why}");
        assert!(!why.contains("net.deny"), "{why}");
        assert!(why.contains(">=9") && why.contains("ABI 7"), "{why}");
        assert!(why.contains("sandspec-no-such-program"), "{why}");
        assert!(!why.contains("needs sh "), "{why}");
        assert!(why.contains("non-root"), "{why}");
    }

    #[test]
    fn met_requirements_pass() {
        let req = Requires {
            capabilities: vec![Capability::FsRead],
            landlock_abi: Some(">=1".into()),
            programs: vec!["sh".into()],
            root: None,
        };
        let caps: BTreeSet<_> = [Capability::FsRead].into_iter().collect();
        assert_eq!(
            check(&req, &caps, &host(LandlockSupport::Abi(3), 1000)),
            Ok(())
        );
    }
}
