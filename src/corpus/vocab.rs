//! The YAML names of the closed vocabularies (tags, capabilities, oracles),
//! for messages and command-line arguments.

use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::case::{Capability, OracleKind, Tag};

/// The name a value has in YAML (its serde name).
pub fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The snake_case YAML name of a tag.
pub fn tag_name(t: Tag) -> String {
    name_of(&t)
}

/// The snake_case YAML name of an oracle.
pub fn oracle_name(o: OracleKind) -> String {
    name_of(&o)
}

/// The dotted YAML name of a capability.
pub fn capability_name(c: Capability) -> String {
    name_of(&c)
}

/// Every tag, in declaration order.
pub const TAGS: &[Tag] = &[
    Tag::Seed,
    Tag::Isolation,
    Tag::Filesystem,
    Tag::Network,
    Tag::Process,
    Tag::Limits,
    Tag::Script,
    Tag::Platform,
    Tag::Escape,
    Tag::Environment,
    Tag::Output,
    Tag::Terminal,
    Tag::InheritedFds,
    Tag::Sockets,
    Tag::UnixSockets,
    Tag::Links,
    Tag::Metadata,
    Tag::Ipc,
    Tag::Namespaces,
    Tag::Ptrace,
    Tag::Signals,
    Tag::TimeoutEvasion,
    Tag::ExecBypass,
    Tag::KernelSurface,
    Tag::Flood,
];

fn from_name<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

impl FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Tag, String> {
        from_name(s).ok_or_else(|| {
            let known: Vec<String> = TAGS.iter().map(|t| tag_name(*t)).collect();
            format!("unknown tag {s:?} (known: {})", known.join(", "))
        })
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Capability, String> {
        from_name(s).ok_or_else(|| format!("unknown capability {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_their_names() {
        for t in TAGS {
            assert_eq!(tag_name(*t).parse::<Tag>(), Ok(*t));
        }
        let e = "isolaton".parse::<Tag>().unwrap_err();
        assert!(
            e.contains("unknown tag \"isolaton\"") && e.contains("isolation"),
            "{e}"
        );
    }

    #[test]
    fn capabilities_and_oracles_have_their_yaml_names() {
        assert_eq!(
            capability_name(Capability::NetTcpConnect),
            "net.tcp_connect"
        );
        assert_eq!("fs.read".parse::<Capability>(), Ok(Capability::FsRead));
        assert_eq!(oracle_name(OracleKind::Tcp2), "tcp2");
    }
}
