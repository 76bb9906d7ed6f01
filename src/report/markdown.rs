//! The matrix as GitHub-flavoured Markdown: a summary table, the matrix,
//! and the reasons of every non-passing cell as numbered notes (a table
//! cell has no room for them).

use std::fmt::Write as _;

use super::input::Status;
use super::matrix::Matrix;

/// Escapes text for a Markdown table cell.
fn cell_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// Renders the matrix.
pub fn render(m: &Matrix, title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", cell_text(title));
    let _ = writeln!(
        out,
        "{} backends × {} cases.\n",
        m.columns.len(),
        m.rows.len()
    );

    out.push_str("| driver | backend | version |");
    for s in Status::ALL {
        let _ = write!(out, " {} |", s.as_str());
    }
    out.push_str(" pass* | driver's word |");
    out.push_str("\n|---|---|---|");
    for _ in Status::ALL {
        out.push_str("---:|");
    }
    out.push_str("---:|---:|");
    out.push('\n');
    for c in &m.columns {
        let _ = write!(
            out,
            "| {} | {} | {} |",
            cell_text(&c.label),
            cell_text(&c.backend),
            cell_text(&c.version)
        );
        for s in Status::ALL {
            let _ = write!(out, " {} |", c.counts.get(&s).copied().unwrap_or(0));
        }
        let _ = write!(
            out,
            " {} | {} of {} |",
            c.mechanism_differs, c.isolation_driver_word, c.isolation_run
        );
        out.push('\n');
    }
    out.push_str(
        "\n`PASS*`: every property the harness observes held, by another mechanism than \
         the case names (another errno, exit code or probe report). *driver's word*: \
         isolation cases run whose verdict rests on the driver's word alone.\n\n",
    );

    out.push_str("| case |");
    for c in &m.columns {
        let _ = write!(out, " {} |", cell_text(&c.label));
    }
    out.push_str("\n|---|");
    for _ in &m.columns {
        out.push_str("---|");
    }
    out.push('\n');
    let mut notes: Vec<String> = Vec::new();
    for row in &m.rows {
        let _ = write!(out, "| `{}` |", row.id.replace('`', "'"));
        for (cell, column) in row.cells.iter().zip(&m.columns) {
            match cell {
                None => out.push_str(" — |"),
                Some(cell) => {
                    let detail = cell.detail();
                    let plain = cell.status == Status::Pass && !cell.differs();
                    if plain || detail.is_empty() {
                        let _ = write!(out, " {} |", cell.label());
                    } else {
                        notes.push(format!(
                            "`{}` on **{}**: {}",
                            row.id.replace('`', "'"),
                            cell_text(&column.label),
                            cell_text(&detail)
                        ));
                        let _ = write!(out, " {} [{}] |", cell.label(), notes.len());
                    }
                }
            }
        }
        out.push('\n');
    }
    if !notes.is_empty() {
        out.push_str("\n## Reasons\n\n");
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {n}", i + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::input::RunFile;
    use std::path::Path;

    #[test]
    fn failures_get_numbered_notes_and_pipes_are_escaped() {
        let a = RunFile::parse(
            r#"{"format":"sandspec-report","format_version":1,"driver":{"name":"a|b"},
            "cases":[{"id":"x.one","status":"pass"},{"id":"x.two","status":"fail","reason":"got 1 | 2\nlines"}]}"#,
            Path::new("a.json"),
        )
        .unwrap();
        let md = render(&Matrix::build(&[a]), "m");
        assert!(md.contains("| `x.one` | PASS |"), "{md}");
        assert!(md.contains("| `x.two` | FAIL [1] |"), "{md}");
        assert!(
            md.contains("1. `x.two` on **a\\|b**: got 1 \\| 2 lines"),
            "{md}"
        );
    }
}
