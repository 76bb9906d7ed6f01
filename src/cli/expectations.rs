//! `sandspec expectations update --from RUN.json FILE`: writes a backend's
//! expectation file from a run.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::report::{expectations, input::RunFile};

/// Arguments of `sandspec expectations`.
#[derive(Debug, Args)]
pub struct ExpectationsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ExpectationsAction,
}

/// `sandspec expectations` subcommands.
#[derive(Debug, Subcommand)]
pub enum ExpectationsAction {
    /// Update (or create) FILE from a run, in the typed form: keeps existing
    /// reasons, `bug:` and `if:`, records how each listed case fails now,
    /// adds new failures with the harness's reason, removes cases that now
    /// pass; never writes a leak. Reads the untyped form of earlier
    /// versions too (that is how a file is migrated).
    Update {
        /// A run file written by `sandspec run --json`.
        #[arg(long, value_name = "RUN.json")]
        from: PathBuf,
        /// The expectation file (created when missing).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also remove the entries of cases the run skipped (e.g. after the
        /// driver stopped claiming a capability they need).
        #[arg(long)]
        prune_skipped: bool,
    },
}

/// Runs `sandspec expectations`.
pub fn exec(args: ExpectationsArgs) -> i32 {
    match args.action {
        ExpectationsAction::Update {
            from,
            file,
            prune_skipped,
        } => {
            let run = match RunFile::load(&from) {
                Ok(r) => r,
                Err(e) => {
                    say!("sandspec: expectations: {e}");
                    return super::EXIT_USAGE;
                }
            };
            match expectations::update(&file, &run, prune_skipped) {
                Ok(u) => {
                    println!("{}", u.describe(&file));
                    0
                }
                Err(e) => {
                    say!("sandspec: expectations: {e}");
                    super::EXIT_USAGE
                }
            }
        }
    }
}
