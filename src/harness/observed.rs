//! The checks on what the harness observed itself, beyond oracle counts:
//! survivors (found by [`crate::oracle::tracker`]), file modes and owners,
//! kernel objects left behind, and the words that explain the terminal and
//! inbound oracles' findings.

use std::os::unix::fs::MetadataExt;

use super::evaluate::{int_matches, ProbeReport};
use crate::corpus::case::{Expect, HostMatcher, IntMatcher, OracleKind};
use crate::corpus::setup::parse_mode;
use crate::oracle::objects::Object;
use crate::oracle::tracker::Survivor;
use crate::oracle::Observations;

/// `pid (comm, by cgroup+orphan), …`.
pub fn list_survivors(s: &[Survivor]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Survivors against `expect`: `no_survivors: true` (none, and the probe
/// reported the pids it started), `survivors: M`, or, with neither, none.
pub fn check_survivors(
    expect: &Expect,
    survivors: &[Survivor],
    probe: Option<&ProbeReport>,
) -> Result<(), String> {
    let n = i64::try_from(survivors.len()).unwrap_or(i64::MAX);
    if let Some(m) = &expect.survivors {
        if !int_matches(m, n)? {
            return Err(format!(
                "expected the run to leave {m} process(es) alive, it left {n}{}",
                if survivors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", list_survivors(survivors))
                }
            ));
        }
        return Ok(());
    }
    if expect.no_survivors && probe.and_then(ProbeReport::pids).is_none() {
        return Err(
            "expected no survivors, but the probe reported no pids: nothing shows it started \
             the processes to look for"
                .into(),
        );
    }
    if !survivors.is_empty() {
        return Err(format!(
            "expected no survivors, but the run left {n} process(es) alive after it ended \
             (killed now): {}",
            list_survivors(survivors)
        ));
    }
    Ok(())
}

/// `mode` and `owner` of host paths (not following a final symlink).
pub fn check_metadata(h: &HostMatcher) -> Result<(), String> {
    for (p, want) in &h.mode {
        let want = parse_mode(want)?;
        let m = std::fs::symlink_metadata(p)
            .map_err(|e| format!("expected {p} to have mode {want:04o}: failed to stat it: {e}"))?;
        let got = m.mode() & 0o7777;
        if got != want {
            return Err(format!(
                "expected {p} to have mode {want:04o}, it has {got:04o}"
            ));
        }
    }
    for (p, want) in &h.owner {
        let m = std::fs::symlink_metadata(p)
            .map_err(|e| format!("expected the owner of {p}: failed to stat it: {e}"))?;
        let (uid, gid) = (m.uid(), m.gid());
        if want.uid.is_some_and(|u| u != uid) || want.gid.is_some_and(|g| g != gid) {
            let show = |v: Option<u32>| v.map_or("any".to_string(), |v| v.to_string());
            return Err(format!(
                "expected {p} to be owned by uid {} gid {}, it is owned by uid {uid} gid {gid}",
                show(want.uid),
                show(want.gid)
            ));
        }
    }
    Ok(())
}

/// The kernel objects the run left (already removed) against `m`.
pub fn check_objects(m: &IntMatcher, left: &Result<Vec<Object>, String>) -> Result<(), String> {
    let left = left
        .as_ref()
        .map_err(|e| format!("expected kernel objects left {m}, but {e}"))?;
    let n = i64::try_from(left.len()).unwrap_or(i64::MAX);
    if !int_matches(m, n)? {
        let names: Vec<String> = left.iter().map(ToString::to_string).collect();
        return Err(format!(
            "expected the run to leave {m} kernel object(s), it left {n}{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (removed now): {}", names.join(", "))
            }
        ));
    }
    Ok(())
}

/// What an oracle saw, in words, after "it received N" (the terminal's
/// queued bytes, the inbound oracle's attempts).
pub fn oracle_detail(kind: OracleKind, obs: &Observations) -> String {
    match kind {
        OracleKind::Terminal => match &obs.terminal {
            Some(t) if t.count > 0 => format!(
                " byte(s) of terminal input: {:?}",
                String::from_utf8_lossy(&t.bytes)
            ),
            _ => " byte(s) of terminal input".into(),
        },
        _ => String::new(),
    }
}

/// The inbound oracle's `connected` against `m`.
pub fn check_inbound(m: &IntMatcher, obs: &Observations) -> Result<(), String> {
    let Some(r) = &obs.inbound else {
        return Err(
            "expected oracle inbound to count connections, but it was not running (list it \
             under `oracles:`)"
                .into(),
        );
    };
    let n = i64::try_from(r.connected).unwrap_or(i64::MAX);
    if !int_matches(m, n)? {
        let what = if r.tried.is_empty() {
            "no listening socket of the run was found".to_string()
        } else {
            r.tried.join("; ")
        };
        return Err(format!(
            "expected the harness to connect {m} time(s) to the run's listening sockets, it \
             connected {n} ({what})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::tracker::FoundBy;

    fn survivor(pid: i32) -> Survivor {
        Survivor {
            pid,
            comm: "renamed".into(),
            found_by: vec![FoundBy::Cgroup, FoundBy::Orphan],
        }
    }

    fn expect(yaml: &str) -> Expect {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn any_survivor_fails_unless_the_case_expects_some() {
        let none = expect("outcome: timeout");
        assert_eq!(check_survivors(&none, &[], None), Ok(()));
        let why = check_survivors(&none, &[survivor(7)], None).unwrap_err();
        assert!(why.contains("7 (renamed, by cgroup+orphan)"), "{why}");
        let some = expect("survivors: '>=1'");
        assert_eq!(check_survivors(&some, &[survivor(7)], None), Ok(()));
        let why = check_survivors(&some, &[], None).unwrap_err();
        assert!(why.contains("left 0"), "{why}");
    }

    #[test]
    fn no_survivors_still_needs_the_probe_s_pids() {
        let e = expect("no_survivors: true");
        assert!(check_survivors(&e, &[], None)
            .unwrap_err()
            .contains("no pids"));
    }

    #[test]
    fn modes_and_owners_are_read_without_following_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = d.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let h = |y: String| -> HostMatcher { serde_saphyr::from_str(&y).unwrap() };
        let fp = f.display();
        assert_eq!(
            check_metadata(&h(format!(
                "{{mode: {{'{fp}': '0640'}}, owner: {{'{fp}': {{uid: {uid}}}}}}}"
            ))),
            Ok(())
        );
        let why = check_metadata(&h(format!("{{mode: {{'{fp}': '0644'}}}}"))).unwrap_err();
        assert!(why.contains("has 0640"), "{why}");
        // The link's own mode (0777), not its target's.
        let lp = link.display();
        assert_eq!(
            check_metadata(&h(format!("{{mode: {{'{lp}': '0777'}}}}"))),
            Ok(())
        );
        let why =
            check_metadata(&h(format!("{{owner: {{'{fp}': {{uid: {}}}}}}}", uid + 1))).unwrap_err();
        assert!(why.contains(&format!("owned by uid {uid}")), "{why}");
    }

    #[test]
    fn objects_left_are_counted_named_and_an_unlistable_host_is_an_error() {
        let zero = IntMatcher::Eq(0);
        assert_eq!(check_objects(&zero, &Ok(vec![])), Ok(()));
        let why = check_objects(&zero, &Ok(vec![Object::Shm(5)])).unwrap_err();
        assert!(why.contains("SysV shared memory segment 5"), "{why}");
        let why = check_objects(&zero, &Err("no /dev/mqueue".into())).unwrap_err();
        assert!(why.contains("no /dev/mqueue"), "{why}");
    }
}
