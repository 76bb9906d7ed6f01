//! Loader tests: each kind of bad input is an error at the right
//! `file:line:column`, and every problem is collected.

use super::*;
use std::fs;

/// A valid case, to which tests append or swap lines.
pub(super) const GOOD: &str = "\
id: fs.read.ok
summary: a listed file can be read
tags: [filesystem]
policy: {read: [/usr]}
run: {argv: [/bin/true]}
expect:
  outcome: {exited: {code: 0}}
";

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

/// Loads `text` as one file; returns its problems as `LINE:COL: message`.
pub(super) fn problems(text: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "case.yaml", text);
    let err = load(&f).expect_err("the case should be rejected");
    err.problems
        .iter()
        .map(|p| {
            assert_eq!(p.file, f);
            format!("{}:{}: {}", p.line, p.col, p.message)
        })
        .collect()
}

pub(super) fn only(text: &str) -> String {
    let mut p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.remove(0)
}

#[test]
fn a_valid_case_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "fs/ok.yaml", GOOD);
    let cases = load(tmp.path()).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].case.id, "fs.read.ok");
    assert_eq!(cases[0].path, f);
}

#[test]
fn an_unknown_field_is_reported_at_its_key() {
    let p = only(&GOOD.replace("policy: {read: [/usr]}", "policy:\n  raed: [/usr]"));
    assert!(p.starts_with("5:3: unknown field `raed`"), "{p}");
}

#[test]
fn an_unknown_top_level_field_is_reported() {
    let p = only(&format!("{GOOD}expcet: {{}}\n"));
    assert!(p.starts_with("8:1: unknown field `expcet`"), "{p}");
}

#[test]
fn a_wrong_type_is_reported_at_the_value() {
    let p = only(&GOOD.replace("run: {argv: [/bin/true]}", "run: {argv: 3}"));
    assert_eq!(p, "5:13: wrong type: expected sequence start");
    let p = only(&GOOD.replace("code: 0", "code: [0]"));
    assert!(
        p.starts_with("7:22: ") && p.contains("expected an integer, a comparison"),
        "{p}"
    );
    let p = only(&GOOD.replace("{read: [/usr]}", "{network: {tcp_conect: [1]}}"));
    assert!(p.starts_with("4:20: unknown field `tcp_conect`"), "{p}");
}

#[test]
fn a_yes_is_not_a_boolean() {
    let p = only(&format!("{GOOD}  no_survivors: yes\n"));
    assert!(p.starts_with("8:17: "), "{p}");
}

#[test]
fn an_unknown_tag_is_reported_at_the_tag() {
    let p = only(&GOOD.replace("tags: [filesystem]", "tags: [filesystem, filesytem]"));
    assert!(p.starts_with("3:20: unknown variant `filesytem`"), "{p}");
}

#[test]
fn an_unknown_capability_and_oracle_are_reported() {
    let p = only(&format!("{GOOD}requires: {{capabilities: [fs.raed]}}\n"));
    assert!(p.starts_with("8:27: unknown variant `fs.raed`"), "{p}");
    let p = only(&format!("{GOOD}oracles: [dsn]\n"));
    assert!(p.starts_with("8:11: unknown variant `dsn`"), "{p}");
}

#[test]
fn a_bad_size_is_reported_at_the_value() {
    let p = only(&GOOD.replace(
        "policy: {read: [/usr]}",
        "policy:\n  limits: {memory: 12 parsecs}",
    ));
    assert!(p.starts_with("5:20: invalid size \"12 parsecs\""), "{p}");
}

#[test]
fn a_bad_regex_is_reported_at_the_regex() {
    let p = only(&format!("{GOOD}  stdout: {{regex: \"a(b\"}}\n"));
    assert_eq!(p, "8:19: invalid regex \"a(b\": unclosed group");
}

#[test]
fn a_duplicate_id_names_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write(tmp.path(), "a.yaml", GOOD);
    let b = write(tmp.path(), "b/c.yaml", &format!("# same id\n{GOOD}"));
    let err = load(tmp.path()).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:5: duplicate id \"fs.read.ok\": also at {}:1:5",
            b.display(),
            a.display()
        )
    );
}

#[test]
fn an_isolation_case_without_control_is_rejected() {
    let p = only(&GOOD.replace("tags: [filesystem]", "tags: [filesystem, isolation]"));
    assert!(
        p.starts_with("3:1: a case tagged `isolation` needs a `control`"),
        "{p}"
    );
}

#[test]
fn an_unknown_template_variable_is_rejected_at_its_string() {
    let p = only(&GOOD.replace(
        "[/bin/true]",
        "[/bin/true, \"${SCRATCH}/x\", \"${SCRATH}/y\"]",
    ));
    assert!(
        p.starts_with("5:41: unknown template variable ${SCRATH}"),
        "{p}"
    );
}

#[test]
fn an_oracle_variable_needs_its_oracle() {
    let p = only(&GOOD.replace(
        "[/bin/true]",
        "[/bin/true, \"127.0.0.1:${ORACLE_TCP_PORT}\"]",
    ));
    assert!(
        p.starts_with("5:25: ${ORACLE_TCP_PORT} needs the tcp oracle"),
        "{p}"
    );
}

#[test]
fn an_expected_oracle_must_be_listed() {
    let p = only(&format!("{GOOD}  oracles: {{dns: {{received: 0}}}}\n"));
    assert!(
        p.starts_with("8:13: oracle dns is expected but not listed"),
        "{p}"
    );
}

