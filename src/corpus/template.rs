//! Per-case templates: `${NAME}` in the strings of a case is replaced by a
//! value the harness knows only at run time (the scratch directory, the probe
//! binary, oracle ports, the victim's pid).
//!
//! `$${` stands for a literal `${`, for scripts that use the shell's own
//! `${VAR}` syntax. A `$` not followed by `{` is left alone.

use std::collections::BTreeMap;

use serde_json::Value;

use super::case::{Case, OracleKind};
use crate::policy::Network;

/// Every template variable a case may use, with what it stands for.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "SCRATCH",
        "the case's scratch directory (absolute, exists, writable by the harness)",
    ),
    (
        "PROBE",
        "the probe binary (its path is added to the policy's `exec` list by the harness)",
    ),
    ("ORACLE_TCP_PORT", "port of the `tcp` oracle on 127.0.0.1"),
    (
        "ORACLE_TCP_PORT_2",
        "port of the `tcp2` oracle on 127.0.0.1",
    ),
    ("ORACLE_UDP_PORT", "port of the `udp` oracle on 127.0.0.1"),
    ("ORACLE_DNS_PORT", "port of the `dns` oracle on 127.0.0.1"),
    (
        "VICTIM_PID",
        "pid of the `victim` oracle, a harness-owned process outside the sandbox",
    ),
    (
        "ORACLE_UNIX_NAME",
        "name (without the leading NUL) of the `unix` oracle's abstract socket",
    ),
    (
        "ORACLE_UNIX_PATH",
        "path of the `unix_path` oracle's stream listener, outside every allowlisted path",
    ),
    (
        "ORACLE_UNIX_DGRAM_PATH",
        "path of the `unix_path` oracle's datagram socket, outside every allowlisted path",
    ),
];

/// The variable holding the number of the `i`-th inherited fd (`run.fds`).
pub fn fd_variable(i: usize) -> String {
    format!("FD_{i}")
}

/// The index of an inherited-fd variable (`FD_0` → 0), if `name` is one.
pub fn fd_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("FD_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The variable holding an oracle's port, pid, name or path (`None` for
/// the oracles a command does not address: `inbound`, `terminal`).
pub fn variable_of(kind: OracleKind) -> Option<&'static str> {
    Some(match kind {
        OracleKind::Tcp => "ORACLE_TCP_PORT",
        OracleKind::Tcp2 => "ORACLE_TCP_PORT_2",
        OracleKind::Udp => "ORACLE_UDP_PORT",
        OracleKind::Dns => "ORACLE_DNS_PORT",
        OracleKind::Victim => "VICTIM_PID",
        OracleKind::Unix => "ORACLE_UNIX_NAME",
        OracleKind::UnixPath => "ORACLE_UNIX_PATH",
        OracleKind::Inbound | OracleKind::Terminal => return None,
    })
}

/// The oracle a variable needs listed in the case's `oracles`, if any.
pub fn oracle_of(name: &str) -> Option<OracleKind> {
    match name {
        "ORACLE_TCP_PORT" => Some(OracleKind::Tcp),
        "ORACLE_TCP_PORT_2" => Some(OracleKind::Tcp2),
        "ORACLE_UDP_PORT" => Some(OracleKind::Udp),
        "ORACLE_DNS_PORT" => Some(OracleKind::Dns),
        "VICTIM_PID" => Some(OracleKind::Victim),
        "ORACLE_UNIX_NAME" => Some(OracleKind::Unix),
        "ORACLE_UNIX_PATH" | "ORACLE_UNIX_DGRAM_PATH" => Some(OracleKind::UnixPath),
        _ => None,
    }
}

/// True when `name` is a known variable (`FD_i` included; whether the
/// case has an `i`-th inherited fd is checked by the loader).
pub fn is_known(name: &str) -> bool {
    VARIABLES.iter().any(|(n, _)| *n == name) || fd_index(name).is_some()
}

/// A `${…}` reference found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Byte offset of the `$` in the string.
    pub offset: usize,
    /// The name between the braces; `None` when the brace is never closed.
    pub name: Option<String>,
}

/// Every `${…}` reference in `s` (not counting `$${` escapes).
pub fn references(s: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    scan(s, |offset, name| {
        out.push(Reference {
            offset,
            name: name.map(str::to_string),
        });
        None
    });
    out
}

