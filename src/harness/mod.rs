//! The harness: runs conformance cases through a driver and decides each
//! verdict from what it observed itself.
//!
//! Per case ([`Harness::run_case`]): check the requirements (unmet: skip,
//! with the reason); make a scratch directory; start the oracles; expand
//! the templates (`${SCRATCH}`, `${PROBE}`, oracle ports); create the setup
//! files; run the command through the driver under a watchdog; stop the
//! oracles; check survivors and host side effects; evaluate `expect`. Then
//! the control run (the restriction lifted, fresh scratch and oracles) must
//! meet `control.expect`. PASS only if both hold.
//!
//! - [`runner`]: one case; [`pool`]: many, in parallel;
//! - [`slot`]: a worker's driver instance, restarted after a fault;
//! - [`requirements`], [`evaluate`]: skip and pass/fail decisions;
//! - [`expectations`]: known failures (`--expect`);
//! - [`select`]: `--filter` and `--tag`;
//! - [`scratch`]: a run's directory, locked, swept after a crash;
//! - [`watchdog`]: how long a run may take before its driver is hung;
//! - [`interrupt`]: SIGINT/SIGTERM/SIGHUP stop a run in order;
//! - [`report`]: progress, summary, JSON, JUnit.

pub mod canary;
pub mod check;
pub mod evaluate;
pub mod expectations;
pub mod host_requires;
pub mod interrupt;
pub mod mutants;
pub mod observe;
pub mod observed;
pub mod pool;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod scratch;
pub mod select;
pub mod slot;
pub mod status;
pub mod watchdog;

pub use runner::{Harness, HarnessConfig};
pub use slot::DriverSlot;
pub use status::{CaseResult, Counts, Status};
