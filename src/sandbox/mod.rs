//! The reference sandbox: Landlock for files and TCP, seccomp for UDP, raw
//! sockets and io_uring, resource limits, a timeout that kills the whole
//! process tree, capped output. Unprivileged, no namespaces, fail-closed.
//!
//! ```no_run
//! use sandspec::policy::{Command, Policy};
//! use sandspec::sandbox::Sandbox;
//!
//! let policy = Policy { read: vec!["/usr".into(), "/lib".into(), "/lib64".into(), "/bin".into()], ..Default::default() };
//! let sandbox = Sandbox::new(&policy)?;       // probes the kernel, builds the rules once
//! let out = sandbox.run(&Command::argv(["/bin/echo", "hi"]));
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok::<(), sandspec::sandbox::SetupError>(())
//! ```

use crate::policy::{Command, Policy, RunOutput, SetupErrorKind};
use std::path::PathBuf;

/// The sandbox could not be set up; the command never ran.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SetupError {
    /// The class of failure.
    pub kind: SetupErrorKind,
    /// What failed and why, naming the path, rule or kernel feature.
    pub message: String,
}

/// A policy compiled against the running kernel: Landlock ruleset and seccomp
/// filter built once, reused for every [`Sandbox::run`].
#[derive(Debug)]
pub struct Sandbox {
    filtered: Vec<PathBuf>,
}

impl Sandbox {
    /// Compiles `policy` for this kernel. Fails closed: no Landlock, or an
    /// ABI too old for the policy, is an error.
    pub fn new(_policy: &Policy) -> Result<Sandbox, SetupError> {
        Err(SetupError {
            kind: SetupErrorKind::Other,
            message: "failed to build the sandbox: not implemented yet".into(),
        })
    }

    /// Allowlisted paths that did not exist and were left out.
    pub fn filtered_paths(&self) -> &[PathBuf] {
        &self.filtered
    }

    /// Runs `command` under the sandbox and waits for the whole tree.
    pub fn run(&self, _command: &Command) -> RunOutput {
        RunOutput::setup_error(SetupErrorKind::Other, "not implemented yet")
    }
}

/// Compiles `policy` and runs `command`: a setup failure becomes
/// [`crate::policy::Outcome::SetupError`].
pub fn run(policy: &Policy, command: &Command) -> RunOutput {
    match Sandbox::new(policy) {
        Ok(sb) => sb.run(command),
        Err(e) => RunOutput::setup_error(e.kind, e.message),
    }
}
