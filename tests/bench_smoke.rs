//! `sandspec bench`, run cheaply: the JSON has the documented shape, every
//! figure is a positive number, the round trip is measured by the method
//! the driver supports, and bad input is exit 2. No test here asserts how
//! long anything took. (The fallback for drivers without `ping` is checked
//! in harness_faults.rs, whose binary can play such a driver.)

#[path = "common/bench_json.rs"]
mod bench_json;

use std::path::PathBuf;
use std::process::Output;

use bench_json::{driver, text};
use serde_json::Value;

fn sandspec() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandspec"))
}

fn has_landlock() -> bool {
    sandspec::kernel::landlock().abi().is_some()
}

/// Runs `sandspec bench ARGS --json FILE`; the output and the parsed JSON
/// (`Null` when no file was written).
fn bench(args: &[&str]) -> (Output, Value) {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("bench.json");
    let out = std::process::Command::new(sandspec())
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let v = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out, v)
}

fn positive(v: &Value, field: &str) -> f64 {
    let x = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {v}"));
    assert!(x > 0.0, "{field} = {x} is not positive in {v}");
    x
}

fn assert_machine_facts(v: &Value) {
    let m = &v["machine"];
    assert!(!m["kernel"]["release"].as_str().unwrap().is_empty(), "{m}");
    assert!(m["cpus"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(m["load_before"].as_array().map(Vec::len), Some(3), "{m}");
}

#[test]
fn bench_json_has_bare_and_each_driver_with_positive_figures() {
    let (out, v) = bench(&[
        "-n",
        "3",
        "--warmup",
        "1",
        "--driver",
        "none",
        "--driver",
        "reference",
        "--driver",
        "reference-proto",
    ]);
    assert_eq!(v["rounds"], 3, "{}", text(&out));
    assert_machine_facts(&v);
    assert_eq!(v["command"], serde_json::json!(["/bin/true"]));
    for f in ["median_us", "p90_us", "ratio"] {
        positive(&v["bare"], f);
    }
    assert_eq!(v["bare"]["summary"]["samples"], 3);

    let none = driver(&v, "none");
    assert_eq!(none["roundtrip_method"], "in_process");
    assert_eq!(none["roundtrip_us"], 0.0);
    for f in ["median_us", "p90_us", "ratio"] {
        positive(none, f);
    }
    assert_eq!(none["net"]["samples"], 3);

    if has_landlock() {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let r = driver(&v, "reference");
        assert_eq!(r["roundtrip_method"], "in_process");
        for f in ["median_us", "p90_us", "ratio"] {
            positive(r, f);
        }
        // Behind the protocol: `sandspec driver` answers ping.
        let p = driver(&v, "reference-proto");
        assert_eq!(p["roundtrip_method"], "ping", "{p}");
        positive(p, "roundtrip_us");
        positive(&p["raw"], "median_us");
        assert_eq!(p["roundtrip"]["samples"], 3, "{p}");
        assert_eq!(p["backend"], "sandspec-reference 0.1.0");
        assert!(v["skipped"].as_array().unwrap().is_empty(), "{v}");
        let table = String::from_utf8_lossy(&out.stdout);
        for row in ["bare", "none", "reference", "reference-proto"] {
            assert!(
                table.lines().any(|l| l.starts_with(row)),
                "no {row} row:\n{table}"
            );
        }
    } else {
        // Without Landlock the reference sandbox refuses to start: listed
        // with the reason, and the run is a failure.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let skipped = v["skipped"].as_array().unwrap();
        let r = skipped.iter().find(|s| s["driver"] == "reference").unwrap();
        assert_eq!(r["stage"], "check");
        assert!(
            r["reason"].as_str().unwrap().contains("setup_error")
                || r["reason"].as_str().unwrap().contains("SetupError"),
            "{r}"
        );
    }
}

#[test]
fn a_driver_that_does_not_start_is_skipped_and_the_others_are_measured() {
    let (out, v) = bench(&["-n", "2", "--driver", "none", "--driver-cmd", "exit 3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(v["drivers"].as_array().unwrap().len(), 1);
    let s = &v["skipped"][0];
    assert_eq!(s["driver"], "exit 3");
    assert_eq!(s["stage"], "handshake");
    assert!(
        s["reason"].as_str().unwrap().contains("exit status: 3"),
        "{s}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped: exit 3"));
}

#[test]
fn no_working_driver_is_exit_1() {
    let (out, v) = bench(&["-n", "1", "--driver-cmd", "exit 3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(v["drivers"].as_array().unwrap().is_empty());
}

#[test]
fn an_unknown_driver_name_is_exit_2_and_named() {
    let (out, v) = bench(&["-n", "1", "--driver", "no-such-sandbox"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-sandbox"),
        "{}",
        text(&out)
    );
    assert_eq!(v, Value::Null, "no report is written on bad input");
    let (out, _) = bench(&["-n", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn scaling_json_has_a_row_per_size_and_thread_count() {
    let (out, v) = bench(&[
        "--scaling",
        "-n",
        "2",
        "--warmup",
        "0",
        "--paths",
        "1,3",
        "--threads",
        "1,2",
        "--spawns",
        "2",
        "--bursts",
        "1",
        "--memory",
        "0,2",
        "--memory-rounds",
        "2",
    ]);
    if !has_landlock() {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("failed to set up the reference sandbox"),
            "{}",
            text(&out)
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_machine_facts(&v);
    positive(&v["bare"], "median_us");
    let paths: Vec<u64> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["paths"].as_u64().unwrap())
        .collect();
    assert_eq!(paths, [1, 3]);
    for r in v["paths"].as_array().unwrap() {
        for f in [
            "median_us",
            "p90_us",
            "ratio",
            "build_and_spawn_us",
            "build_and_spawn_ratio",
        ] {
            positive(r, f);
        }
        positive(&r["build"], "median_us");
        assert_eq!(r["spawn"]["samples"], 2, "{r}");
        assert_eq!(r["build"]["samples"], 2, "{r}");
    }
    let threads: Vec<u64> = v["concurrency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, [1, 2]);
    for r in v["concurrency"].as_array().unwrap() {
        for f in [
            "median_us",
            "p90_us",
            "ratio",
            "per_second",
            "bare_per_second",
        ] {
            positive(r, f);
        }
        // Two spawns per burst, split across the threads.
        assert_eq!(r["spawns"], 2, "{r}");
        assert_eq!(r["bare"]["samples"], 2, "{r}");
    }
    let mib: Vec<u64> = v["memory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mib"].as_u64().unwrap())
        .collect();
    assert_eq!(mib, [0, 2]);
    for r in v["memory"].as_array().unwrap() {
        for f in ["median_us", "p90_us", "ratio"] {
            positive(r, f);
        }
        assert_eq!(r["sandbox"]["samples"], 2, "{r}");
        assert_eq!(r["bare"]["samples"], 2, "{r}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    for part in ["allowlisted paths", "concurrent spawns", "caller's heap"] {
        assert!(table.contains(part), "no {part} table:\n{table}");
    }
}
