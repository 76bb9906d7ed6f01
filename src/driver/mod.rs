//! Drivers: how the harness reaches a sandbox backend.
//!
//! - `reference`: the in-process reference sandbox (the default);
//! - `none`: plain spawn with a timeout, the negative control;
//! - `process`: any external program speaking the JSON-lines protocol
//!   (conformance/PROTOCOL.md).
//!
//! [`registry`] turns a name (`--driver`) or a command (`--driver-cmd`) into
//! a [`DriverFactory`].

use std::collections::BTreeSet;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::AtomicI32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::corpus::case::{Capability, SimulatedLandlock};
use crate::policy::{Command, Policy, RunOutput};

mod child;
mod keeper;
pub mod none;
pub mod process;
pub mod protocol;
pub mod reference;
pub mod registry;

/// What a driver says about itself in its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Backend name, e.g. `sandlock`.
    pub name: String,
    /// Backend version.
    pub version: String,
    /// What the backend claims to enforce.
    pub capabilities: BTreeSet<Capability>,
    /// The lowest Landlock ABI the backend runs on at all: on a kernel
    /// below it (or without Landlock) it refuses every run, fail-closed.
    /// `None`: the backend does not depend on Landlock. Cases are skipped,
    /// with that reason, where the running kernel is below it, except the
    /// cases written for exactly such kernels (see
    /// [`crate::harness::requirements::check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_landlock_abi: Option<u32>,
}

impl Hello {
    /// The backend's declared Landlock minimum, if `landlock` is below it:
    /// then the backend refuses every run on this kernel.
    pub fn landlock_minimum_unmet(&self, landlock: crate::kernel::LandlockSupport) -> Option<u32> {
        self.requires_landlock_abi
            .filter(|&min| landlock.abi().is_none_or(|abi| abi < min))
    }
}

/// One run request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Sequence number, echoed in the result.
    pub seq: u64,
    /// The case id (for the backend's logs).
    pub case: String,
    /// The policy, fully templated.
    pub policy: Policy,
    /// The command, fully templated.
    pub command: Command,
}

/// A driver fault: the harness reports ERROR for the case, never a pass.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver process could not be started.
    #[error("failed to start driver {driver}: {why}")]
    Start {
        /// The driver.
        driver: String,
        /// Why.
        why: String,
    },
    /// The driver died (exited or was killed) before answering.
    #[error("driver {driver} died: {why}")]
    Died {
        /// The driver.
        driver: String,
        /// Exit status and last stderr lines.
        why: String,
    },
    /// The driver did not answer within the watchdog.
    #[error("driver {driver} did not answer within {after:?}")]
    Hung {
        /// The driver.
        driver: String,
        /// The watchdog.
        after: Duration,
    },
    /// The driver broke the protocol (non-JSON, wrong seq, bad version…).
    #[error("driver {driver} broke the protocol: {why}")]
    Protocol {
        /// The driver.
        driver: String,
        /// What was wrong.
        why: String,
    },
    /// The run was interrupted (SIGINT, SIGTERM, SIGHUP): the driver was
    /// stopped before it answered.
    #[error("driver {driver} was stopped: the run was interrupted by {signal}")]
    Interrupted {
        /// The driver.
        driver: String,
        /// The signal's name.
        signal: String,
    },
    /// The driver answered with an `error` message: it could not run this
    /// request, but is still usable.
    #[error("driver {driver} could not run the case: {message}")]
    Reported {
        /// The driver.
        driver: String,
        /// The driver's message.
        message: String,
    },
}

/// How a driver answered [`Driver::ping`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// The driver runs inside the harness's process: a request costs no
    /// protocol round trip, so there is nothing to ping.
    InProcess,
    /// The driver answered `pong`.
    Pong,
    /// The driver answered the ping with an `error` message: it does not
    /// implement ping, and stays usable.
    Unsupported(String),
}

/// What the harness hands an in-process driver besides the request: open
/// files, which cannot travel over the protocol.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attach<'a> {
    /// A terminal (the `terminal` oracle's pty): the command's stdin and
    /// controlling terminal. Needs [`Capability::Terminal`].
    pub terminal: Option<BorrowedFd<'a>>,
    /// Files the command's caller holds open and inheritable when it starts
    /// the command (`run.fds`), at these numbers in the harness (which the
    /// case's `${FD_i}` name). Needs [`Capability::FdsInherit`].
    pub fds: &'a [RawFd],
    /// The run's cgroup (its `cgroup.procs`, open for writing): a driver
    /// that spawns the command itself has it join before exec, so the
    /// harness finds everything the run starts.
    pub cgroup_procs: Option<RawFd>,
    /// An in-process driver stores here the id of the thread that forks
    /// the command (`gettid`), before it forks: the command's processes
    /// are that thread's children and their descendants, which is how the
    /// harness finds them while the run goes on (the inbound oracle).
    pub spawner: Option<&'a AtomicI32>,
}

/// The calling thread's id, for [`Attach::spawner`].
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

impl Attach<'_> {
    /// Whether it carries anything only an in-process driver can take.
    pub fn needs_in_process(&self) -> bool {
        self.terminal.is_some() || !self.fds.is_empty()
    }
}

/// A sandbox backend, as the harness sees it. One instance runs one case at
/// a time; the harness makes one instance per worker.
pub trait Driver: Send {
    /// The handshake.
    fn hello(&mut self) -> Result<Hello, DriverError>;
    /// Runs one request; `watchdog` bounds the whole exchange.
    fn run(&mut self, req: &RunRequest, watchdog: Duration) -> Result<RunOutput, DriverError>;
    /// Runs one request with files attached (see [`Attach`]). Drivers that
    /// cannot take them keep this default, which refuses a terminal or
    /// inherited fds and ignores the cgroup (the harness tracks an external
    /// driver's processes through [`Driver::pid`]).
    fn run_attached(
        &mut self,
        req: &RunRequest,
        attach: &Attach<'_>,
        watchdog: Duration,
    ) -> Result<RunOutput, DriverError> {
        if attach.needs_in_process() {
            return Err(DriverError::Reported {
                driver: self.hello().map(|h| h.name).unwrap_or_default(),
                message: "this driver cannot hand the command a terminal or inherited fds".into(),
            });
        }
        self.run(req, watchdog)
    }
    /// The driver's own process, for an external driver: the harness moves
    /// it into the run's cgroup for a run and watches its process tree.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// A no-op request the driver answers without running anything; timed
    /// by `sandspec bench` to subtract the protocol's round trip. In-process
    /// drivers keep this default.
    fn ping(&mut self, seq: u64, watchdog: Duration) -> Result<Ping, DriverError> {
        let _ = (seq, watchdog);
        Ok(Ping::InProcess)
    }
}

/// Makes driver instances; `simulate` starts the backend on a simulated
/// kernel (see [`crate::corpus::case::Simulate`]).
pub trait DriverFactory: Send + Sync {
    /// The driver's name, as on the command line.
    fn name(&self) -> &str;
    /// A fresh instance.
    fn spawn(&self, simulate: Option<SimulatedLandlock>) -> Result<Box<dyn Driver>, DriverError>;
}
