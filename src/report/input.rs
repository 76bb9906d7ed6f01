//! Reading the JSON files `sandspec run --json` writes (format
//! `sandspec-report`, version 1). Only the fields the matrix, the diff and
//! the expectation update need are read; unknown fields are ignored, as the
//! format promises that fields are only ever added within a version.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::harness::check::{CheckFailure, RestsOn};
use crate::kernel::KernelFacts;
use crate::policy::Outcome;

/// The `format` value of a run file.
pub const FORMAT: &str = "sandspec-report";
/// The `format_version` this reader understands.
pub const FORMAT_VERSION: u32 = 1;

pub use crate::harness::status::Status;

/// The backend did not do what the case asks: a failure, known or not, or
/// a run that broke. (`skip` says nothing about the backend; `xpass` means
/// the case passed.)
pub fn is_failure(s: Status) -> bool {
    matches!(s, Status::Fail | Status::Xfail | Status::Error)
}

/// The driver section of a run file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunDriver {
    /// As selected: `reference`, a registry name, or a command line.
    pub name: String,
    /// The backend's own name, from its handshake.
    #[serde(default)]
    pub backend: String,
    /// The backend's version, from its handshake.
    #[serde(default)]
    pub version: String,
    /// The capabilities it claimed.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// One case of a run file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunCase {
    /// Stable case id.
    pub id: String,
    /// The verdict.
    pub status: Status,
    /// Why (absent for a plain pass).
    #[serde(default)]
    pub reason: Option<String>,
    /// Wall time of the whole case, in microseconds.
    #[serde(default)]
    pub duration_us: u64,
    /// The outcome of the run under test, when it ran.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The reason from the expectation file, when the case is listed.
    #[serde(default)]
    pub expected_failure: Option<String>,
    /// The case's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What the verdict rests on (absent in files of earlier versions).
    #[serde(default)]
    pub rests_on: Option<RestsOn>,
    /// Every check that failed in the run that decided the verdict.
    #[serde(default)]
    pub failures: Vec<CheckFailure>,
    /// For a pass: mechanism checks that differed while every property held.
    #[serde(default)]
    pub mechanism_differs: Vec<CheckFailure>,
}

impl RunCase {
    /// True for a pass by another mechanism.
    pub fn differs(&self) -> bool {
        self.status == Status::Pass && !self.mechanism_differs.is_empty()
    }

    /// True for an `isolation` case.
    pub fn is_isolation(&self) -> bool {
        self.tags.iter().any(|t| t == "isolation")
    }
}

/// A whole run file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The sandspec version that ran the suite.
    #[serde(default)]
    pub suite_version: String,
    /// Seconds since the epoch when the file was written.
    #[serde(default)]
    pub generated_unix: u64,
    /// The driver every case ran against.
    pub driver: RunDriver,
    /// The kernel every case ran on (absent in hand-written files).
    #[serde(default)]
    pub kernel: Option<KernelFacts>,
    /// Every selected case, in corpus order.
    pub cases: Vec<RunCase>,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl RunFile {
    /// Parses a run file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RunFile, String> {
        let mut r: RunFile = serde_json::from_str(text)
            .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
        if r.format != FORMAT || r.format_version != FORMAT_VERSION {
            return Err(format!(
                "{}: not a {FORMAT} version {FORMAT_VERSION} file (format {:?}, version {}): \
                 write one with `sandspec run --json FILE`",
                path.display(),
                r.format,
                r.format_version
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &r.cases {
            if !seen.insert(c.id.as_str()) {
                return Err(format!("{}: case {} appears twice", path.display(), c.id));
            }
        }
        r.path = path.to_path_buf();
        Ok(r)
    }

    /// Reads and parses a run file.
    pub fn load(path: &Path) -> Result<RunFile, String> {
        let text = crate::input::read_text(path).map_err(|e| e.to_string())?;
        RunFile::parse(&text, path)
    }

    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&RunCase> {
        self.cases.iter().find(|c| c.id == id)
    }
}

/// A short human description of an outcome: `exited 0`, `signal 9`,
/// `timeout`, `setup error (path_error): message`.
pub fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Exited { code } => format!("exited {code}"),
        Outcome::Signaled { signal } => format!("signal {signal}"),
        Outcome::Timeout => "timeout".to_string(),
        Outcome::SetupError { kind, message } => format!("setup error ({kind}): {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_file_parses_and_ignores_fields_it_does_not_need() {
        let text = r#"{"format":"sandspec-report","format_version":1,"suite_version":"0.1.0",
            "generated_unix":1,"driver":{"name":"sandlock","backend":"sandlock","version":"0.9.0",
            "capabilities":["fs.read"]},"counts":{"pass":1},"cases":[{"id":"a.b","status":"fail",
            "reason":"why","duration_us":5,"outcome":{"exited":{"code":1}},"control_outcome":null,
            "expected_failure":null,"tags":["seed"],"file":"x.yaml","new_field":true}]}"#;
        let r = RunFile::parse(text, Path::new("run.json")).unwrap();
        assert_eq!(r.driver.name, "sandlock");
        assert_eq!(r.cases[0].status, Status::Fail);
        assert_eq!(r.cases[0].outcome, Some(Outcome::Exited { code: 1 }));
    }

    #[test]
    fn another_format_or_version_is_refused_with_the_file_name() {
        let e = RunFile::parse(
            r#"{"format":"junit","format_version":1,"driver":{"name":"x"},"cases":[]}"#,
            Path::new("x.json"),
        )
        .unwrap_err();
        assert!(e.contains("x.json") && e.contains("sandspec-report"), "{e}");
        let e = RunFile::parse(
            r#"{"format":"sandspec-report","format_version":2,"driver":{"name":"x"},"cases":[]}"#,
            Path::new("x.json"),
        )
        .unwrap_err();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let e = RunFile::parse("{\n  \"format\": ", Path::new("bad.json")).unwrap_err();
        assert!(e.starts_with("bad.json:2:"), "{e}");
    }

    #[test]
    fn a_duplicate_case_id_is_an_error() {
        let e = RunFile::parse(
            r#"{"format":"sandspec-report","format_version":1,"driver":{"name":"x"},
               "cases":[{"id":"a","status":"pass"},{"id":"a","status":"fail"}]}"#,
            Path::new("d.json"),
        )
        .unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
    }
}
