//! Loader tests for the case features that reach beyond the policy:
//! terminals, inherited fds, the unix_path and inbound oracles, controls
//! through another driver or with another run, host requirements, host
//! matchers and refs. Each bad value is an error at its position.

use super::tests::{only, problems, write, GOOD};
use super::*;

fn loads(text: &str) -> case::Case {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "case.yaml", text);
    match load(&f) {
        Ok(mut c) => c.remove(0).case,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn refs_take_cve_ids_advisories_and_urls_only() {
    let c = loads(&format!(
        "{GOOD}refs: [CVE-2017-5226, GHSA-abcd-1234-ef56, 'https://github.com/containers/bubblewrap/issues/142']\n"
    ));
    assert_eq!(c.refs.len(), 3);
    let p = only(&format!("{GOOD}refs: [CVE-17-5226]\n"));
    assert!(
        p.starts_with("8:8: invalid reference \"CVE-17-5226\""),
        "{p}"
    );
    let p = only(&format!("{GOOD}refs: [CVE-2017-5226, CVE-2017-5226]\n"));
    assert!(p.contains("listed twice"), "{p}");
    let p = only(&format!("{GOOD}refs: ['see the bwrap issue']\n"));
    assert!(p.contains("invalid reference"), "{p}");
}

#[test]
fn requires_names_architectures_and_sysctls_strictly() {
    let c = loads(&GOOD.replace(
        "tags: [filesystem]",
        "tags: [filesystem]\nrequires: {arch: [x86_64], sysctl: {dev.tty.legacy_tiocsti: \"1\"}, root: true}",
    ));
    assert_eq!(c.requires.arch, vec!["x86_64"]);
    assert_eq!(c.requires.sysctl["dev.tty.legacy_tiocsti"], "1");
    let p = only(&GOOD.replace(
        "tags: [filesystem]",
        "tags: [filesystem]\nrequires: {arch: [x86-64]}",
    ));
    assert!(
        p.starts_with("4:19: unknown architecture \"x86-64\""),
        "{p}"
    );
    let p = only(&GOOD.replace(
        "tags: [filesystem]",
        "tags: [filesystem]\nrequires: {sysctl: {dev/tty: \"1\"}}",
    ));
    assert!(p.contains("invalid sysctl name \"dev/tty\""), "{p}");
    let p = only(&GOOD.replace(
        "tags: [filesystem]",
        "tags: [filesystem]\nrequires: {sysctl: {vm.memfd_noexec: \" \"}}",
    ));
    assert!(p.contains("needs a value"), "{p}");
}

#[test]
fn the_terminal_oracle_needs_its_capability_and_no_stdin_text() {
    let base = "\
id: t.tty
summary: s
tags: [terminal]
requires: {capabilities: [terminal]}
oracles: [terminal]
run: {argv: [x]}
expect: {oracles: {terminal: {received: 0}}}
";
    let c = loads(base);
    assert_eq!(c.oracles, vec![case::OracleKind::Terminal]);
    let p = only(&base.replace("requires: {capabilities: [terminal]}\n", ""));
    assert!(p.starts_with("4:1: the terminal oracle needs"), "{p}");
    let p = only(&base.replace("run: {argv: [x]}", "run: {argv: [x], stdin: hi}"));
    assert!(p.starts_with("6:18: with the terminal oracle"), "{p}");
}

#[test]
fn inherited_fds_need_their_capability_absolute_paths_and_existing_indexes() {
    let base = "\
id: t.fds
summary: s
requires: {capabilities: [fds.inherit]}
run:
  argv: [x, \"${FD_0}\"]
  fds: [{path: \"${SCRATCH}/f\", open: write}]
expect: {outcome: {exited: {code: 0}}}
";
    let c = loads(base);
    assert_eq!(c.run.fds[0].open, case::FdOpen::Write);
    let p = only(&base.replace("requires: {capabilities: [fds.inherit]}\n", ""));
    assert!(p.starts_with("5:3: inherited fds need a driver"), "{p}");
    let p = only(&base.replace("${FD_0}", "${FD_1}"));
    assert!(
        p.starts_with("5:13: ${FD_1} names an inherited fd the run does not have"),
        "{p}"
    );
    let p = only(&base.replace("\"${SCRATCH}/f\"", "rel/f"));
    assert!(p.contains("must be absolute"), "{p}");
    let p = only(&base.replace("open: write", "open: append"));
    assert!(p.starts_with("6:38: unknown variant `append`"), "{p}");
}

#[test]
fn unix_path_and_inbound_oracles_have_their_variables_and_counters() {
    let base = "\
id: t.unix
summary: s
oracles: [unix_path, inbound]
run: {argv: [x, \"${ORACLE_UNIX_PATH}\", \"${ORACLE_UNIX_DGRAM_PATH}\"]}
expect: {oracles: {unix_path: {received: 0}, inbound: {connected: 0}}}
";
    loads(base);
    let ps = problems(&base.replace("oracles: [unix_path, inbound]", "oracles: [inbound]"));
    // Both variables need it, and the expectation names it.
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(
        ps[0].contains("${ORACLE_UNIX_PATH} needs the unix_path oracle"),
        "{ps:?}"
    );
    assert!(ps[2].contains("not listed in `oracles`"), "{ps:?}");
    let ps = problems(&base.replace("inbound: {connected: 0}", "inbound: {received: 0}"));
    assert!(ps.iter().any(|p| p.contains("use `connected`")), "{ps:?}");
    assert!(
        ps.iter()
            .any(|p| p.contains("the inbound oracle needs `connected`")),
        "{ps:?}"
    );
    let ps = problems(&base.replace("unix_path: {received: 0}", "unix_path: {connected: 0}"));
    assert!(
        ps[0].contains("oracle unix_path needs `received`"),
        "{ps:?}"
    );
    assert!(
        ps[1].contains("`connected` is for the inbound oracle"),
        "{ps:?}"
    );
}

#[test]
fn a_control_may_run_unsandboxed_or_run_something_else() {
    let base = "\
id: t.ctl
summary: s
tags: [isolation]
run: {argv: [x]}
expect: {outcome: {exited: {code: 1}}}
control:
  driver: none
  run: {argv: [y, \"${FD_0}\"], fds: [{path: /etc/hostname, open: read}]}
  expect: {outcome: {exited: {code: 0}}}
";
    let c = loads(base);
    let ctl = c.control.unwrap();
    assert_eq!(ctl.driver, Some(case::ControlDriver::None));
    assert_eq!(ctl.run.unwrap().argv.unwrap()[0], "y");
    // The case's own run has no fds: ${FD_0} there is an error.
    let p = only(&base.replace("run: {argv: [x]}", "run: {argv: [x, \"${FD_0}\"]}"));
    assert!(p.starts_with("4:17: ${FD_0} names an inherited fd"), "{p}");
    // Under the case's driver, fds need the capability.
    let p = only(&base.replace("  driver: none\n", ""));
    assert!(p.contains("inherited fds need a driver"), "{p}");
    let p = only(&base.replace("driver: none", "driver: bwrap"));
    assert!(p.starts_with("7:11: unknown variant `bwrap`"), "{p}");
    let p = only(&base.replace("run: {argv: [y,", "run: {argv: [], x: [y,"));
    assert!(p.contains("unknown field `x`"), "{p}");
}

#[test]
fn host_matchers_check_modes_owners_and_object_counts_at_load() {
    let base = "\
id: t.host
summary: s
run: {argv: [x]}
expect:
  host:
    mode: {\"${SCRATCH}/f\": \"0644\"}
    owner: {\"${SCRATCH}/f\": {uid: 0}}
    objects_left: 0
  survivors: 0
";
    let c = loads(base);
    let h = c.expect.host.unwrap();
    assert_eq!(h.owner.values().next().unwrap().uid, Some(0));
    let p = only(&base.replace("\"0644\"", "\"0999\""));
    assert!(p.starts_with("6:28: invalid mode \"0999\""), "{p}");
    let p = only(&base.replace("{uid: 0}", "{}"));
    assert!(p.contains("needs `uid`, `gid` or both"), "{p}");
    let p = only(&base.replace("objects_left: 0", "objects_left: '>>1'"));
    assert!(p.starts_with("8:19: "), "{p}");
    let p = only(&base.replace("survivors: 0", "survivors: 0\n  no_survivors: true"));
    assert!(p.contains("use one of them"), "{p}");
}
