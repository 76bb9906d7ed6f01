//! sandspec: a conformance harness for Linux process sandboxes, and a small
//! reference sandbox (Landlock + seccomp, unprivileged, fail-closed) that
//! passes it.
//!
//! - [`policy`]: the shared vocabulary (policy, command, outcome).
//! - [`kernel`]: kernel facts (Landlock ABI, seccomp, user namespaces).
//! - [`sandbox`]: the reference sandbox, usable as a library.
//! - [`corpus`]: YAML conformance cases, strictly validated.
//! - [`oracle`]: loopback listeners and host checks the harness owns.
//! - [`driver`]: backends the harness runs cases through.
//! - [`harness`]: runs the corpus, decides verdicts, reports.
//! - [`bench`]: spawn-latency benchmarks across drivers, and scaling.
//! - [`report`]: matrices and diffs across runs, expectation files.
//! - [`input`], [`escape`]: reading user-named files safely; printing
//!   outside text without its control bytes.
#![deny(missing_docs)]

pub mod bench;
pub mod cli;
pub mod corpus;
pub mod driver;
pub mod escape;
pub mod harness;
pub mod input;
pub mod kernel;
pub mod oracle;
mod pidfd;
pub mod policy;
pub mod report;
pub mod sandbox;
