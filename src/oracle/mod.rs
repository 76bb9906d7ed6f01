//! Oracles: observers the harness owns, so a verdict rests on what was
//! seen rather than on what the sandboxed command says.
//!
//! Each case gets its own [`Oracles`]: listeners on 127.0.0.1 with
//! ephemeral ports (never any other address), and a victim process. After
//! the run, [`Oracles::finish`] says what arrived; [`processes_naming`]
//! finds what a case's command left running, by the host's pids (and
//! [`survivors`] checks given host pids are gone).
//!
//! - [`OracleKind::Tcp`], [`OracleKind::Tcp2`]: TCP listeners counting
//!   accepted connections (closed right away).
//! - [`OracleKind::Udp`]: a UDP socket counting datagrams.
//! - [`OracleKind::Dns`]: a DNS responder over UDP counting well-formed
//!   queries and answering each A query with 127.0.0.1 (TTL 0).
//! - [`OracleKind::Unix`]: an abstract unix socket (`${ORACLE_UNIX_NAME}`)
//!   counting connections, for IPC scoping.
//! - [`OracleKind::Victim`]: a `sleep 300` outside any sandbox, which must
//!   survive the case.

mod dns;
mod listener;
mod survivors;
mod victim;

use std::collections::BTreeMap;
use std::io;

use tokio::runtime::Handle;

use crate::corpus::case::OracleKind;
use listener::{Listener, Role};
pub use survivors::{outliving, processes_naming, survivors, DYING_GRACE};
use victim::Victim;

/// The oracles of one case, running.
pub struct Oracles {
    listeners: Vec<(OracleKind, Listener)>,
    victim: Option<Victim>,
}

/// What the oracles observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Observations {
    /// For each listener started: connections (TCP), datagrams (UDP) or
    /// well-formed queries (DNS) that arrived.
    pub received: BTreeMap<OracleKind, u64>,
    /// Whether the victim was still alive at the end; `None` if no victim
    /// was started.
    pub victim_alive: Option<bool>,
}

impl Oracles {
    /// Binds one listener per kind (duplicates are started once) with
    /// tasks on `rt`, and spawns the victim if asked. Returns once all are
    /// bound and serving: from then on the kernel queues what arrives,
    /// and all of it is counted. `rt` must have its I/O driver enabled
    /// (`enable_all` or `enable_io` on the builder); it need not be driven
    /// for counting, only for the DNS responder to answer.
    pub fn start(kinds: &[OracleKind], rt: &Handle) -> io::Result<Oracles> {
        let mut oracles = Oracles {
            listeners: Vec::new(),
            victim: None,
        };
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let role = match kind {
                OracleKind::Tcp | OracleKind::Tcp2 => Role::Tcp,
                OracleKind::Udp => Role::Udp,
                OracleKind::Dns => Role::Dns,
                OracleKind::Unix => Role::Unix,
                OracleKind::Victim => {
                    oracles.victim = Some(Victim::spawn()?);
                    continue;
                }
            };
            let listener = Listener::start(role, rt).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "failed to start the {} oracle on 127.0.0.1: {e}",
                        name(kind)
                    ),
                )
            })?;
            oracles.listeners.push((kind, listener));
        }
        Ok(oracles)
    }

    /// Template variables for the case: `ORACLE_TCP_PORT`,
    /// `ORACLE_TCP_PORT_2`, `ORACLE_UDP_PORT`, `ORACLE_DNS_PORT`,
    /// `VICTIM_PID`, only for the oracles started.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for (kind, listener) in &self.listeners {
            let var = match kind {
                OracleKind::Tcp => "ORACLE_TCP_PORT",
                OracleKind::Tcp2 => "ORACLE_TCP_PORT_2",
                OracleKind::Udp => "ORACLE_UDP_PORT",
                OracleKind::Dns => "ORACLE_DNS_PORT",
                OracleKind::Unix => {
                    let name = listener.name().unwrap_or_default();
                    vars.insert("ORACLE_UNIX_NAME".to_owned(), name.to_owned());
                    continue;
                }
                OracleKind::Victim => continue,
            };
            vars.insert(var.to_owned(), listener.port().to_string());
        }
        if let Some(victim) = &self.victim {
            vars.insert("VICTIM_PID".to_owned(), victim.pid().to_string());
        }
        vars
    }

    /// Stops everything and returns what arrived. Counts include what the
    /// kernel had queued at this moment (pending connections, datagrams),
    /// so a connect that completed just before the run ended is counted.
    /// The victim is checked, then killed and reaped.
    ///
    /// Blocks briefly (the victim check may wait for a signalled victim to
    /// exit, see `Victim::finish`); it does not need the runtime to make
    /// progress, so it may be called from any thread.
    pub fn finish(mut self) -> Observations {
        let received = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(|(kind, listener)| (kind, listener.stop()))
            .collect();
        let victim_alive = self.victim.take().map(Victim::finish);
        Observations {
            received,
            victim_alive,
        }
    }
}

/// The oracle's name as written in case files.
fn name(kind: OracleKind) -> &'static str {
    match kind {
        OracleKind::Tcp => "tcp",
        OracleKind::Tcp2 => "tcp2",
        OracleKind::Udp => "udp",
        OracleKind::Dns => "dns",
        OracleKind::Unix => "unix",
        OracleKind::Victim => "victim",
    }
}

#[cfg(test)]
mod tests;
