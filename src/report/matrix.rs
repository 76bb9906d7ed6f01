//! The backend × case matrix built from several run files: one column per
//! run (backend), one row per case id, a cell per (case, backend) that ran.

use std::collections::{BTreeMap, HashMap};

use super::input::{describe_outcome, is_failure, RunFile, Status};
use crate::harness::check::RestsOn;
use crate::kernel::KernelFacts;

/// One column: a run of the corpus against one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column heading: the driver name, made unique when two runs share it.
    pub label: String,
    /// The backend's name from its handshake.
    pub backend: String,
    /// The backend's version.
    pub version: String,
    /// Claimed capabilities.
    pub capabilities: Vec<String>,
    /// The kernel of the run.
    pub kernel: Option<KernelFacts>,
    /// Cases per status.
    pub counts: BTreeMap<Status, usize>,
    /// Passes by another mechanism (counted as passes too).
    pub mechanism_differs: usize,
    /// Isolation cases that ran (not skipped, no error), and how many of
    /// them rest on the driver's word alone.
    pub isolation_run: usize,
    /// Of those, resting on the driver's word alone.
    pub isolation_driver_word: usize,
    /// The run file.
    pub source: String,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The verdict.
    pub status: Status,
    /// Why (failures, skips, errors, expected failures).
    pub reason: Option<String>,
    /// The expectation file's reason, when the case was listed.
    pub expected_failure: Option<String>,
    /// The outcome, described (`exited 0`, `timeout`, …).
    pub outcome: Option<String>,
    /// Wall time of the case.
    pub duration_us: u64,
    /// A pass whose properties all held while mechanisms differed: those
    /// checks, `check: observed`.
    pub mechanism_differs: Vec<String>,
    /// The verdict rests on the driver's word alone (no check of the
    /// harness's own observed anything).
    pub driver_word: bool,
}

impl Cell {
    /// `PASS*` for a pass by another mechanism, else the status's label.
    pub fn label(&self) -> &'static str {
        if self.differs() {
            "PASS*"
        } else {
            self.status.label()
        }
    }

    /// A pass by another mechanism.
    pub fn differs(&self) -> bool {
        self.status == Status::Pass && !self.mechanism_differs.is_empty()
    }

    /// What there is to say when looking closer, one part per line: the
    /// expectation file's reason (for a listed case), the harness's reason,
    /// the outcome.
    pub fn detail_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if let Some(x) = &self.expected_failure {
            if self.reason.as_deref() != Some(x.as_str()) {
                parts.push(format!("known failure: {x}"));
            }
        }
        if let Some(r) = &self.reason {
            parts.push(r.clone());
        }
        if let Some(o) = &self.outcome {
            parts.push(format!("outcome: {o}"));
        }
        if self.driver_word && self.status != Status::Skip {
            parts.push("rests on the driver's word alone".into());
        }
        parts
    }

    /// [`Cell::detail_parts`], one per line.
    pub fn detail(&self) -> String {
        self.detail_parts().join("\n")
    }
}

/// One row: a case, and its cell per column (`None`: not in that run).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The case id.
    pub id: String,
    /// The case's tags (from the first run that has it).
    pub tags: Vec<String>,
    /// One per column.
    pub cells: Vec<Option<Cell>>,
}

impl Row {
    /// The area: the id up to its first dot (`net` for `net.deny.dns-udp`).
    pub fn area(&self) -> &str {
        self.id.split('.').next().unwrap_or(&self.id)
    }

    /// True when the columns that ran the case disagree on pass vs not.
    pub fn differs(&self) -> bool {
        let mut seen = self
            .cells
            .iter()
            .flatten()
            .map(|c| is_failure(c.status))
            .collect::<Vec<_>>();
        seen.dedup();
        seen.len() > 1
    }
}

/// The whole matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Backends, in the order the files were given.
    pub columns: Vec<Column>,
    /// Cases, in corpus order (first appearance across the files).
    pub rows: Vec<Row>,
}

