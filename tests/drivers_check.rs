//! `sandspec driver-check`: a working driver passes with the command to run
//! the corpus; a driver whose command can read the protocol stream, and one
//! that prints garbage, fail with a plain-words hint.
//!
//! The drivers here are small Python programs; without python3 on PATH each
//! test says it was skipped and why.

use std::path::PathBuf;
use std::process::Command;

const GOOD: &str = r#"
import base64, json, subprocess, sys, time
def send(m): print(json.dumps(m), flush=True)
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "hello":
        send({"type": "hello", "protocol": 1, "driver": {"name": "plain", "version": "1"}, "capabilities": []})
    elif m["type"] == "run":
        t = time.monotonic()
        p = subprocess.run(m["command"]["argv"], capture_output=True, stdin=subprocess.DEVNULL)
        send({"type": "result", "seq": m["seq"], "outcome": {"exited": {"code": p.returncode}},
              "stdout_b64": base64.b64encode(p.stdout).decode(), "stderr_b64": "",
              "duration_us": int((time.monotonic() - t) * 1e6)})
    elif m["type"] == "bye":
        break
"#;

fn python() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("python3"))
            .find(|p| p.is_file())
    })
}

/// Runs driver-check against `source` (a Python driver); (exit code, stdout).
fn check(source: &str) -> Option<(i32, String)> {
    if python().is_none() {
        eprintln!("skipped: python3 is not on PATH");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driver.py");
    std::fs::write(&path, source).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sandspec"))
        .arg("driver-check")
        .arg("--driver-cmd")
        .arg(format!("python3 {}", path.display()))
        .output()
        .expect("run sandspec driver-check");
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn a_working_driver_passes_and_is_told_how_to_run_the_corpus() {
    let Some((code, out)) = check(GOOD) else {
        return;
    };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("handshake: ok"), "{out}");
    assert!(out.contains("run `cat` with no stdin: ok"), "{out}");
    assert!(out.contains("sandspec run --driver-cmd 'python3 "), "{out}");
}

#[test]
fn a_command_that_inherits_the_protocol_stream_is_caught() {
    // The same driver, but the command inherits the driver's stdin: `cat`
    // blocks reading the harness's pipe.
    let leaky = GOOD.replace(", stdin=subprocess.DEVNULL", "");
    assert_ne!(leaky, GOOD);
    let Some((code, out)) = check(&leaky) else {
        return;
    };
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("run `echo sandspec-driver-check`: ok"),
        "{out}"
    );
    assert!(out.contains("run `cat` with no stdin: FAILED"), "{out}");
    assert!(out.contains("inherits the driver's stdin"), "{out}");
}

#[test]
fn garbage_on_stdout_is_explained() {
    let noisy = GOOD.replace(
        "for line in sys.stdin:",
        "print('starting up', flush=True)\nfor line in sys.stdin:",
    );
    let Some((code, out)) = check(&noisy) else {
        return;
    };
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not JSON"), "{out}");
    assert!(out.contains("log to stderr"), "{out}");
}
