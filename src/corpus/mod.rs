//! The conformance corpus: the case format ([`case`]), loading with strict
//! validation ([`load`]), templates ([`template`]) and making a case real
//! ([`setup`]).
//!
//! A case file holds one case, or several related ones as a multi-document
//! YAML stream (documents separated by `---` lines). Loading is strict and
//! collects every problem of every file before failing: unknown fields,
//! wrong types, unparseable sizes and regexes, unknown tags, capabilities
//! and oracles, duplicate ids, isolation cases without a control, unknown
//! template variables. Each problem names `file:line:column`.
//!
//! YAML is parsed with serde-saphyr: serde_yaml is deprecated and flagged
//! unmaintained (RUSTSEC-2024-0320), and serde-saphyr reports the line and
//! column of every error.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{DefaultMessageFormatter, MessageFormatter};

pub mod bounds;
pub mod case;
pub mod locate;
pub mod matcher;
pub mod schema;
pub mod setup;
pub mod template;
pub mod validate;
pub mod vocab;

use case::Case;
use locate::{Index, Pos};

/// A case and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCase {
    /// The case, as written (templates not yet expanded).
    pub case: Case,
    /// The file it was read from.
    pub path: PathBuf,
}

/// One problem in a case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub col: u64,
    /// What is wrong, on one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            crate::escape::path(&self.file),
            self.line,
            self.col,
            crate::escape::line(&self.message)
        )
    }
}

/// Everything wrong with a corpus; displayed one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusError {
    /// The problems, in file order, then line order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CorpusError {}

/// The default corpus: `conformance/` in the current directory when it
/// exists, else the one shipped with this source tree.
pub fn default_cases_dir() -> PathBuf {
    let here = PathBuf::from("conformance");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
    }
}

/// Loads a case file, or every `*.yaml`/`*.yml` file under a directory
/// (recursively, in sorted path order; names starting with `.` are skipped).
///
/// Strict: unknown fields, wrong types, duplicate ids (naming both files),
/// bad regexes, bad sizes, unknown tags/capabilities/oracles, an
/// isolation-tagged case without a control, a template variable that does
/// not exist, an `expect.oracles` key not listed in `oracles` are all
/// errors. Every problem of every file is collected, not just the first.
pub fn load(path: &Path) -> Result<Vec<LoadedCase>, CorpusError> {
    load_with(path, &bounds::CaseLimits::default())
}

/// [`load`], with `limits` on the sizes a case may generate instead of the
/// defaults (see [`bounds`]).
pub fn load_with(path: &Path, limits: &bounds::CaseLimits) -> Result<Vec<LoadedCase>, CorpusError> {
    let files = match case_files(path) {
        Ok(f) => f,
        Err(message) => {
            return Err(CorpusError {
                problems: vec![Problem {
                    file: path.to_path_buf(),
                    line: 1,
                    col: 1,
                    message,
                }],
            })
        }
    };
    let mut loader = Loader::new(limits);
    for file in files {
        match crate::input::read_text(&file) {
            Ok(text) => loader.file(&file, &text),
            Err(e) => loader.problems.push(Problem {
                file: file.clone(),
                line: 1,
                col: 1,
                message: input_problem(e),
            }),
        }
    }
    loader.finish()
}

/// Loads the cases in `text` as if read from `file` (for tests and
/// fuzzing: the same checks as [`load_with`], without the filesystem).
pub fn load_text(
    file: &Path,
    text: &str,
    limits: &bounds::CaseLimits,
) -> Result<Vec<LoadedCase>, CorpusError> {
    let mut loader = Loader::new(limits);
    loader.file(file, text);
    loader.finish()
}

/// The cases and problems of the files loaded so far; ids are checked
/// across files.
struct Loader<'l> {
    limits: &'l bounds::CaseLimits,
    ids: HashMap<String, (PathBuf, Pos)>,
    cases: Vec<LoadedCase>,
    problems: Vec<Problem>,
}

