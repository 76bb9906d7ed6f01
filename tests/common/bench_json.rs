//! Helpers for tests that run `sandspec bench` and read its output.

use std::process::Output;

use serde_json::Value;

/// A command's exit status and both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The entry of driver `name` in a `sandspec bench --json` report.
pub fn driver<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["driver"] == name)
        .unwrap_or_else(|| panic!("no driver {name} in {v}"))
}
