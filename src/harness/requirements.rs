//! Requirements: what a case needs from the driver and the host. An unmet
//! requirement makes the case a skip whose reason says exactly what is
//! missing; it is never run and never counted as a pass.

use std::path::Path;

use super::host_requires;
use crate::corpus::case::Requires;
use crate::corpus::matcher::AbiRequirement;
use crate::corpus::vocab::capability_name;
use crate::driver::Hello;
use crate::kernel::LandlockSupport;

/// Host facts, probed once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Landlock as the harness's own process sees it.
    pub landlock: LandlockSupport,
    /// The harness's effective uid.
    pub euid: u32,
    /// The machine, as `uname -m` names it.
    pub machine: &'static str,
}

impl HostFacts {
    /// Probes the running kernel and user.
    pub fn probe() -> HostFacts {
        HostFacts {
            landlock: crate::kernel::landlock(),
            euid: nix::unistd::geteuid().as_raw(),
            machine: host_requires::machine(),
        }
    }
}

/// Checks `req` against the driver's handshake and the host; `Err` carries
/// the skip reason (every unmet requirement, joined by "; ").
///
/// A backend that declares `requires_landlock_abi` refuses every run on a
/// kernel below it; there, a case is skipped with that reason unless its
/// own `landlock_abi` requirement excludes the backend's minimum (it was
/// written for such kernels, e.g. `none`: the refusal is what it checks).
pub fn check(req: &Requires, hello: &Hello, host: &HostFacts) -> Result<(), String> {
    let mut unmet = Vec::new();
    let missing: Vec<String> = req
        .capabilities
        .iter()
        .filter(|c| !hello.capabilities.contains(c))
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
    if let Some(min) = hello.landlock_minimum_unmet(host.landlock) {
        let written_for_it = req.landlock_abi.as_deref().is_some_and(|spec| {
            abi_matches(spec, host.landlock) == Ok(true)
                && abi_matches(spec, LandlockSupport::Abi(min)) == Ok(false)
        });
        if !written_for_it {
            unmet.push(format!(
                "the backend requires Landlock ABI {min} or later and refuses every run \
                 without it; this kernel's Landlock is {}",
                host.landlock
            ));
        }
    }
    if hello.requires_landlock_abi.is_none() && req.backend_requires_landlock == Some(true) {
        unmet.push(
            "only for backends built on Landlock (the driver's hello declares no \
             requires_landlock_abi)"
                .into(),
        );
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
    unmet.extend(host_requires::arch_unmet(&req.arch, host.machine));
    unmet.extend(host_requires::sysctl_unmet(
        &req.sysctl,
        host_requires::read_sysctl,
    ));
    if req.user_xattr == Some(true) {
        if let Err(why) = host_requires::user_xattr() {
            unmet.push(why.clone());
        }
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
    use crate::corpus::case::Capability;
    use std::collections::BTreeSet;

    fn host(landlock: LandlockSupport, euid: u32) -> HostFacts {
        HostFacts {
            landlock,
            euid,
            machine: "x86_64",
        }
    }

    fn hello(caps: &[Capability], requires_landlock_abi: Option<u32>) -> Hello {
        Hello {
            name: "test".into(),
            version: "0".into(),
            capabilities: caps.iter().copied().collect::<BTreeSet<_>>(),
            requires_landlock_abi,
        }
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
            backend_requires_landlock: None,
            arch: vec!["aarch64".into()],
            sysctl: [("kernel.sandspec_missing".to_string(), "1".to_string())].into(),
            user_xattr: None,
        };
        let h = hello(&[Capability::NetDeny], None);
        let why = check(&req, &h, &host(LandlockSupport::Abi(7), 0)).unwrap_err();
        assert!(why.contains("does not claim script"), "{why}");
        assert!(!why.contains("net.deny"), "{why}");
        assert!(why.contains(">=9") && why.contains("ABI 7"), "{why}");
        assert!(why.contains("sandspec-no-such-program"), "{why}");
        assert!(!why.contains("needs sh "), "{why}");
        assert!(why.contains("non-root"), "{why}");
        assert!(why.contains("needs architecture aarch64"), "{why}");
        assert!(why.contains("no sysctl kernel.sandspec_missing"), "{why}");
    }

    #[test]
    fn met_requirements_pass() {
        let req = Requires {
            capabilities: vec![Capability::FsRead],
            landlock_abi: Some(">=1".into()),
            programs: vec!["sh".into()],
            root: None,
            backend_requires_landlock: None,
            arch: vec!["x86_64".into(), "aarch64".into()],
            sysctl: [("kernel.ostype".to_string(), "Linux".to_string())].into(),
            user_xattr: None,
        };
        let h = hello(&[Capability::FsRead], Some(1));
        assert_eq!(
            check(&req, &h, &host(LandlockSupport::Abi(3), 1000)),
            Ok(())
        );
    }

    #[test]
    fn user_xattr_follows_the_probe_of_the_scratch_filesystem() {
        let req = Requires {
            user_xattr: Some(true),
            ..Default::default()
        };
        let h = hello(&[], None);
        let got = check(&req, &h, &host(LandlockSupport::Abi(3), 1000));
        match super::host_requires::user_xattr() {
            Ok(()) => assert_eq!(got, Ok(())),
            Err(why) => assert_eq!(got, Err(why.clone())),
        }
    }

    fn requiring(landlock_abi: Option<&str>, backend_requires_landlock: bool) -> Requires {
        Requires {
            capabilities: vec![Capability::FsWrite],
            landlock_abi: landlock_abi.map(Into::into),
            programs: vec![],
            root: None,
            backend_requires_landlock: backend_requires_landlock.then_some(true),
            ..Default::default()
        }
    }

    #[test]
    fn a_landlock_backend_below_its_minimum_skips_all_but_the_cases_written_for_it() {
        let reference = hello(&[Capability::FsWrite], Some(1));
        for kernel in [LandlockSupport::NotBuilt, LandlockSupport::Disabled] {
            let why = check(&requiring(None, false), &reference, &host(kernel, 0)).unwrap_err();
            assert!(
                why.contains("requires Landlock ABI 1") && why.contains("refuses"),
                "{why}"
            );
            // "any" admits the backend's minimum too: not written for this kernel.
            assert!(check(&requiring(Some("any"), false), &reference, &host(kernel, 0)).is_err());
            // Written for kernels without Landlock: it runs (its refusal is the check).
            assert_eq!(
                check(&requiring(Some("none"), true), &reference, &host(kernel, 0)),
                Ok(())
            );
        }
        // On a kernel with Landlock the same backend runs everything it claims.
        assert_eq!(
            check(
                &requiring(None, false),
                &reference,
                &host(LandlockSupport::Abi(2), 0)
            ),
            Ok(())
        );
        // A backend that needs ABI 4 skips on ABI 2, except a case for ABI < 4.
        let newer = hello(&[Capability::FsWrite], Some(4));
        let two = host(LandlockSupport::Abi(2), 0);
        assert!(check(&requiring(None, false), &newer, &two)
            .unwrap_err()
            .contains("ABI 2"));
        assert_eq!(check(&requiring(Some("<4"), false), &newer, &two), Ok(()));
    }

    #[test]
    fn cases_for_landlock_backends_skip_backends_that_do_not_use_it() {
        let bwrap_like = hello(&[Capability::FsWrite], None);
        let kernel = host(LandlockSupport::NotBuilt, 0);
        let why = check(&requiring(Some("none"), true), &bwrap_like, &kernel).unwrap_err();
        assert!(why.contains("built on Landlock"), "{why}");
        // Without Landlock such a backend still runs the ordinary cases.
        assert_eq!(check(&requiring(None, false), &bwrap_like, &kernel), Ok(()));
    }
}
