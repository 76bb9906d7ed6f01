//! The driver protocol, version 1: JSON lines over the driver's stdin and
//! stdout (conformance/PROTOCOL.md is the reference for implementers).
//!
//! ```text
//! -> {"type":"hello","protocol":1,"suite":"0.1.0"}
//! <- {"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":["fs.read"]}
//! -> {"type":"run","seq":1,"case":"fs.read.denied","policy":{..},"command":{..}}
//! <- {"type":"result","seq":1,"outcome":{"exited":{"code":0}},"stdout_b64":"","stderr_b64":"",
//!     "output_truncated":false,"filtered_paths":[],"duration_us":1234}
//!    or {"type":"error","seq":1,"message":"why the backend could not run it"}
//! -> {"type":"ping","seq":2}          (optional, used by `sandspec bench`)
//! <- {"type":"pong","seq":2}
//!    or {"type":"error","seq":2,"message":"ping is not supported"}
//! -> {"type":"bye"}
//! ```
//!
//! Parsing of what a driver says is strict: unknown message types, unknown
//! fields, unknown capabilities and other protocol versions are errors that
//! name what was wrong.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Hello;
use crate::corpus::case::Capability;
use crate::policy::{Command, Policy, RunOutput};

/// The protocol version this harness speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Capabilities that need file descriptors handed to the driver, which the
/// protocol cannot do.
pub const IN_PROCESS_ONLY: &[Capability] = &[Capability::Terminal, Capability::FdsInherit];

/// Longest line accepted from a driver (a result carries both output
/// streams, base64-encoded, each up to the policy's output cap).
pub const MAX_LINE_BYTES: usize = 128 << 20;

/// A message from the harness to a driver. Unknown top-level fields are
/// ignored (the harness may add optional ones within a version); `policy`
/// and `command` stay strict, since an ignored restriction is a hole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToDriver {
    /// The opening handshake.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The sandspec version running the suite.
        suite: String,
    },
    /// Run one case.
    Run {
        /// Echoed in the answer.
        seq: u64,
        /// The case id, for the driver's logs.
        case: String,
        /// The policy, fully expanded.
        policy: Box<Policy>,
        /// The command, fully expanded.
        command: Command,
    },
    /// A no-op the driver answers with [`FromDriver::Pong`] without running
    /// anything: `sandspec bench` times it to subtract the protocol's round
    /// trip. Optional for drivers: one that does not implement it answers
    /// `error` with the same seq.
    Ping {
        /// Echoed in the pong.
        seq: u64,
    },
    /// The harness is done; the driver should exit.
    Bye,
}

/// The name and version a driver gives in its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverInfo {
    /// Backend name.
    pub name: String,
    /// Backend version.
    pub version: String,
}

/// A message from a driver to the harness (what a driver writes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromDriver {
    /// The handshake answer.
    Hello {
        /// The protocol version the driver speaks.
        protocol: u32,
        /// Who the driver is.
        driver: DriverInfo,
        /// What it claims to enforce.
        capabilities: BTreeSet<Capability>,
        /// The lowest Landlock ABI the backend runs on at all (optional;
        /// see [`Hello::requires_landlock_abi`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        requires_landlock_abi: Option<u32>,
    },
    /// The outcome of a run.
    Result {
        /// The run's seq.
        seq: u64,
        /// What happened.
        #[serde(flatten)]
        output: RunOutput,
    },
    /// The driver could not run the request (it stays usable).
    Error {
        /// The run's seq.
        seq: u64,
        /// Why.
        message: String,
    },
    /// The answer to a [`ToDriver::Ping`].
    Pong {
        /// The ping's seq.
        seq: u64,
    },
}

/// A parsed answer from a driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The handshake (already checked for version and capabilities).
    Hello(Hello),
    /// A run's outcome.
    Result {
        /// The seq the driver answered.
        seq: u64,
        /// What happened.
        output: RunOutput,
    },
    /// The driver's own error for a run (or for a ping it does not
    /// implement).
    Error {
        /// The seq the driver answered.
        seq: u64,
        /// Its message.
        message: String,
    },
    /// The answer to a ping.
    Pong {
        /// The seq the driver answered.
        seq: u64,
    },
}

