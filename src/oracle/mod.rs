//! Oracles: observers the harness owns, so a verdict rests on what was
//! seen rather than on what the sandboxed command says.
//!
//! Each case gets its own [`Oracles`]: listeners on 127.0.0.1 with
//! ephemeral ports (never any other address), pathname unix sockets, a
//! terminal, and a victim process. After the run, [`Oracles::finish`] says
//! what arrived. [`tracker`] finds what a run left running, by the host's
//! means (cgroups, process trees, orphans); [`inbound`] connects to what
//! the run listens on; [`objects`] lists the kernel objects it left.
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
//! - [`OracleKind::UnixPath`]: pathname unix sockets (stream and datagram)
//!   in a harness directory outside every allowlisted path.
//! - [`OracleKind::Terminal`]: a pty, the command's terminal; counts the
//!   input queued on it after the run.
//! - [`OracleKind::Inbound`]: started by the runner beside the others (it
//!   needs to know the run's processes), see [`inbound`].

pub mod cgroup;
mod dns;
pub mod inbound;
mod listener;
pub mod objects;
pub mod procs;
mod survivors;
pub mod terminal;
pub mod tracker;
mod victim;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;

use tokio::runtime::Handle;

use crate::corpus::case::OracleKind;
pub use inbound::InboundReport;
use listener::{Listener, Role};
pub use survivors::{outliving, processes_naming, survivors, DYING_GRACE};
use terminal::{Terminal, TerminalInput};
use victim::Victim;

/// The oracles of one case, running.
pub struct Oracles {
    listeners: Vec<(OracleKind, Listener)>,
    victim: Option<Victim>,
    terminal: Option<Terminal>,
    /// The directory of the `unix_path` sockets, and their paths.
    unix_dir: Option<(tempfile::TempDir, String, String)>,
}

/// What the oracles observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Observations {
    /// For each listener started: connections (TCP, unix), datagrams (UDP,
    /// unix datagrams), well-formed queries (DNS) or bytes queued on the
    /// terminal that arrived.
    pub received: BTreeMap<OracleKind, u64>,
    /// Whether the victim was still alive at the end; `None` if no victim
    /// was started.
    pub victim_alive: Option<bool>,
    /// What the terminal had queued as input, when it was started.
    #[serde(skip)]
    pub terminal: Option<TerminalInput>,
    /// What the inbound oracle did, when it ran.
    #[serde(skip)]
    pub inbound: Option<InboundReport>,
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
            terminal: None,
            unix_dir: None,
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
                OracleKind::Terminal => {
                    oracles.terminal = Some(Terminal::open()?);
                    continue;
                }
                OracleKind::Inbound => continue,
                OracleKind::UnixPath => {
                    oracles.start_unix_path(rt)?;
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

    fn start_unix_path(&mut self, rt: &Handle) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("failed to start the unix_path oracle: {e}"),
            )
        };
        let dir = tempfile::Builder::new()
            .prefix("sandspec-oracle-")
            .tempdir()
            .map_err(fail)?;
        // Reachable by any user: the sandbox, not a mode, must keep the
        // command out.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(fail)?;
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        for (role, path) in [(Role::UnixPath, &stream), (Role::UnixDgram, &dgram)] {
            let l = Listener::start_at(role, Some(path), rt).map_err(fail)?;
            self.listeners.push((OracleKind::UnixPath, l));
        }
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
        self.unix_dir = Some((dir, s(&stream), s(&dgram)));
        Ok(())
    }

    /// The terminal's slave end, for the driver to make the command's
    /// stdin and controlling terminal.
    pub fn terminal(&self) -> Option<BorrowedFd<'_>> {
        self.terminal.as_ref().map(Terminal::slave)
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
                OracleKind::Victim
                | OracleKind::UnixPath
                | OracleKind::Inbound
                | OracleKind::Terminal => continue,
            };
            vars.insert(var.to_owned(), listener.port().to_string());
        }
        if let Some((_, stream, dgram)) = &self.unix_dir {
            vars.insert("ORACLE_UNIX_PATH".to_owned(), stream.clone());
            vars.insert("ORACLE_UNIX_DGRAM_PATH".to_owned(), dgram.clone());
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
        let mut received = BTreeMap::new();
        for (kind, listener) in std::mem::take(&mut self.listeners) {
            *received.entry(kind).or_insert(0) += listener.stop();
        }
        let victim_alive = self.victim.take().map(Victim::finish);
        let terminal = self.terminal.take().map(Terminal::finish);
        if let Some(t) = &terminal {
            received.insert(OracleKind::Terminal, t.count);
        }
        Observations {
            received,
            victim_alive,
            terminal,
            inbound: None,
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
        OracleKind::UnixPath => "unix_path",
        OracleKind::Inbound => "inbound",
        OracleKind::Terminal => "terminal",
    }
}

#[cfg(test)]
mod tests;
