//! The Python protocol library the shipped drivers share
//! (conformance/drivers/_common/sandspec_driver.py), driven with a fake
//! backend: every answer validates against the schemas, and faults are
//! reported the way PROTOCOL.md says (errors carry the seq, unknown fields
//! are refused, setup failures become results, output is capped).
//!
//! Needs only python3 (no peer). Without python3 on PATH each test says it
//! was skipped and why.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const FAKE_BACKEND: &str = r#"
import os, sys
sys.path.insert(0, os.environ["SANDSPEC_PYLIB"])
import sandspec_driver as sd

class Fake:
    def hello(self):
        return {"name": "fake", "version": "1", "capabilities": ["fs.read", "stdin"]}

    def run(self, req):
        if req.argv[0] == "refuse":
            raise sd.Unsupported("limits.cpu_seconds")
        if req.argv[0] == "setup":
            raise sd.SetupFailure("path_error", "cannot open /x")
        if req.argv[0] == "crash":
            raise RuntimeError("backend bug")
        if req.argv[0] == "flood":
            return sd.result(sd.exited(0), b"x" * 100, b"", cap=req.output_bytes)
        if req.argv[0] == "stdin":
            with sd.stdin_as_fd0(req.stdin):
                data = os.read(0, 100)
            return sd.result(sd.exited(0), data)
        if req.argv[0] == "cwd":
            return sd.result(sd.exited(0), os.getcwd().encode())
        return sd.result(sd.exited(0))

sys.exit(sd.serve(Fake, "fake"))
"#;

fn python() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("python3"))
            .find(|p| p.is_file())
    })
}

/// Sends `lines` to the fake driver; returns its answers and exit code.
fn converse(lines: &[&str]) -> Option<(Vec<Value>, i32)> {
    let Some(py) = python() else {
        eprintln!("skipped: python3 is not on PATH (the Python drivers need it)");
        return None;
    };
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/drivers/_common");
    let mut child = Command::new(py)
        .arg("-c")
        .arg(FAKE_BACKEND)
        .env("SANDSPEC_PYLIB", lib)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3");
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().expect("wait for the fake driver");
    let answers = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect::<Vec<Value>>();
    for a in &answers {
        let schema = match a["type"].as_str() {
            Some("hello") => "hello-response",
            Some("result") => "result",
            Some("error") => "error",
            Some("pong") => "pong",
            other => panic!("unexpected message type {other:?}: {a}"),
        };
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("conformance/protocol/{schema}.schema.json"));
        let s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let v = jsonschema::draft202012::new(&s).unwrap();
        let errs: Vec<String> = v.iter_errors(a).map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{a} is not a valid {schema}: {errs:?}");
    }
    Some((answers, out.status.code().unwrap_or(-1)))
}

const HELLO: &str = r#"{"type":"hello","protocol":1,"suite":"t"}"#;

fn run(seq: u64, argv: &[&str]) -> String {
    json!({"type":"run","seq":seq,"case":"c","policy":{"read":["/usr"]},"command":{"argv":argv}})
        .to_string()
}

#[test]
fn a_ping_gets_a_pong_with_its_seq_between_runs() {
    let Some((a, code)) = converse(&[
        HELLO,
        r#"{"type":"ping","seq":1}"#,
        &run(2, &["ok"]),
        r#"{"type":"ping","seq":3}"#,
        r#"{"type":"bye"}"#,
    ]) else {
        return;
    };
    assert_eq!(a.len(), 4, "{a:?}");
    assert_eq!(a[1], json!({"type":"pong","seq":1}));
    assert_eq!(a[2]["type"], "result");
    assert_eq!(a[3], json!({"type":"pong","seq":3}));
    assert_eq!(code, 0);
}

