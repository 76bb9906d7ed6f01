//! What the harness observes by its own means, end to end: survivors in the
//! JSON report, refs in `sandspec list --verbose`, host requirements as
//! skips, and the cases staged for the reference's hardening
//! (tests/fixtures/cases/hardening): each fails without a sandbox, on the
//! harness's own observation, and each control passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use sandspec::corpus::{self, LoadedCase};
use sandspec::driver::none::NoneFactory;
use sandspec::harness::{DriverSlot, Harness, HarnessConfig, Status};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn harness() -> Harness {
    Harness::new(HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe"))).unwrap()
}

fn staged() -> Vec<LoadedCase> {
    corpus::load(&root().join("tests/fixtures/cases/hardening")).unwrap()
}

fn sandspec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sandspec"))
}

fn write_case(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("case.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_renamed_daemon_under_none_is_listed_in_the_json_report_with_its_finders() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("r.json");
    let out = sandspec()
        .args([
            "run",
            "--driver",
            "none",
            "--filter",
            "^escape.survivors.renamed-daemon$",
        ])
        .arg("--cases")
        .arg(root().join("conformance"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("SKIP") {
        eprintln!("skipped: {text}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let case = &v["cases"][0];
    assert_eq!(case["status"], "fail", "{case}");
    let survivors = case["survivors"].as_array().unwrap();
    assert_eq!(survivors.len(), 1, "{case}");
    // The daemon exec'd sleep under another name: nothing of the probe or
    // the interpreter is in it, and still it was found.
    assert_eq!(survivors[0]["comm"], "sleep", "{case}");
    let found_by: Vec<&str> = survivors[0]["found_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(!found_by.contains(&"argv"), "{found_by:?}");
    assert!(
        found_by.contains(&"cgroup") || found_by.contains(&"tree"),
        "{found_by:?}"
    );
    let pid = survivors[0]["pid"].as_i64().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "survivor {pid} was not killed"
    );
    assert!(
        v["survivor_tracking"].as_str().unwrap().contains("argv"),
        "{v}"
    );
    assert_eq!(
        case["refs"][0],
        "https://github.com/containers/bubblewrap/issues/142"
    );
}

#[test]
fn list_verbose_shows_the_file_and_refs() {
    let out = sandspec()
        .args(["list", "--verbose", "--cases"])
        .arg(root().join("conformance/terminal"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("refs: CVE-2017-5226 CVE-2019-10063"),
        "{text}"
    );
    assert!(text.contains("file: "), "{text}");
    let plain = sandspec()
        .args(["list", "--cases"])
        .arg(root().join("conformance/terminal"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("refs:"));
}

#[test]
fn unmet_architecture_and_sysctl_requirements_are_skips_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let case = write_case(
        d.path(),
        "\
id: t.requires
summary: s
requires:
  arch: [s390x]
  sysctl: {kernel.ostype: Plan9, kernel.sandspec_nonexistent: \"1\"}
run: {argv: [/bin/true]}
expect: {outcome: {exited: {code: 0}}}
",
    );
    let out = sandspec()
        .args(["run", "--driver", "none", "--cases"])
        .arg(&case)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("SKIP"), "{text}");
    assert!(text.contains("needs architecture s390x"), "{text}");
    assert!(
        text.contains("needs sysctl kernel.ostype = Plan9; it is Linux"),
        "{text}"
    );
    assert!(
        text.contains("no sysctl kernel.sandspec_nonexistent"),
        "{text}"
    );
}

#[test]
fn staged_hardening_cases_fail_without_a_sandbox_on_what_the_harness_saw() {
    let h = harness();
    let want = [
        (
            "net.unix.pathname-socket-outside-allowlist",
            "oracle unix_path to receive 0, it received 2",
        ),
        (
            "net.listen.autobind-reachable-from-host",
            "connected 1 (0.0.0.0:",
        ),
        ("ipc.sysv.shm-left-behind", "SysV shared memory segment"),
        ("fs.metadata.chmod-read-only-file", "it has 0777"),
        (
            "fs.metadata.chown-read-only-file-as-root",
            "owned by uid 65534 gid 65534",
        ),
    ];
    let cases = staged();
    assert_eq!(cases.len(), want.len());
    for (id, needle) in want {
        let lc = cases.iter().find(|c| c.case.id == id).unwrap();
        let r = h.run_case(lc, &mut DriverSlot::new(&NoneFactory));
        if r.status == Status::Skip {
            eprintln!("{id}: skipped: {:?}", r.reason);
            continue;
        }
        assert_eq!(r.status, Status::Fail, "{id}: {r:?}");
        let why = r.reason.unwrap_or_default();
        assert!(why.contains(needle), "{id}: {why}");
    }
}

#[test]
fn staged_hardening_cases_have_controls_that_pass() {
    let h = harness();
    for lc in staged() {
        let r = h.run_control(&lc, &mut DriverSlot::new(&NoneFactory));
        assert!(
            matches!(r.status, Status::Pass | Status::Skip),
            "{}: {r:?}",
            lc.case.id
        );
    }
}

#[test]
fn the_objects_a_run_leaves_are_removed_after_it() {
    let h = harness();
    let lc = staged()
        .into_iter()
        .find(|c| c.case.id == "ipc.sysv.shm-left-behind")
        .unwrap();
    let r = h.run_case(&lc, &mut DriverSlot::new(&NoneFactory));
    if r.status == Status::Skip {
        return;
    }
    let why = r.reason.unwrap_or_default();
    let id: i32 = why
        .rsplit("segment ")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no segment id in {why:?}"));
    let shm = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(
        !shm.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string())),
        "segment {id} is still there:\n{shm}"
    );
}