const RESULT_FIELDS: &[&str] = &[
    "type",
    "seq",
    "outcome",
    "stdout_b64",
    "stderr_b64",
    "output_truncated",
    "filtered_paths",
    "duration_us",
];

/// A JSON value parsed like `serde_json::Value`, except that an object
/// with the same key twice, at any depth, is an error: readers disagree on
/// which of the two counts (serde_json keeps the last, others the first),
/// so a message that says two things must not be read as either.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Strict, D::Error> {
                Strict::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                let mut v = Vec::new();
                while let Some(Strict(x)) = a.next_element()? {
                    v.push(x);
                }
                Ok(Strict(Value::Array(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    let Strict(v) = a.next_value()?;
                    if m.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key {:?}",
                            crate::escape::line(&k)
                        )));
                    }
                    m.insert(k, v);
                }
                Ok(Strict(Value::Object(m)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one protocol line into a JSON value, refusing duplicate keys at
/// any depth (see [`Strict`]). For both ends of the protocol.
pub fn strict_json(line: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(line).map(|Strict(v)| v)
}

/// Parses one line from a driver; the error says what is wrong with it, on
/// one line (the driver's text it quotes may hold newlines and escapes).
pub fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    parse_reply_lines(line).map_err(|e| {
        if e.chars().any(char::is_control) {
            e.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            e
        }
    })
}

fn parse_reply_lines(line: &[u8]) -> Result<Reply, String> {
    let v: Value = strict_json(line)
        .map_err(|e| format!("printed a line that is not JSON ({e}): {}", snippet(line)))?;
    let Value::Object(mut obj) = v else {
        return Err(format!(
            "printed JSON that is not an object: {}",
            snippet(line)
        ));
    };
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err("sent a message whose \"type\" is not a string".into()),
        None => {
            return Err(format!(
                "sent a message without \"type\": {}",
                snippet(line)
            ))
        }
    };
    match ty.as_str() {
        "hello" => parse_hello(obj).map(Reply::Hello),
        "result" => {
            only_fields(&obj, RESULT_FIELDS, "result")?;
            let seq = take_seq(&mut obj)?;
            obj.remove("type");
            let output: RunOutput = serde_json::from_value(Value::Object(obj))
                .map_err(|e| format!("sent a malformed result for seq {seq}: {e}"))?;
            Ok(Reply::Result { seq, output })
        }
        "error" => {
            only_fields(&obj, &["type", "seq", "message"], "error")?;
            let seq = take_seq(&mut obj)?;
            let message = match obj.remove("message") {
                Some(Value::String(m)) => m,
                _ => return Err(format!("sent an error for seq {seq} without a message")),
            };
            Ok(Reply::Error { seq, message })
        }
        "pong" => {
            only_fields(&obj, &["type", "seq"], "pong")?;
            Ok(Reply::Pong {
                seq: take_seq(&mut obj)?,
            })
        }
        other => Err(format!("sent an unknown message type {other:?}")),
    }
}

fn parse_hello(obj: Map<String, Value>) -> Result<Hello, String> {
    only_fields(
        &obj,
        &[
            "type",
            "protocol",
            "driver",
            "capabilities",
            "requires_landlock_abi",
        ],
        "hello",
    )?;
    match obj.get("protocol").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "claims protocol version {v}; this harness speaks version {PROTOCOL_VERSION}"
            ))
        }
        None => return Err("sent a hello without a numeric \"protocol\" version".into()),
    }
    let info: DriverInfo =
        serde_json::from_value(obj.get("driver").cloned().unwrap_or_default())
            .map_err(|e| format!("sent a hello with a malformed \"driver\" ({e})"))?;
    let Some(Value::Array(caps)) = obj.get("capabilities") else {
        return Err("sent a hello without a \"capabilities\" list".into());
    };
    let mut capabilities = BTreeSet::new();
    for c in caps {
        let cap: Capability = serde_json::from_value(c.clone())
            .map_err(|_| format!("claims an unknown capability {c}"))?;
        if IN_PROCESS_ONLY.contains(&cap) {
            return Err(format!(
                "claims capability {c}, which only an in-process driver can have: protocol \
                 version {PROTOCOL_VERSION} passes no file descriptors, so the harness cannot \
                 hand an external driver a terminal or inherited fds"
            ));
        }
        capabilities.insert(cap);
    }
    let requires_landlock_abi = match obj.get("requires_landlock_abi") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(format!(
                    "sent a hello whose \"requires_landlock_abi\" is not a Landlock ABI \
                     (an integer of at least 1): {v}"
                ))
            }
        },
    };
    Ok(Hello {
        name: info.name,
        version: info.version,
        capabilities,
        requires_landlock_abi,
    })
}

