//! Requirements on host facts beyond Landlock and the user: the machine's
//! architecture, sysctl values and user extended attributes on the scratch
//! filesystem (`requires.arch`, `requires.sysctl`, `requires.user_xattr`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The machine as `uname -m` names it (`x86_64`, `aarch64`…), probed once.
pub fn machine() -> &'static str {
    static M: OnceLock<String> = OnceLock::new();
    M.get_or_init(|| {
        nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_else(|_| std::env::consts::ARCH.to_string())
    })
}

/// Why `arch` (any of) is unmet on `machine`, if it is.
pub fn arch_unmet(arch: &[String], machine: &str) -> Option<String> {
    if arch.is_empty() || arch.iter().any(|a| a == machine) {
        return None;
    }
    Some(format!(
        "needs architecture {}; this machine is {machine}",
        arch.join(" or ")
    ))
}

/// The file of a dotted sysctl name: `dev.tty.legacy_tiocsti` is
/// /proc/sys/dev/tty/legacy_tiocsti. (Names are checked at load.)
pub fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// A sysctl's value, trimmed; `Err` says why it cannot be read.
pub fn read_sysctl(name: &str) -> Result<String, String> {
    std::fs::read_to_string(sysctl_path(name))
        .map(|v| v.trim().to_string())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("this kernel has no sysctl {name}"),
            _ => format!("failed to read sysctl {name}: {e}"),
        })
}

/// Whether the filesystem of `dir` takes a `user.*` extended attribute on
/// a regular file: `Err` says why not (tmpfs before Linux 6.6 and ramfs
/// answer EOPNOTSUPP).
pub fn user_xattr_in(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let f = tempfile::Builder::new()
        .prefix(".sandspec-xattr-")
        .tempfile_in(dir)
        .map_err(|e| format!("failed to create a file in {}: {e}", dir.display()))?;
    let path = std::ffi::CString::new(f.path().as_os_str().as_bytes())
        .map_err(|_| "a NUL in the temporary directory's path".to_string())?;
    // SAFETY: valid C strings and a one-byte value of the length given.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"user.sandspec".as_ptr(),
            b"x".as_ptr().cast(),
            1,
            0,
        )
    };
    if r == 0 {
        return Ok(());
    }
    Err(format!(
        "needs user extended attributes on the scratch filesystem ({}): {}",
        dir.display(),
        std::io::Error::last_os_error()
    ))
}

/// [`user_xattr_in`] the harness's temporary directory, where scratch
/// directories go; probed once.
pub fn user_xattr() -> &'static Result<(), String> {
    static X: OnceLock<Result<(), String>> = OnceLock::new();
    X.get_or_init(|| user_xattr_in(&std::env::temp_dir()))
}

/// Every sysctl in `want` whose value differs (or cannot be read), with
/// what it is instead; `read` looks a value up.
pub fn sysctl_unmet(
    want: &BTreeMap<String, String>,
    read: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    want.iter()
        .filter_map(|(name, value)| match read(name) {
            Ok(got) if got == value.trim() => None,
            Ok(got) => Some(format!("needs sysctl {name} = {value}; it is {got}")),
            Err(why) => Some(format!("needs sysctl {name} = {value}; {why}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_is_met_by_any_listed_machine() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(arch_unmet(&[], "x86_64"), None);
        assert_eq!(arch_unmet(&a(&["aarch64", "x86_64"]), "x86_64"), None);
        let why = arch_unmet(&a(&["aarch64"]), "x86_64").unwrap();
        assert!(why.contains("aarch64") && why.contains("x86_64"), "{why}");
        assert!(!machine().is_empty());
    }

    #[test]
    fn user_xattr_is_probed_on_a_real_file() {
        let tmp = tempfile::tempdir().unwrap();
        // Either answer is possible on a test machine; an error says why.
        if let Err(why) = user_xattr_in(tmp.path()) {
            assert!(why.contains("extended attributes"), "{why}");
        }
        let gone = tmp.path().join("no-such-dir");
        let why = user_xattr_in(&gone).unwrap_err();
        assert!(why.contains("failed to create a file in"), "{why}");
        // The probe file is removed.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn sysctls_compare_trimmed_values_and_name_the_missing_ones() {
        let want: BTreeMap<String, String> = [("a.b", "1"), ("c.d", "0"), ("e.f", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let read = |n: &str| match n {
            "a.b" => Ok("1".to_string()),
            "c.d" => Ok("2".to_string()),
            _ => Err(format!("this kernel has no sysctl {n}")),
        };
        let unmet = sysctl_unmet(&want, read);
        assert_eq!(unmet.len(), 2, "{unmet:?}");
        assert!(unmet[0].contains("c.d = 0; it is 2"), "{unmet:?}");
        assert!(unmet[1].contains("no sysctl e.f"), "{unmet:?}");
        assert_eq!(
            sysctl_path("dev.tty.legacy_tiocsti"),
            "/proc/sys/dev/tty/legacy_tiocsti"
        );
        // A real one: every kernel here has kernel.ostype = Linux.
        assert_eq!(read_sysctl("kernel.ostype").as_deref(), Ok("Linux"));
        assert!(read_sysctl("kernel.sandspec_no_such_thing")
            .unwrap_err()
            .contains("no sysctl"));
    }
}