/// Walks `s`, calling `f(offset, name)` for each reference; `f`'s answer
/// replaces the reference in the returned string (`None`: kept as written).
fn scan<'s>(s: &'s str, mut f: impl FnMut(usize, Option<&'s str>) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut base = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            base += i + 3;
        } else if let Some(body) = after.strip_prefix("${") {
            match body.find('}') {
                Some(end) => {
                    let name = &body[..end];
                    match f(base + i, Some(name)) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&after[..end + 3]),
                    }
                    rest = &body[end + 1..];
                    base += i + end + 3;
                }
                None => {
                    match f(base + i, None) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(after),
                    }
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
            base += i + 1;
        }
    }
    out.push_str(rest);
    out
}

/// Expands `${NAME}` in `s`; an unknown or unset name, or an unclosed `${`,
/// is an error.
pub fn expand_str(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut err = None;
    let out = scan(s, |_, name| {
        let value = match name {
            None => Err(format!(
                "unclosed template reference in {s:?}: write `$${{` for a literal `${{`"
            )),
            Some(n) => vars.get(n).cloned().ok_or_else(|| {
                if is_known(n) {
                    format!("template variable ${{{n}}} has no value for this case")
                } else {
                    format!(
                        "unknown template variable ${{{n}}} (known: {})",
                        known_list()
                    )
                }
            }),
        };
        match value {
            Ok(v) => Some(v),
            Err(e) => {
                err.get_or_insert(e);
                None
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The known variable names, for messages.
pub fn known_list() -> String {
    let mut names: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
    names.push("FD_0, FD_1, … (one per run.fds entry)");
    names.join(", ")
}

/// Expands `${NAME}` in every string of `policy`, `run`, `setup`, `expect`
/// and `control` (map keys included, e.g. `expect.host.content` paths); an
/// unknown name is an error. `id`, `summary`, `tags`, `requires`, `oracles`
/// and `simulate` are left as written. Then adds the `oracle_ports` to the
/// policy's TCP port rules (and empties `oracle_ports`).
pub fn expand(case: &Case, vars: &BTreeMap<String, String>) -> Result<Case, String> {
    let mut value = serde_json::to_value(case)
        .map_err(|e| format!("failed to expand templates of {}: {e}", case.id))?;
    if let Value::Object(fields) = &mut value {
        for key in ["policy", "run", "setup", "expect", "control"] {
            if let Some(v) = fields.get_mut(key) {
                expand_value(v, vars).map_err(|e| format!("{key}: {e}"))?;
            }
        }
    }
    let mut out: Case = serde_json::from_value(value)
        .map_err(|e| format!("failed to expand templates of {}: {e}", case.id))?;
    apply_oracle_ports(&mut out, vars)?;
    Ok(out)
}

fn apply_oracle_ports(case: &mut Case, vars: &BTreeMap<String, String>) -> Result<(), String> {
    let ports = std::mem::take(&mut case.oracle_ports);
    if ports.is_empty() {
        return Ok(());
    }
    let Network::Ports(rules) = &mut case.policy.network else {
        return Err("oracle_ports: policy.network must be a port-rule map ({tcp_connect: [...], tcp_bind: [...]})".into());
    };
    let port = |kind: OracleKind| -> Result<u16, String> {
        let var = variable_of(kind).unwrap_or("(no variable)");
        let v = vars
            .get(var)
            .ok_or_else(|| format!("oracle_ports: ${{{var}}} has no value for this case"))?;
        v.parse()
            .map_err(|_| format!("oracle_ports: ${{{var}}} = {v:?} is not a port number"))
    };
    let connect = ports
        .tcp_connect
        .iter()
        .map(|k| port(*k))
        .collect::<Result<Vec<_>, _>>()?;
    let bind = ports
        .tcp_bind
        .iter()
        .map(|k| port(*k))
        .collect::<Result<Vec<_>, _>>()?;
    rules.tcp_connect.extend(&connect);
    rules.tcp_bind.extend(&bind);
    // A control that replaces the network with other port rules gets the
    // oracle ports too: they name listeners, not a restriction.
    if let Some(Network::Ports(rules)) = case
        .control
        .as_mut()
        .and_then(|c| c.policy.network.as_mut())
    {
        rules.tcp_connect.extend(&connect);
        rules.tcp_bind.extend(&bind);
    }
    Ok(())
}

fn expand_value(v: &mut Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = expand_str(s, vars)?,
        Value::Array(items) => {
            for item in items {
                expand_value(item, vars)?;
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut item) in old {
                expand_value(&mut item, vars)?;
                map.insert(expand_str(&k, vars)?, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("SCRATCH", "/tmp/s"), ("PROBE", "/p/probe")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expand_str_replaces_known_names_and_keeps_escapes_and_lone_dollars() {
        let out = expand_str("${SCRATCH}/a $HOME $$ $${X} ${PROBE}", &vars()).unwrap();
        assert_eq!(out, "/tmp/s/a $HOME $$ ${X} /p/probe");
    }

    #[test]
    fn expand_str_rejects_unknown_unset_and_unclosed_names() {
        let e = expand_str("${NOPE}", &vars()).unwrap_err();
        assert!(e.contains("unknown template variable ${NOPE}"), "{e}");
        let e = expand_str("${ORACLE_TCP_PORT}", &vars()).unwrap_err();
        assert!(e.contains("has no value"), "{e}");
        let e = expand_str("a ${SCRATCH", &vars()).unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn references_reports_offsets_and_skips_escapes() {
        let r = references("x $${A} ${B} ${C");
        assert_eq!(
            r,
            vec![
                Reference {
                    offset: 8,
                    name: Some("B".into())
                },
                Reference {
                    offset: 13,
                    name: None
                },
            ]
        );
    }

    #[test]
    fn expand_covers_policy_run_expect_and_control_but_not_the_summary() {
        let yaml = r#"
id: t.x
summary: "uses ${SCRATCH}"
policy: {write: ["${SCRATCH}"]}
run: {argv: ["${PROBE}", "write", "${SCRATCH}/f"]}
expect:
  host: {content: {"${SCRATCH}/f": "hi"}}
control:
  policy: {read: ["${SCRATCH}"]}
  expect: {host: {absent: ["${SCRATCH}/g"]}}
"#;
        let case: Case = serde_saphyr::from_str(yaml).unwrap();
        let out = expand(&case, &vars()).unwrap();
        assert_eq!(out.summary, "uses ${SCRATCH}");
        assert_eq!(out.policy.write, vec![std::path::PathBuf::from("/tmp/s")]);
        assert_eq!(out.run.argv.as_ref().unwrap()[2], "/tmp/s/f");
        let host = out.expect.host.as_ref().unwrap();
        assert_eq!(host.content.get("/tmp/s/f").map(String::as_str), Some("hi"));
        let control = out.control.as_ref().unwrap();
        assert_eq!(
            control.policy.read.as_ref().unwrap()[0],
            std::path::PathBuf::from("/tmp/s")
        );
        assert_eq!(control.expect.host.as_ref().unwrap().absent[0], "/tmp/s/g");
        let e = expand(&case, &BTreeMap::new()).unwrap_err();
        assert!(e.starts_with("policy: "), "{e}");
    }

    #[test]
    fn expand_adds_oracle_ports_to_the_tcp_rules() {
        let yaml = r#"
id: t.ports
summary: s
oracles: [tcp, tcp2]
oracle_ports: {tcp_connect: [tcp2], tcp_bind: [tcp]}
policy: {network: {tcp_connect: [80]}}
run: {argv: [x]}
expect: {outcome: timeout}
"#;
        let case: Case = serde_saphyr::from_str(yaml).unwrap();
        let mut v = vars();
        v.insert("ORACLE_TCP_PORT".into(), "4000".into());
        v.insert("ORACLE_TCP_PORT_2".into(), "4001".into());
        let out = expand(&case, &v).unwrap();
        let Network::Ports(rules) = &out.policy.network else {
            panic!("not port rules: {:?}", out.policy.network)
        };
        assert_eq!(rules.tcp_connect, vec![80, 4001]);
        assert_eq!(rules.tcp_bind, vec![4000]);
        assert!(out.oracle_ports.is_empty());
        let e = expand(&case, &vars()).unwrap_err();
        assert!(e.contains("has no value"), "{e}");
    }
}