impl Matrix {
    /// Builds the matrix from run files, in the order given.
    pub fn build(runs: &[RunFile]) -> Matrix {
        let mut label_uses: HashMap<&str, usize> = HashMap::new();
        for r in runs {
            *label_uses.entry(r.driver.name.as_str()).or_default() += 1;
        }
        let columns = runs
            .iter()
            .map(|r| {
                let mut counts = BTreeMap::new();
                for c in &r.cases {
                    *counts.entry(c.status).or_insert(0) += 1;
                }
                let ran: Vec<_> = r
                    .cases
                    .iter()
                    .filter(|c| {
                        c.is_isolation() && !matches!(c.status, Status::Skip | Status::Error)
                    })
                    .collect();
                let label = if label_uses[r.driver.name.as_str()] > 1 {
                    let file = r
                        .path
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_else(|| r.path.display().to_string());
                    format!("{} ({file})", r.driver.name)
                } else {
                    r.driver.name.clone()
                };
                Column {
                    label,
                    backend: r.driver.backend.clone(),
                    version: r.driver.version.clone(),
                    capabilities: r.driver.capabilities.clone(),
                    kernel: r.kernel.clone(),
                    counts,
                    mechanism_differs: r.cases.iter().filter(|c| c.differs()).count(),
                    isolation_run: ran.len(),
                    isolation_driver_word: ran
                        .iter()
                        .filter(|c| c.rests_on == Some(RestsOn::Driver))
                        .count(),
                    source: r.path.display().to_string(),
                }
            })
            .collect();

        let mut order: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut tags: HashMap<String, Vec<String>> = HashMap::new();
        for r in runs {
            for c in &r.cases {
                if !index.contains_key(&c.id) {
                    index.insert(c.id.clone(), order.len());
                    order.push(c.id.clone());
                    tags.insert(c.id.clone(), c.tags.clone());
                }
            }
        }
        let rows = order
            .into_iter()
            .map(|id| {
                let cells = runs
                    .iter()
                    .map(|r| {
                        r.case(&id).map(|c| Cell {
                            status: c.status,
                            reason: c.reason.clone(),
                            expected_failure: c.expected_failure.clone(),
                            outcome: c.outcome.as_ref().map(describe_outcome),
                            duration_us: c.duration_us,
                            mechanism_differs: c
                                .mechanism_differs
                                .iter()
                                .map(|f| f.fingerprint())
                                .collect(),
                            driver_word: c.rests_on == Some(RestsOn::Driver),
                        })
                    })
                    .collect();
                Row {
                    tags: tags.remove(&id).unwrap_or_default(),
                    id,
                    cells,
                }
            })
            .collect();
        Matrix { columns, rows }
    }

    /// Rows grouped by area, areas in order of first appearance.
    pub fn areas(&self) -> Vec<(&str, Vec<&Row>)> {
        let mut out: Vec<(&str, Vec<&Row>)> = Vec::new();
        for row in &self.rows {
            match out.iter_mut().find(|(a, _)| *a == row.area()) {
                Some((_, rows)) => rows.push(row),
                None => out.push((row.area(), vec![row])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(name: &str, file: &str, cases: &str) -> RunFile {
        RunFile::parse(
            &format!(
                r#"{{"format":"sandspec-report","format_version":1,
                "driver":{{"name":"{name}","backend":"{name}","version":"1"}},"cases":[{cases}]}}"#
            ),
            Path::new(file),
        )
        .unwrap()
    }

    #[test]
    fn rows_follow_first_appearance_and_missing_cells_are_none() {
        let a = run(
            "a",
            "a.json",
            r#"{"id":"fs.one","status":"pass"},{"id":"net.two","status":"fail","reason":"leaked"}"#,
        );
        let b = run(
            "b",
            "b.json",
            r#"{"id":"net.two","status":"pass"},{"id":"net.three","status":"skip","reason":"no cap"}"#,
        );
        let m = Matrix::build(&[a, b]);
        let ids: Vec<&str> = m.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["fs.one", "net.two", "net.three"]);
        assert!(m.rows[0].cells[1].is_none());
        assert_eq!(
            m.rows[1].cells[0].as_ref().unwrap().reason.as_deref(),
            Some("leaked")
        );
        assert!(m.rows[1].differs());
        assert!(!m.rows[0].differs());
        assert_eq!(m.columns[0].counts[&Status::Fail], 1);
        assert!(!m.rows[0].cells[0].as_ref().unwrap().differs());
        let areas: Vec<&str> = m.areas().iter().map(|(a, _)| *a).collect();
        assert_eq!(areas, ["fs", "net"]);
    }

    #[test]
    fn a_pass_by_another_mechanism_and_the_evidence_are_shown() {
        let a = run(
            "a",
            "a.json",
            r#"{"id":"net.x","status":"pass","tags":["isolation"],"rests_on":"observed",
                "reason":"mechanism differs (probe.errno: ECONNREFUSED)",
                "mechanism_differs":[{"check":"probe.errno","kind":"mechanism","observed":"ECONNREFUSED","message":"m"}]},
               {"id":"fs.y","status":"pass","tags":["isolation"],"rests_on":"driver"}"#,
        );
        let m = Matrix::build(&[a]);
        let x = m.rows[0].cells[0].as_ref().unwrap();
        assert!(x.differs());
        assert_eq!(x.label(), "PASS*");
        assert_eq!(x.mechanism_differs, ["probe.errno: ECONNREFUSED"]);
        let y = m.rows[1].cells[0].as_ref().unwrap();
        assert_eq!(y.label(), "PASS");
        assert!(y.detail().contains("driver's word"));
        let c = &m.columns[0];
        assert_eq!(
            (
                c.mechanism_differs,
                c.isolation_run,
                c.isolation_driver_word
            ),
            (1, 2, 1)
        );
    }

    #[test]
    fn two_runs_of_one_driver_get_distinct_labels() {
        let a = run("x", "old.json", "");
        let b = run("x", "new.json", "");
        let m = Matrix::build(&[a, b]);
        assert_eq!(m.columns[0].label, "x (old.json)");
        assert_eq!(m.columns[1].label, "x (new.json)");
    }
}
