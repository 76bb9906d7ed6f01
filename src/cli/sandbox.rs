//! `sandspec sandbox … -- CMD`: the reference sandbox as a command.

use clap::Args;

/// Arguments of `sandspec sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `sandspec sandbox`.
pub fn exec(_args: SandboxArgs) -> i32 {
    eprintln!("sandspec: sandbox: not implemented yet");
    125
}
