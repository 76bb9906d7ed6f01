//! The command-line interface: one module per subcommand. `main.rs` only
//! parses and calls [`main`].

use clap::{Parser, Subcommand};

/// `eprintln!` for messages that may carry outside text (paths, arguments,
/// case text, a driver's words): control characters other than line breaks
/// and tabs are escaped, so they cannot drive the terminal or forge a log.
macro_rules! say {
    ($($t:tt)*) => {
        eprintln!("{}", $crate::escape::message(&format!($($t)*)))
    };
}

pub mod bench;
pub mod driver;
pub mod driver_check;
pub mod expectations;
pub mod list;
pub mod mutants;
pub mod probe;
pub mod report;
pub mod run;
pub mod sandbox;

/// Exit code for bad input or configuration (a malformed case file, a broken
/// driver, an impossible policy).
pub const EXIT_USAGE: i32 = 2;

/// How large the content a case generates may be (`run` and `list`, which
/// load the corpus with the same checks).
#[derive(Debug, Clone, clap::Args)]
pub struct CaseLimitArgs {
    /// Largest generated script body a case may ask for
    /// (`run.script.generated.size`).
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub max_script_size: crate::policy::Size,
    /// Largest total size of one case's setup files (`setup.files`).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub max_setup_size: crate::policy::Size,
}

impl CaseLimitArgs {
    /// The limits for [`crate::corpus::load_with`].
    pub fn limits(&self) -> crate::corpus::bounds::CaseLimits {
        crate::corpus::bounds::CaseLimits {
            script_bytes: self.max_script_size.0,
            setup_bytes: self.max_setup_size.0,
        }
    }
}

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
    /// Run the conformance corpus against a driver.
    Run(Box<run::RunArgs>),
    /// Serve the reference sandbox over the driver protocol on stdin/stdout.
    Driver(driver::DriverArgs),
    /// Check a driver's handshake and one trivial run, and explain faults.
    DriverCheck(driver_check::DriverCheckArgs),
    /// Spawn latency of /bin/true through drivers, side by side with a bare
    /// spawn (or, with --scaling, how the reference sandbox scales).
    Bench(Box<bench::BenchArgs>),
    /// The corpus's mutation score: the reference with one enforcement
    /// mechanism switched off at a time, and the cases that catch each.
    Mutants(mutants::MutantsArgs),
    /// Print the JSON Schema of case files (writes conformance/schema.json).
    #[command(hide = true)]
    Schema,
}

/// For commands that only print: `sandspec probe | head` ends like `cat`
/// would, killed by SIGPIPE, instead of panicking on the failed write (Rust
/// ignores SIGPIPE by default). Commands that write to pipes of their own
/// (drivers' stdin, a sandboxed command's stdin) keep it ignored: a dead
/// reader there is an error to report, not a reason to die.
fn end_quietly_on_a_closed_stdout() {
    // SAFETY: restoring a signal's default disposition is async-signal-safe
    // and touches no memory; it runs before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    if matches!(
        cli.command,
        Commands::Probe(_)
            | Commands::List(_)
            | Commands::Report(_)
            | Commands::Expectations(_)
            | Commands::Schema
    ) {
        end_quietly_on_a_closed_stdout();
    }
    match cli.command {
        Commands::Sandbox(a) => sandbox::exec(*a),
        Commands::Probe(a) => probe::exec(a),
        Commands::List(a) => list::exec(a),
        Commands::Report(a) => report::exec(a),
        Commands::Expectations(a) => expectations::exec(a),
        Commands::Run(a) => run::exec(*a),
        Commands::Driver(a) => driver::exec(a),
        Commands::DriverCheck(a) => driver_check::exec(a),
        Commands::Bench(a) => bench::exec(*a),
        Commands::Mutants(a) => mutants::exec(a),
        Commands::Schema => {
            print!("{}", crate::corpus::schema::json());
            0
        }
    }
}