#[test]
fn semantic_checks_cover_ids_comparisons_modes_and_runs() {
    let text = "\
id: Bad Id
summary: ''
setup:
  files: [{path: ../x, mode: '999'}]
policy: {read: [usr]}
run: {}
requires: {landlock_abi: '4'}
expect:
  outcome: {exited: {code: 1}}
  probe: {errno: [eacces]}
";
    let p = problems(text);
    let expected = [
        "1:5: invalid id",
        "2:10: summary must not be empty",
        "4:18: setup path \"../x\" must not contain `..`",
        "4:30: invalid mode \"999\"",
        "5:17: policy path \"usr\" must be absolute",
        "6:1: run needs exactly one of `argv` and `script`",
        "7:26: invalid landlock_abi \"4\"",
        "10:19: \"eacces\" is not an errno name",
    ];
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    for (got, want) in p.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn a_bad_comparison_is_reported_at_the_value() {
    let p = only(&GOOD.replace("code: 0", "code: '>=x'"));
    assert!(p.starts_with("7:28: invalid comparison \">=x\""), "{p}");
}

#[test]
fn an_expect_that_checks_nothing_is_rejected() {
    let p = only(&GOOD.replace("expect:\n  outcome: {exited: {code: 0}}\n", "expect: {}\n"));
    assert!(p.starts_with("6:1: `expect` checks nothing"), "{p}");
}

#[test]
fn every_problem_of_every_file_is_collected() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.yaml", &GOOD.replace("policy:", "polcy:"));
    write(
        tmp.path(),
        "b.yaml",
        &GOOD
            .replace("fs.read.ok", "fs.read.b")
            .replace("[filesystem]", "[nope]"),
    );
    write(
        tmp.path(),
        "c.yaml",
        &format!(
            "{}  stdout: {{regex: \"(\"}}\n  stderr: {{regex: \"[\"}}\n",
            GOOD.replace("fs.read.ok", "fs.read.c")
        ),
    );
    let err = load(tmp.path()).unwrap_err();
    let lines: Vec<String> = err.to_string().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].contains("a.yaml:4:1: unknown field `polcy`"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("b.yaml:3:8: unknown variant `nope`"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("c.yaml:8:19: invalid regex"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("c.yaml:9:19: invalid regex"),
        "{}",
        lines[3]
    );
}

#[test]
fn multi_document_files_load_each_document_with_its_own_line_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let second = GOOD
        .replace("fs.read.ok", "fs.read.two")
        .replace("[/usr]", "[/usr]\n  raed: []");
    let f = write(
        tmp.path(),
        "multi.yaml",
        &format!("# two cases\n---\n{GOOD}---\n{second}"),
    );
    let err = load(&f).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    // Second document starts at line 10 (`---`); `raed` is its 6th line.
    assert_eq!(
        (err.problems[0].line, err.problems[0].col),
        (15, 3),
        "{err}"
    );

    fs::write(
        &f,
        format!("{GOOD}---\n{}", GOOD.replace("fs.read.ok", "fs.read.two")),
    )
    .unwrap();
    let cases = load(&f).unwrap();
    let ids: Vec<&str> = cases.iter().map(|c| c.case.id.as_str()).collect();
    assert_eq!(ids, ["fs.read.ok", "fs.read.two"]);

    // `...` ends a document; `--- ` may carry the next one on its own line.
    let third = "--- {id: fs.read.three, summary: s, run: {argv: [x]}, expct: {}}\n";
    fs::write(&f, format!("{GOOD}...\n# between\n{third}")).unwrap();
    let err = load(&f).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        (err.problems[0].line, err.problems[0].col),
        (10, 55),
        "{err}"
    );
}

#[test]
fn a_file_without_a_case_or_a_directory_without_files_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("no *.yaml or *.yml file"), "{err}");
    let f = write(tmp.path(), "empty.yaml", "# nothing here\n");
    let err = load(&f).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:1:1: no case in this file", f.display())
    );
    let err = load(&tmp.path().join("missing")).unwrap_err();
    assert!(
        err.to_string().contains(":1:1: failed to read cases:"),
        "{err}"
    );
}

#[test]
fn files_other_than_yaml_and_hidden_files_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "ok.yml", GOOD);
    write(tmp.path(), "README.md", "# not a case\n");
    write(tmp.path(), ".hidden.yaml", "garbage: [");
    assert_eq!(load(tmp.path()).unwrap().len(), 1);
}

#[test]
fn oracle_ports_need_port_rules_and_listed_tcp_oracles() {
    let text =
        format!("{GOOD}oracles: [tcp, udp]\noracle_ports: {{tcp_connect: [tcp, udp, tcp2]}}\n");
    let p = problems(&text);
    let expected = [
        "9:1: oracle_ports needs policy.network to be a port-rule map",
        "9:35: oracle udp has no TCP port",
        "9:40: oracle tcp2 is not listed",
    ];
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    for (got, want) in p.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    let ok = GOOD.replace(
        "{read: [/usr]}",
        "{read: [/usr], network: {tcp_connect: []}}",
    );
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "ok.yaml",
        &format!("{ok}oracles: [tcp]\noracle_ports: {{tcp_connect: [tcp]}}\n"),
    );
    assert_eq!(load(&f).unwrap().len(), 1);
}
