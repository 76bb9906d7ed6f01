//! `sandspec report RUN.json…`: the backend × case matrix of several runs,
//! and `--diff OLD.json NEW.json`.

use std::path::PathBuf;

use clap::Args;

use crate::report::{diff, html, input::RunFile, markdown, matrix::Matrix, text};

/// Arguments of `sandspec report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run files written by `sandspec run --json` (one per backend).
    #[arg(required = true, value_name = "RUN.json")]
    pub runs: Vec<PathBuf>,
    /// Write the matrix as one self-contained HTML page.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Write the matrix as Markdown.
    #[arg(long, value_name = "OUT")]
    pub markdown: Option<PathBuf>,
    /// The title of the HTML and Markdown reports.
    #[arg(long, default_value = "sandspec conformance matrix")]
    pub title: String,
    /// Compare two runs (OLD NEW): new failures, fixed, changed, unchanged.
    /// Exits 1 when there are new failures.
    #[arg(long, conflicts_with_all = ["html", "markdown"])]
    pub diff: bool,
}

/// Runs `sandspec report`.
pub fn exec(args: ReportArgs) -> i32 {
    let mut runs = Vec::new();
    for p in &args.runs {
        match RunFile::load(p) {
            Ok(r) => runs.push(r),
            Err(e) => {
                say!("sandspec: report: {e}");
                return super::EXIT_USAGE;
            }
        }
    }
    if args.diff {
        let [old, new] = runs.as_slice() else {
            say!(
                "sandspec: report: --diff compares exactly two runs (OLD.json NEW.json), got {}",
                runs.len()
            );
            return super::EXIT_USAGE;
        };
        let d = diff::diff(old, new);
        print!("{}", diff::render(&d, old, new));
        return if d.new_failures.is_empty() { 0 } else { 1 };
    }
    let m = Matrix::build(&runs);
    let mut wrote = false;
    if let Some(out) = &args.html {
        if let Err(e) = std::fs::write(out, html::render(&m, &args.title)) {
            say!("sandspec: report: failed to write {}: {e}", out.display());
            return super::EXIT_USAGE;
        }
        println!("wrote {}", out.display());
        wrote = true;
    }
    if let Some(out) = &args.markdown {
        if let Err(e) = std::fs::write(out, markdown::render(&m, &args.title)) {
            say!("sandspec: report: failed to write {}: {e}", out.display());
            return super::EXIT_USAGE;
        }
        println!("wrote {}", out.display());
        wrote = true;
    }
    if !wrote {
        print!("{}", text::render(&m));
    }
    0
}