impl<'l> Loader<'l> {
    fn new(limits: &'l bounds::CaseLimits) -> Self {
        Loader {
            limits,
            ids: HashMap::new(),
            cases: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn finish(self) -> Result<Vec<LoadedCase>, CorpusError> {
        if self.problems.is_empty() {
            Ok(self.cases)
        } else {
            Err(CorpusError {
                problems: self.problems,
            })
        }
    }

    /// Every document of one file.
    fn file(&mut self, file: &Path, text: &str) {
        let limits = self.limits;
        let (ids, cases, problems) = (&mut self.ids, &mut self.cases, &mut self.problems);
        let file = file.to_path_buf();
        let mut push = |pos: Pos, message: String| {
            problems.push(Problem {
                file: file.clone(),
                line: pos.line,
                col: pos.col,
                message,
            });
        };
        let docs = documents(text);
        if docs.is_empty() {
            push(Pos::START, "no case in this file".into());
        }
        for (first_line, doc) in docs {
            let offset = first_line - 1;
            let ix = Index::build(doc, offset);
            if !ix.tags().is_empty() {
                for (pos, tag) in ix.tags() {
                    push(
                        *pos,
                        format!("YAML tag {tag:?} is not allowed: case files use plain values"),
                    );
                }
                continue;
            }
            let case = match parse(doc) {
                Ok(c) => c,
                Err((pos, message)) => {
                    let pos = pos.map_or(
                        Pos {
                            line: first_line,
                            col: 1,
                        },
                        |p| Pos {
                            line: p.line + offset,
                            col: p.col,
                        },
                    );
                    push(pos, message);
                    continue;
                }
            };
            for (pos, message) in validate::check(&case, &ix) {
                push(pos, message);
            }
            for (pos, message) in bounds::check(&case, &ix, limits) {
                push(pos, message);
            }
            let id_pos = ix.value("id").unwrap_or(Pos {
                line: first_line,
                col: 1,
            });
            if let Some((other, other_pos)) = ids.get(&case.id) {
                push(
                    id_pos,
                    format!(
                        "duplicate id {:?}: also at {}:{}:{}",
                        case.id,
                        other.display(),
                        other_pos.line,
                        other_pos.col
                    ),
                );
                continue;
            }
            ids.insert(case.id.clone(), (file.clone(), id_pos));
            cases.push(LoadedCase {
                case,
                path: file.clone(),
            });
        }
    }
}

/// Refuses a YAML text with an explicit tag (`!custom`, `!!binary`), for
/// the other YAML files sandspec reads (expectation files, driver
/// registrations): `FILE:LINE:COL: YAML tag "…" is not allowed`.
pub fn reject_yaml_tags(text: &str, file: &Path) -> Result<(), String> {
    match Index::build(text, 0).tags().first() {
        None => Ok(()),
        Some((pos, tag)) => Err(format!(
            "{}:{}:{}: YAML tag {:?} is not allowed: this file uses plain values",
            crate::escape::path(file),
            pos.line,
            pos.col,
            crate::escape::line(tag)
        )),
    }
}

/// Deserialises one document; an error comes with its position in the
/// document, when the parser knows it.
fn parse(doc: &str) -> Result<Case, (Option<Pos>, String)> {
    let options = serde_saphyr::options! {
        // `yes`/`on` are not booleans: only true and false.
        strict_booleans: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Case>(doc, options).map_err(|e| {
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            col: l.column(),
        });
        let inner = e.without_snippet();
        let raw = match inner {
            // The parser's "expected sequence start" is a type mismatch:
            // say so, since the value it got is right there at the position.
            serde_saphyr::Error::Unexpected { expected, .. } => {
                format!("wrong type: expected {expected}")
            }
            other => DefaultMessageFormatter.format_message(other).into_owned(),
        };
        (pos, one_line(&raw))
    })
}

/// Control characters and line breaks in a message become spaces, so one
/// problem stays one line.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a YAML stream at document markers (`---` and `...` lines): the
/// first line (from 1) and text of each document with content. A line
/// starting `---` or `...` at column 0 always ends the document before it
/// in YAML, so splitting there is exact, and each document keeps its own
/// line numbers through the offset.
fn documents(text: &str) -> Vec<(u64, &str)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u64;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i as u64 + 1;
        let body = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            body == m || body.starts_with(&format!("{m} ")) || body.starts_with(&format!("{m}\t"))
        };
        if is_marker("---") && offset > start {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
        if is_marker("...") {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = line_no + 1;
        }
    }
    docs.push((start_line, &text[start..]));
    docs.into_iter().filter(|(_, d)| has_content(d)).collect()
}

/// True when a document has anything besides blank lines, comments and markers.
fn has_content(doc: &str) -> bool {
    doc.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "...")
    })
}

/// A read failure as a problem's message: the file is already named in
/// front of it.
fn input_problem(e: crate::input::InputError) -> String {
    use crate::input::InputError;
    match e {
        InputError::NotRegular { kind, .. } => {
            format!("failed to read case file: it is {kind}, not a regular file")
        }
        InputError::TooLarge { limit, .. } => {
            format!("failed to read case file: it is larger than {limit} bytes")
        }
        InputError::NotText { source, .. } => {
            format!("failed to read case file: it is not UTF-8 text ({source})")
        }
        InputError::Io { source, .. } => format!("failed to read case file: {source}"),
    }
}

fn case_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("failed to read cases: {e}"))?;
    if !meta.is_dir() {
        // Checked when it is read: a FIFO or a device is refused there,
        // never opened for reading.
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    walk(path, &mut out, &mut Vec::new())?;
    out.sort();
    if out.is_empty() {
        return Err("failed to read cases: no *.yaml or *.yml file in this directory".into());
    }
    Ok(out)
}

/// Directories of a corpus tree that hold other YAML than cases: driver
/// registrations and per-backend expectation files.
pub const NOT_CASES: &[&str] = &["drivers", "expectations"];

/// Collects case files below `dir`. `ancestors` holds the (device, inode)
/// of every directory being walked, so a symlink back up the tree is an
/// error instead of endless recursion.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, ancestors: &mut Vec<(u64, u64)>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let show = crate::escape::path;
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("failed to read directory {}: {e}", show(dir)))?;
    let id = (meta.dev(), meta.ino());
    if ancestors.contains(&id) {
        return Err(format!(
            "failed to read directory {}: it leads back to a directory above it (a symlink loop)",
            show(dir)
        ));
    }
    ancestors.push(id);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to read directory {}: {e}", show(dir)))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("failed to read directory {}: {e}", show(dir)))?;
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            if NOT_CASES.contains(&entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            walk(&p, out, ancestors)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    ancestors.pop();
    Ok(())
}

#[cfg(test)]
mod feature_tests;
#[cfg(test)]
mod tests;
