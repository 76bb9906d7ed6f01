//! The protocol documentation, its JSON Schemas and sandspec's own serde
//! forms agree: every example in conformance/PROTOCOL.md validates against
//! the schema it is tagged with, malformed messages do not, and the messages
//! built from `Policy`, `Command` and `RunOutput` validate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use sandspec::corpus::case::Capability;
use sandspec::policy::{
    Command, Limits, Network, Outcome, Policy, PortRules, RunOutput, ScopeKind, SetupErrorKind,
    Size, Timeout,
};

const SCHEMAS: &[&str] = &[
    "hello-request",
    "hello-response",
    "run",
    "result",
    "error",
    "ping",
    "pong",
    "bye",
];

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = conformance()
        .join("protocol")
        .join(format!("{name}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    jsonschema::draft202012::new(&value)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(name: &str, instance: &Value) {
    let errs = errors(&schema(name), instance);
    assert!(
        errs.is_empty(),
        "{instance} does not validate against {name}: {errs:?}"
    );
}

#[track_caller]
fn assert_invalid(name: &str, instance: &Value) {
    assert!(
        !schema(name).is_valid(instance),
        "{instance} validates against {name} but must not"
    );
}

/// `(schema, line number, JSON line)` for every tagged example in
/// PROTOCOL.md: a `<!-- schema: NAME -->` line, then a ```json block.
fn documented_examples() -> Vec<(String, usize, String)> {
    let path = conformance().join("PROTOCOL.md");
    let text = std::fs::read_to_string(&path).expect("read PROTOCOL.md");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(rest) = l.strip_prefix("<!-- schema:") {
            let name = rest.trim_end_matches("-->").trim().to_string();
            assert_eq!(
                lines.get(i + 1).map(|s| s.trim()),
                Some("```json"),
                "PROTOCOL.md:{}: a schema tag must be followed by a ```json block",
                i + 1
            );
            i += 2;
            while i < lines.len() && lines[i].trim() != "```" {
                if !lines[i].trim().is_empty() {
                    out.push((name.clone(), i + 1, lines[i].to_string()));
                }
                i += 1;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn every_schema_compiles_and_has_a_documented_example() {
    let examples = documented_examples();
    for name in SCHEMAS {
        schema(name);
        assert!(
            examples.iter().any(|(n, _, _)| n == name),
            "PROTOCOL.md has no example tagged `schema: {name}`"
        );
    }
    for (name, line, _) in &examples {
        assert!(
            SCHEMAS.contains(&name.as_str()),
            "PROTOCOL.md:{line}: unknown schema {name:?}"
        );
    }
}

#[test]
fn documented_examples_validate_against_their_schemas() {
    for (name, line, text) in documented_examples() {
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: not JSON: {e}"));
        let errs = errors(&schema(&name), &v);
        assert!(
            errs.is_empty(),
            "PROTOCOL.md:{line} does not validate against {name}: {errs:?}"
        );
    }
}

#[test]
fn documented_run_examples_parse_as_policy_and_command() {
    for (name, line, text) in documented_examples() {
        if name != "run" {
            continue;
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value::<Policy>(v["policy"].clone())
            .unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: policy does not parse: {e}"));
        serde_json::from_value::<Command>(v["command"].clone())
            .unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: command does not parse: {e}"));
    }
}

#[test]
fn documented_result_examples_parse_as_run_output() {
    for (name, line, text) in documented_examples() {
        if name != "result" {
            continue;
        }
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("type");
        obj.remove("seq");
        serde_json::from_value::<RunOutput>(v)
            .unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: result does not parse: {e}"));
    }
}

#[test]
fn malformed_messages_are_rejected_by_the_schemas() {
    assert_invalid(
        "hello-request",
        &json!({"type":"hello","protocol":2,"suite":"0.1.0"}),
    );
    assert_invalid(
        "hello-response",
        &json!({"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":["fs.teleport"]}),
    );
    assert_invalid(
        "hello-response",
        &json!({"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":[],"extra":1}),
    );
    let policy = json!({"read":["/usr"]});
    assert_invalid(
        "run",
        &json!({"type":"run","seq":1,"case":"c","policy":policy,"command":{"argv":["a"],"script":{"interpreter":"sh","body":""}}}),
    );
    assert_invalid(
        "run",
        &json!({"type":"run","seq":1,"case":"c","policy":policy,"command":{}}),
    );
    assert_invalid(
        "run",
        &json!({"type":"run","seq":1,"case":"c","policy":{"raed":["/usr"]},"command":{"argv":["a"]}}),
    );
    assert_invalid(
        "run",
        &json!({"type":"run","seq":1,"case":"c","policy":{"network":"maybe"},"command":{"argv":["a"]}}),
    );
    assert_invalid(
        "run",
        &json!({"type":"run","seq":1,"case":"c","policy":{"network":{"tcp_connect":[70000]}},"command":{"argv":["a"]}}),
    );
    assert_invalid(
        "result",
        &json!({"type":"result","seq":1,"outcome":{"exited":{"code":0}},"stdout_b64":"","stderr_b64":"","duration_us":1,"exit":0}),
    );
    assert_invalid(
        "result",
        &json!({"type":"result","seq":1,"outcome":{"exited":{"code":0},"signaled":{"signal":9}},"stdout_b64":"","stderr_b64":"","duration_us":1}),
    );
    assert_invalid(
        "result",
        &json!({"type":"result","seq":1,"outcome":{"setup_error":{"kind":"cosmic_rays","message":""}},"stdout_b64":"","stderr_b64":"","duration_us":1}),
    );
    assert_invalid(
        "result",
        &json!({"type":"result","seq":1,"outcome":"timeout","stdout_b64":"not base64!","stderr_b64":"","duration_us":1}),
    );
    assert_invalid("error", &json!({"type":"error","message":"no seq"}));
    assert_invalid("bye", &json!({"type":"bye","now":true}));
    assert_invalid("ping", &json!({"type":"ping"}));
    assert_invalid("pong", &json!({"type":"pong","seq":-1}));
    assert_invalid("pong", &json!({"type":"pong","seq":1,"late":true}));
}

#[test]
fn ping_and_pong_from_sandspec_types_validate() {
    use sandspec::driver::protocol::{line, FromDriver, ToDriver};
    let ping: Value = serde_json::from_slice(&line(&ToDriver::Ping { seq: 7 })).unwrap();
    assert_valid("ping", &ping);
    let pong: Value = serde_json::from_slice(&line(&FromDriver::Pong { seq: 7 })).unwrap();
    assert_valid("pong", &pong);
}

#[test]
fn the_capability_vocabulary_matches_the_schema_both_ways() {
    // The vocabulary, by an exhaustive match in the library: adding a
    // capability without listing it there does not compile.
    // Less the ones the protocol cannot carry (they need fds handed over).
    let caps: Vec<Capability> = sandspec::driver::reference::all_capabilities()
        .into_iter()
        .filter(|c| !sandspec::driver::protocol::IN_PROCESS_ONLY.contains(c))
        .collect();
    let names: Vec<Value> = caps
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    assert_valid(
        "hello-response",
        &json!({"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":names}),
    );
    let path = conformance().join("protocol/hello-response.schema.json");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let listed = s["$defs"]["capability"]["enum"].as_array().unwrap();
    assert_eq!(listed.len(), caps.len(), "schema lists {listed:?}");
    for name in listed {
        serde_json::from_value::<Capability>(name.clone())
            .unwrap_or_else(|_| panic!("the schema lists {name}, which sandspec does not know"));
    }
}

fn full_policy() -> Policy {
    let mut env = BTreeMap::new();
    env.insert("LANG".to_string(), "C.UTF-8".to_string());
    Policy {
        read: vec!["/usr".into(), "/lib".into()],
        write: vec!["/tmp/scratch".into()],
        exec: vec!["/usr/bin/true".into()],
        network: Network::Ports(PortRules {
            tcp_connect: vec![80, 443],
            tcp_bind: vec![8080],
        }),
        scope: vec![ScopeKind::Signal, ScopeKind::AbstractUnixSocket],
        limits: Limits {
            memory: Some(Size(64 << 20)),
            processes: Some(16),
            open_files: Some(64),
            cpu_seconds: Some(5),
            output_bytes: Some(Size(1 << 20)),
        },
        timeout: Some(Timeout(Duration::from_millis(1500))),
        env,
        cwd: Some("/tmp/scratch".into()),
    }
}

fn run_message(policy: &Policy, command: &Command) -> Value {
    json!({"type":"run","seq":7,"case":"a.case","policy":policy,"command":command})
}

#[test]
fn run_messages_from_sandspec_types_validate() {
    let commands = [
        Command::argv(["/bin/true"]),
        Command::argv(["sh", "-c", "cat"]).with_stdin(b"bytes\x00\xff".to_vec()),
        Command::script("python3", "print('x')\n".repeat(1000)),
    ];
    let policies = [
        Policy::default(),
        full_policy(),
        Policy {
            network: Network::Allow,
            ..Policy::default()
        },
        Policy {
            network: Network::Deny,
            read: vec!["/".into()],
            ..Policy::default()
        },
    ];
    for p in &policies {
        for c in &commands {
            assert_valid("run", &run_message(p, c));
        }
    }
}

fn all_setup_error_kinds() -> Vec<SetupErrorKind> {
    vec![
        SetupErrorKind::LandlockUnavailable,
        SetupErrorKind::LandlockDisabled,
        SetupErrorKind::AbiTooLow,
        SetupErrorKind::InvalidPolicy,
        SetupErrorKind::PathError,
        SetupErrorKind::RestrictFailed,
        SetupErrorKind::SpawnFailed,
        SetupErrorKind::Other,
    ]
}

#[test]
fn run_output_messages_from_sandspec_types_validate() {
    let mut outcomes = vec![
        Outcome::Exited { code: 0 },
        Outcome::Exited { code: 255 },
        Outcome::Signaled { signal: 9 },
        Outcome::Timeout,
    ];
    for kind in all_setup_error_kinds() {
        outcomes.push(Outcome::SetupError {
            kind,
            message: format!("failed because {kind}"),
        });
    }
    for outcome in outcomes {
        let out = RunOutput {
            outcome,
            stdout: b"out\xff".to_vec(),
            stderr: Vec::new(),
            output_truncated: true,
            filtered_paths: vec!["/missing".into()],
            duration: Duration::from_micros(1234),
        };
        let mut v = serde_json::to_value(&out).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.insert("type".into(), json!("result"));
        obj.insert("seq".into(), json!(3));
        assert_valid("result", &v);
    }
}

#[test]
fn setup_error_kinds_match_the_schema() {
    let path = conformance().join("protocol/result.schema.json");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let variants = s["$defs"]["outcome"]["oneOf"].as_array().unwrap();
    let listed: Vec<String> = variants
        .iter()
        .find_map(|v| v["properties"]["setup_error"]["properties"]["kind"]["enum"].as_array())
        .expect("the schema lists setup error kinds")
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let known: Vec<String> = all_setup_error_kinds()
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(listed, known);
}