#[test]
fn a_conversation_gets_one_valid_answer_per_request_and_exits_zero_on_bye() {
    let Some((a, code)) = converse(&[
        HELLO,
        &run(1, &["ok"]),
        &run(2, &["ok"]),
        r#"{"type":"bye"}"#,
    ]) else {
        return;
    };
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a[0]["driver"]["name"], "fake");
    assert_eq!(a[1]["seq"], 1);
    assert_eq!(a[2]["seq"], 2);
    assert_eq!(code, 0);
}

#[test]
fn another_protocol_version_is_refused_with_seq_zero_and_a_nonzero_exit() {
    let Some((a, code)) = converse(&[r#"{"type":"hello","protocol":2,"suite":"t"}"#]) else {
        return;
    };
    assert_eq!(a[0]["type"], "error");
    assert_eq!(a[0]["seq"], 0);
    assert!(a[0]["message"].as_str().unwrap().contains("version 2"));
    assert_ne!(code, 0);
}

#[test]
fn unknown_policy_fields_are_refused_not_ignored() {
    let bad = json!({"type":"run","seq":4,"case":"c","policy":{"read":["/usr"],"devices":["/dev/kvm"]},"command":{"argv":["ok"]}});
    let Some((a, _)) = converse(&[HELLO, &bad.to_string()]) else {
        return;
    };
    assert_eq!(a[1]["type"], "error");
    assert_eq!(a[1]["seq"], 4);
    assert!(
        a[1]["message"].as_str().unwrap().contains("devices"),
        "{}",
        a[1]
    );
}

#[test]
fn garbage_gets_an_error_and_the_driver_stays_usable() {
    let Some((a, _)) = converse(&[HELLO, "this is not json", &run(5, &["ok"])]) else {
        return;
    };
    assert_eq!(a[1]["type"], "error");
    assert_eq!(a[1]["seq"], 0);
    assert_eq!(a[2]["type"], "result");
    assert_eq!(a[2]["seq"], 5);
}

#[test]
fn setup_failures_and_unsupported_policies_are_results_and_bugs_are_errors() {
    let Some((a, _)) = converse(&[
        HELLO,
        &run(1, &["refuse"]),
        &run(2, &["setup"]),
        &run(3, &["crash"]),
    ]) else {
        return;
    };
    assert_eq!(a[1]["outcome"]["setup_error"]["kind"], "invalid_policy");
    assert!(a[1]["outcome"]["setup_error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.cpu_seconds"));
    assert_eq!(a[2]["outcome"]["setup_error"]["kind"], "path_error");
    assert_eq!(a[3]["type"], "error");
    assert_eq!(a[3]["seq"], 3);
    assert!(a[3]["message"].as_str().unwrap().contains("backend bug"));
}

#[test]
fn output_is_cut_at_the_policy_cap_and_marked_truncated() {
    let capped = json!({"type":"run","seq":1,"case":"c","policy":{"limits":{"output_bytes":10}},"command":{"argv":["flood"]}});
    let Some((a, _)) = converse(&[HELLO, &capped.to_string()]) else {
        return;
    };
    assert_eq!(a[1]["stdout_b64"], "eHh4eHh4eHh4eA==");
    assert_eq!(a[1]["output_truncated"], true);
}

#[test]
fn stdin_bytes_reach_fd_zero_during_the_run_only() {
    let with_stdin = json!({"type":"run","seq":1,"case":"c","policy":{},"command":{"argv":["stdin"],"stdin_b64":"aGVsbG8="}});
    let Some((a, _)) = converse(&[HELLO, &with_stdin.to_string(), &run(2, &["stdin"])]) else {
        return;
    };
    assert_eq!(a[1]["stdout_b64"], "aGVsbG8=");
    // The next run without stdin reads EOF, not the leftover or the protocol.
    assert_eq!(a[2]["stdout_b64"], "");
}

#[test]
fn the_driver_runs_in_the_root_directory() {
    let Some((a, _)) = converse(&[HELLO, &run(1, &["cwd"])]) else {
        return;
    };
    assert_eq!(a[1]["stdout_b64"], "Lw==");
}
