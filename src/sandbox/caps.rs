//! Capabilities: a command started as root runs without any. What the
//! spawn path must do is decided here, once per `Sandbox`.
//!
//! With `no_new_privs` (always set) an exec never grants more than the
//! permitted set held before it, so emptying the permitted set is what
//! keeps root's exec from handing the full set back. The bounding set is
//! emptied and the securebits locked too (`SECBIT_NOROOT` and friends)
//! when the caller may (`CAP_SETPCAP`): belt and braces, as container
//! runtimes do.

use super::spawn::CapsPlan;
use super::SetupError;
use crate::policy::SetupErrorKind;

const CAP_SETPCAP: u32 = 8;

/// One capability set from `/proc/self/status` (`CapEff:` …), as a mask.
fn status_mask(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    u64::from_str_radix(line[key.len()..].trim(), 16).ok()
}

/// What G must drop, or `None` when the caller holds no capability (an
/// unprivileged user: nothing to drop, and `no_new_privs` keeps exec from
/// granting any).
pub fn plan() -> Result<Option<CapsPlan>, SetupError> {
    let fail = |why: String| SetupError {
        kind: SetupErrorKind::RestrictFailed,
        message: format!("failed to prepare dropping capabilities: {why}"),
    };
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| fail(format!("/proc/self/status: {e}")))?;
    let mut held = 0u64;
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        held |= status_mask(&status, key)
            .ok_or_else(|| fail(format!("no {key} line in /proc/self/status")))?;
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if held == 0 && euid != 0 {
        return Ok(None);
    }
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| fail(format!("/proc/sys/kernel/cap_last_cap: {e}")))?
        .trim()
        .parse()
        .map_err(|e| fail(format!("/proc/sys/kernel/cap_last_cap: {e}")))?;
    if last_cap > 63 {
        return Err(fail(format!("cap_last_cap is {last_cap}, beyond 63")));
    }
    let effective = status_mask(&status, "CapEff:").unwrap_or(0);
    Ok(Some(CapsPlan {
        last_cap,
        setpcap: effective & (1 << CAP_SETPCAP) != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets_are_read_as_hex_masks() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(status_mask(s, "CapEff:"), Some(0x1ff_ffff_ffff));
        assert_eq!(status_mask(s, "CapInh:"), Some(0));
        assert_eq!(status_mask(s, "CapAmb:"), None);
    }
}
