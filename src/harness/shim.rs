//! TEMPORARY stand-ins for the oracle API the oracle helper is writing,
//! with its agreed signatures. Deleted as soon as the real module is merged;
//! nothing here pretends to observe anything: the oracle stand-in refuses
//! to start.

use std::collections::BTreeMap;
use std::io;

use crate::corpus::case::OracleKind;

/// Stand-in for `oracle::Observations`.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Counts per listener.
    pub received: BTreeMap<OracleKind, u64>,
    /// Whether the victim survived.
    pub victim_alive: Option<bool>,
}

/// Stand-in for `oracle::Oracles`: starts nothing, and refuses any oracle.
pub struct Oracles;

impl Oracles {
    /// Fails for any non-empty list: the real listeners are not merged yet.
    pub fn start(kinds: &[OracleKind], _rt: &tokio::runtime::Handle) -> io::Result<Oracles> {
        if kinds.is_empty() {
            Ok(Oracles)
        } else {
            Err(io::Error::other(
                "oracles are not available in this build yet",
            ))
        }
    }
    /// No variables.
    pub fn vars(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Nothing observed.
    pub fn finish(self) -> Observations {
        Observations::default()
    }
}

/// Stand-in for `oracle::survivors`: pids that exist and are not zombies.
pub fn survivors(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .collect()
}
