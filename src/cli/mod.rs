//! The command-line interface: one module per subcommand. `main.rs` only
//! parses and calls [`main`].

use clap::{Parser, Subcommand};

pub mod expectations;
pub mod list;
pub mod probe;
pub mod report;
pub mod sandbox;

/// Exit code for bad input or configuration (a malformed case file, a broken
/// driver, an impossible policy).
pub const EXIT_USAGE: i32 = 2;

/// sandspec: conformance harness for Linux process sandboxes.
#[derive(Debug, Parser)]
#[command(name = "sandspec", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Commands,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a command in the reference sandbox.
    Sandbox(Box<sandbox::SandboxArgs>),
    /// Print the kernel facts sandboxing depends on.
    Probe(probe::ProbeArgs),
    /// List the cases of a corpus.
    List(list::ListArgs),
    /// The backend × case matrix of several runs (HTML, Markdown, text), or
    /// the comparison of two runs (--diff).
    Report(report::ReportArgs),
    /// Expectation files: `update --from RUN.json FILE`.
    Expectations(expectations::ExpectationsArgs),
    /// Print the JSON Schema of case files (writes conformance/schema.json).
    #[command(hide = true)]
    Schema,
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Commands::Sandbox(a) => sandbox::exec(*a),
        Commands::Probe(a) => probe::exec(a),
        Commands::List(a) => list::exec(a),
        Commands::Report(a) => report::exec(a),
        Commands::Expectations(a) => expectations::exec(a),
        Commands::Schema => {
            print!("{}", crate::corpus::schema::json());
            0
        }
    }
}
