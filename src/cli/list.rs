//! `sandspec list`: the cases of a corpus, one per line.

use std::path::PathBuf;

use clap::Args;

use crate::corpus::case::Tag;
use crate::corpus::{self, vocab};

/// Arguments of `sandspec list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// A case file or a directory of them (default: ./conformance, else the
    /// corpus shipped with sandspec).
    #[arg(long, value_name = "PATH")]
    pub cases: Option<PathBuf>,
    /// Only cases with this tag.
    #[arg(long, value_name = "T")]
    pub tag: Option<Tag>,
    /// Also print each case's file and upstream references (`refs:`).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Size limits on what a case generates.
    #[command(flatten)]
    pub limits: super::CaseLimitArgs,
}

/// Runs `sandspec list`: prints `ID  TAGS  SUMMARY` per case; a corpus that
/// does not load prints its problems and exits 2.
pub fn exec(args: ListArgs) -> i32 {
    let path = args.cases.unwrap_or_else(corpus::default_cases_dir);
    let cases = match corpus::load_with(&path, &args.limits.limits()) {
        Ok(c) => c,
        Err(e) => {
            say!("{e}");
            say!(
                "sandspec: failed to load cases from {}: {} problem(s)",
                crate::escape::path(&path),
                e.problems.len()
            );
            return super::EXIT_USAGE;
        }
    };
    let selected: Vec<_> = cases
        .iter()
        .filter(|c| args.tag.is_none_or(|t| c.case.tags.contains(&t)))
        .collect();
    let width = selected.iter().map(|c| c.case.id.len()).max().unwrap_or(0);
    let tags: Vec<String> = selected
        .iter()
        .map(|c| {
            let names: Vec<String> = c.case.tags.iter().map(|t| vocab::tag_name(*t)).collect();
            names.join(",")
        })
        .collect();
    let tag_width = tags.iter().map(String::len).max().unwrap_or(0);
    for (c, t) in selected.iter().zip(&tags) {
        println!(
            "{:width$}  {:tag_width$}  {}",
            c.case.id,
            t,
            crate::escape::line(&c.case.summary)
        );
        if args.verbose {
            println!("{:width$}  file: {}", "", crate::escape::path(&c.path));
            if !c.case.refs.is_empty() {
                println!(
                    "{:width$}  refs: {}",
                    "",
                    crate::escape::line(&c.case.refs.join(" "))
                );
            }
        }
    }
    0
}
