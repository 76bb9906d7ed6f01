//! What the harness observes by its own means, end to end: survivors in the
//! JSON report, refs in `sandspec list --verbose`, host requirements as
//! skips, and the corpus cases built on the new observers, which fail
//! without a sandbox on the harness's own observation alone.

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

fn corpus_case(id: &str) -> LoadedCase {
    corpus::load(&root().join("conformance"))
        .unwrap()
        .into_iter()
        .find(|c| c.case.id == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

/// The case with only what the harness observes itself left to check: no
/// outcome, probe or output matchers (the command's word).
fn observed_only(id: &str) -> LoadedCase {
    let mut lc = corpus_case(id);
    let e = &mut lc.case.expect;
    e.outcome = None;
    e.probe = None;
    e.stdout = None;
    e.stderr = None;
    lc
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
            "^(escape.rename-daemon.after-exit|terminal.tiocsti.stdin-as-root)$",
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
    let by_id = |id: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let case = &by_id("escape.rename-daemon.after-exit");
    assert_eq!(case["status"], "fail", "{case}");
    let survivors = case["survivors"].as_array().unwrap();
    assert_eq!(survivors.len(), 1, "{case}");
    // The daemon renamed itself (comm and argv): nothing of the probe is
    // in it, and still it was found.
    assert_eq!(survivors[0]["comm"], "kworker/0:1", "{case}");
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
    let tty = by_id("terminal.tiocsti.stdin-as-root");
    assert_eq!(tty["refs"][0], "CVE-2017-5226", "{tty}");
    assert!(case.get("refs").is_none(), "{case}");
    // Run as root, the terminal case ran and was caught by the oracle.
    if nix::unistd::geteuid().is_root() {
        assert_eq!(tty["status"], "fail", "{tty}");
    }
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
    assert!(text.contains("refs: CVE-2017-5226 CVE-2016-7545"), "{text}");
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
fn escapes_under_none_are_seen_by_the_harness_itself() {
    let h = harness();
    let want = [
        (
            "net.deny.unix-pathname-stream",
            "oracle unix_path to receive 0, it received 1",
        ),
        (
            "net.deny.unix-pathname-dgram",
            "oracle unix_path to receive 0, it received 1",
        ),
        ("net.deny.listen-autobind", "connected 1 (0.0.0.0:"),
        ("ipc.sysv.shm", "SysV shared memory segment"),
        ("ipc.sysv.msg", "SysV message queue"),
        ("ipc.sysv.sem", "SysV semaphore set"),
        ("ipc.mq.create", "POSIX message queue /"),
        ("ipc.keyring.add-user-key", "kernel object(s), it left 1"),
        ("fs.metadata.chmod-read-only", "it has 0777"),
        (
            "fs.metadata.chown-read-only",
            "owned by uid 65534 gid 65534",
        ),
        (
            "fds.inherited.write-to-leaked-file",
            "it contains \"leaked\\n\"",
        ),
        (
            "terminal.tiocsti.stdin-as-root",
            "12 byte(s) of terminal input: \"touch pwned\\n\"",
        ),
        ("escape.rename-daemon.after-exit", "kworker/0:1"),
        ("escape.exec-daemon.after-exit", "(sleep, by "),
    ];
    for (id, needle) in want {
        let lc = observed_only(id);
        let r = h.run_case(&lc, &mut DriverSlot::new(&NoneFactory));
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
fn the_objects_a_run_leaves_are_removed_after_it() {
    let h = harness();
    let lc = corpus_case("ipc.sysv.shm");
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
