//! The shipped corpus (conformance/) loads, is big enough, has its five
//! seed cases, and every isolation case carries a control.

use std::collections::BTreeMap;
use std::path::Path;

use sandspec::corpus::case::{Case, Tag};
use sandspec::corpus::{self, LoadedCase};

fn shipped() -> Vec<LoadedCase> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    match corpus::load(&dir) {
        Ok(c) => c,
        Err(e) => panic!("the shipped corpus does not load:\n{e}"),
    }
}

fn with_tag(cases: &[LoadedCase], tag: Tag) -> Vec<&Case> {
    cases
        .iter()
        .map(|c| &c.case)
        .filter(|c| c.tags.contains(&tag))
        .collect()
}

#[test]
fn shipped_corpus_has_at_least_forty_cases() {
    let cases = shipped();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
}

/// The five seed behaviours; "no Landlock is a hard error" is two cases
/// (ENOSYS and EOPNOTSUPP), so six ids.
#[test]
fn shipped_corpus_has_the_five_seed_cases() {
    let cases = shipped();
    let mut seeds: Vec<&str> = with_tag(&cases, Tag::Seed)
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    seeds.sort_unstable();
    assert_eq!(
        seeds,
        [
            "fs.filter.missing-allowlisted-paths",
            "net.deny.dns-udp",
            "platform.no-landlock.enosys",
            "platform.no-landlock.eopnotsupp",
            "process.timeout.kills-setsid-grandchild",
            "script.python.4mib-body",
        ],
        "the seed cases changed"
    );
}

#[test]
fn every_isolation_case_has_a_control() {
    let cases = shipped();
    let isolation = with_tag(&cases, Tag::Isolation);
    assert!(!isolation.is_empty());
    let missing: Vec<&str> = isolation
        .iter()
        .filter(|c| c.control.is_none())
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "isolation cases without a control: {missing:?}"
    );
}

#[test]
fn every_area_directory_has_cases_and_ids_start_with_their_area() {
    let cases = shipped();
    let mut per_dir: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cases {
        let dir = c
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            c.case.id.starts_with(&format!("{dir}.")),
            "{} is in {dir}/ but its id does not start with {dir}.",
            c.case.id
        );
        *per_dir.entry(dir).or_default() += 1;
    }
    for area in [
        "fs", "net", "process", "limits", "script", "platform", "escape",
    ] {
        assert!(
            per_dir.get(area).copied().unwrap_or(0) > 0,
            "no case in conformance/{area}/: {per_dir:?}"
        );
    }
}

#[test]
fn every_case_expands_with_all_variables_set() {
    let mut vars: BTreeMap<String, String> = sandspec::corpus::template::VARIABLES
        .iter()
        .map(|(n, _)| {
            (
                n.to_string(),
                if n.contains("PORT") || n.contains("PID") {
                    "4242".into()
                } else {
                    format!("/x/{n}")
                },
            )
        })
        .collect();
    // Inherited fds, as many as any case has.
    for i in 0..8 {
        vars.insert(
            sandspec::corpus::template::fd_variable(i),
            (10 + i).to_string(),
        );
    }
    for c in shipped() {
        // Inherited fds get their numbers (`${FD_i}`) at run time, one per
        // `run.fds` entry.
        let mut vars = vars.clone();
        for i in 0..c.case.run.fds.len() {
            vars.insert(
                sandspec::corpus::template::fd_variable(i),
                format!("{}", 3 + i),
            );
        }
        let x = sandspec::corpus::template::expand(&c.case, &vars)
            .unwrap_or_else(|e| panic!("{}: {e}", c.case.id));
        sandspec::corpus::setup::command(&x.run).unwrap_or_else(|e| panic!("{}: {e}", c.case.id));
    }
}
