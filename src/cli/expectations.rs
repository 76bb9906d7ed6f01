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
    /// Update (or create) FILE from a run: keeps existing reasons, adds new
    /// failures with their fail reason, removes cases that now pass.
    Update {
        /// A run file written by `sandspec run --json`.
        #[arg(long, value_name = "RUN.json")]
        from: PathBuf,
        /// The expectation file (created when missing).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs `sandspec expectations`.
pub fn exec(args: ExpectationsArgs) -> i32 {
    match args.action {
        ExpectationsAction::Update { from, file } => {
            let run = match RunFile::load(&from) {
                Ok(r) => r,
                Err(e) => {
                    say!("sandspec: expectations: {e}");
                    return super::EXIT_USAGE;
                }
            };
            match expectations::update(&file, &run) {
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
