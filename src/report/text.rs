//! The matrix as plain text for a terminal: one line per case, one column
//! per backend, and the reasons of non-passing cells below.

use std::fmt::Write as _;

use super::input::Status;
use super::matrix::Matrix;

/// Renders the matrix.
pub fn render(m: &Matrix) -> String {
    let mut out = String::new();
    let id_w = m
        .rows
        .iter()
        .map(|r| r.id.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let col_w: Vec<usize> = m
        .columns
        .iter()
        .map(|c| c.label.chars().count().max(5))
        .collect();
    let _ = write!(out, "{:id_w$}", "case");
    for (c, w) in m.columns.iter().zip(&col_w) {
        let _ = write!(out, "  {:w$}", c.label);
    }
    out.push('\n');
    for row in &m.rows {
        let _ = write!(out, "{:id_w$}", row.id);
        for (cell, w) in row.cells.iter().zip(&col_w) {
            let s = cell.as_ref().map(|c| c.label()).unwrap_or("-");
            let _ = write!(out, "  {s:w$}");
        }
        out.push('\n');
    }
    out.push('\n');
    for c in &m.columns {
        let counts: Vec<String> = Status::ALL
            .iter()
            .filter_map(|s| c.counts.get(s).map(|n| format!("{n} {}", s.as_str())))
            .collect();
        let _ = writeln!(
            out,
            "{}: {} {} — {}{}; isolation cases on the driver's word alone: {} of {}",
            c.label,
            c.backend,
            c.version,
            if counts.is_empty() {
                "no cases".to_string()
            } else {
                counts.join(", ")
            },
            if c.mechanism_differs > 0 {
                format!(" (PASS*: {} by another mechanism)", c.mechanism_differs)
            } else {
                String::new()
            },
            c.isolation_driver_word,
            c.isolation_run
        );
    }
    let mut header = false;
    for row in &m.rows {
        for (cell, column) in row.cells.iter().zip(&m.columns) {
            let Some(cell) = cell else { continue };
            if cell.status == Status::Pass && !cell.differs() {
                continue;
            }
            let detail = cell.detail();
            if detail.is_empty() {
                continue;
            }
            if !header {
                out.push_str("\nreasons:\n");
                header = true;
            }
            let _ = writeln!(
                out,
                "  {} on {} ({}): {}",
                row.id,
                column.label,
                cell.status.as_str(),
                detail.replace('\n', "; ")
            );
        }
    }
    out
}