fn only_fields(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("sent a {what} with an unknown field {k:?}")),
        None => Ok(()),
    }
}

fn take_seq(obj: &mut Map<String, Value>) -> Result<u64, String> {
    obj.remove("seq")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| "sent a message without a numeric \"seq\"".to_string())
}

/// The start of a line, for error messages.
pub fn snippet(line: &[u8]) -> String {
    const MAX: usize = 200;
    let s = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    let s = s.trim_end();
    if line.len() > MAX {
        format!("{s:?}…")
    } else {
        format!("{s:?}")
    }
}

/// The `run` message for `req`, as one line (with the newline).
pub fn run_line(req: &super::RunRequest) -> Vec<u8> {
    #[derive(Serialize)]
    struct RunMsg<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        seq: u64,
        case: &'a str,
        policy: &'a Policy,
        command: &'a Command,
    }
    line(&RunMsg {
        ty: "run",
        seq: req.seq,
        case: &req.case,
        policy: &req.policy,
        command: &req.command,
    })
}

/// Any message as one JSON line.
pub fn line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these types cannot fail: no maps with non-string keys, no
    // fallible custom serialisers.
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|e| {
        format!("{{\"type\":\"error\",\"seq\":0,\"message\":\"failed to serialise: {e}\"}}")
            .into_bytes()
    });
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_driver_cannot_claim_what_needs_fds_handed_over() {
        for cap in ["terminal", "fds.inherit"] {
            let line = format!(
                r#"{{"type":"hello","protocol":1,"driver":{{"name":"x","version":"1"}},"capabilities":["fs.read","{cap}"]}}"#
            );
            let e = parse_reply(line.as_bytes()).unwrap_err();
            assert!(
                e.contains(cap) && e.contains("only an in-process driver"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_hello_with_the_wrong_version_names_both_versions() {
        let e = parse_reply(
            br#"{"type":"hello","protocol":2,"driver":{"name":"x","version":"1"},"capabilities":[]}"#,
        )
        .unwrap_err();
        assert!(e.contains("version 2") && e.contains("version 1"), "{e}");
    }

    #[test]
    fn an_unknown_capability_is_named() {
        let e = parse_reply(
            br#"{"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":["fs.read","fs.teleport"]}"#,
        )
        .unwrap_err();
        assert!(e.contains("fs.teleport"), "{e}");
    }

    #[test]
    fn requires_landlock_abi_is_optional_and_must_be_an_abi() {
        let hello = |extra: &str| {
            parse_reply(format!(
                r#"{{"type":"hello","protocol":1,"driver":{{"name":"x","version":"1"}},"capabilities":[]{extra}}}"#
            ).as_bytes())
        };
        let Ok(Reply::Hello(h)) = hello("") else {
            panic!("no hello")
        };
        assert_eq!(h.requires_landlock_abi, None);
        let Ok(Reply::Hello(h)) = hello(r#","requires_landlock_abi":6"#) else {
            panic!("no hello")
        };
        assert_eq!(h.requires_landlock_abi, Some(6));
        for bad in ["0", "-1", "\"6\"", "1.5"] {
            let e = hello(&format!(r#","requires_landlock_abi":{bad}"#)).unwrap_err();
            assert!(e.contains("requires_landlock_abi"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_result_parses_into_run_output_and_rejects_unknown_fields() {
        let ok = parse_reply(
            br#"{"type":"result","seq":3,"outcome":"timeout","stdout_b64":"aGk=","stderr_b64":"","output_truncated":false,"filtered_paths":[],"duration_us":5}"#,
        )
        .unwrap();
        match ok {
            Reply::Result { seq, output } => {
                assert_eq!(seq, 3);
                assert_eq!(output.stdout, b"hi");
                assert_eq!(output.outcome, crate::policy::Outcome::Timeout);
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = parse_reply(
            br#"{"type":"result","seq":3,"outcome":"timeout","stdout_b64":"","stderr_b64":"","duration_us":5,"exit":0}"#,
        )
        .unwrap_err();
        assert!(e.contains("\"exit\""), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for line in [
            &br#"{"type":"pong","seq":1,"seq":2}"#[..],
            br#"{"type":"result","seq":3,"outcome":{"exited":{"code":0,"code":1}},"stdout_b64":"","stderr_b64":"","duration_us":5}"#,
            br#"{"type":"hello","protocol":1,"driver":{"name":"x","version":"1"},"capabilities":[],"type":"hello"}"#,
        ] {
            let e = parse_reply(line).unwrap_err();
            assert!(e.contains("duplicate key"), "{e}");
        }
        // The same key in sibling objects is fine.
        let ok = br#"{"type":"result","seq":3,"outcome":{"exited":{"code":0}},"stdout_b64":"","stderr_b64":"","filtered_paths":[],"duration_us":5}"#;
        assert!(parse_reply(ok).is_ok());
        let v = strict_json(br#"[{"a":1},{"a":2.5,"b":[null,true,-3,"s"]}]"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"a":1},{"a":2.5,"b":[null,true,-3,"s"]}])
        );
    }

    #[test]
    fn garbage_is_reported_with_the_line() {
        let e = parse_reply(b"Segmentation fault (core dumped)").unwrap_err();
        assert!(e.contains("not JSON") && e.contains("Segmentation"), "{e}");
    }

    #[test]
    fn the_result_a_server_writes_is_what_the_client_parses() {
        let out = RunOutput::setup_error(crate::policy::SetupErrorKind::AbiTooLow, "old kernel");
        let l = line(&FromDriver::Result {
            seq: 9,
            output: out.clone(),
        });
        assert_eq!(
            parse_reply(&l).unwrap(),
            Reply::Result {
                seq: 9,
                output: out
            }
        );
    }

    #[test]
    fn a_pong_parses_and_rejects_unknown_fields() {
        assert_eq!(
            parse_reply(br#"{"type":"pong","seq":12}"#).unwrap(),
            Reply::Pong { seq: 12 }
        );
        assert_eq!(
            parse_reply(&line(&FromDriver::Pong { seq: 3 })).unwrap(),
            Reply::Pong { seq: 3 }
        );
        let e = parse_reply(br#"{"type":"pong","seq":1,"late":true}"#).unwrap_err();
        assert!(e.contains("\"late\""), "{e}");
        let e = parse_reply(br#"{"type":"pong"}"#).unwrap_err();
        assert!(e.contains("seq"), "{e}");
    }

    #[test]
    fn a_ping_is_one_line_with_type_and_seq() {
        let l = line(&ToDriver::Ping { seq: 5 });
        assert_eq!(l, b"{\"type\":\"ping\",\"seq\":5}\n");
    }

    #[test]
    fn run_messages_round_trip_through_to_driver() {
        let req = super::super::RunRequest {
            seq: 4,
            case: "a.b".into(),
            policy: Policy::default(),
            command: Command::script("python3", "print(1)"),
        };
        let msg: ToDriver = serde_json::from_slice(&run_line(&req)).unwrap();
        assert_eq!(
            msg,
            ToDriver::Run {
                seq: 4,
                case: "a.b".into(),
                policy: Box::new(req.policy),
                command: req.command
            }
        );
    }
}
