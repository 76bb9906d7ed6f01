//! A plain-text table for the terminal: a header, aligned columns, numbers
//! right-aligned.

/// A table being built.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank, extra ones dropped).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = cells.into_iter().map(Into::into).collect();
        r.resize(self.header.len(), String::new());
        self.rows.push(r);
    }

    /// The table as lines: the first column left-aligned, the others right.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (cell, &w))| {
                    if i == 0 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// Microseconds for a cell: one decimal below 100, none above.
pub fn us(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A ratio for a cell, or `-`.
pub fn times(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_with_numbers_to_the_right() {
        let mut t = Table::new(["driver", "median µs"]);
        t.row(["bare", "812"]);
        t.row(["reference-proto", "1034"]);
        assert_eq!(
            t.render(),
            "driver           median µs\n\
             bare                   812\n\
             reference-proto       1034\n"
        );
    }

    #[test]
    fn cells_round_by_magnitude() {
        assert_eq!(us(85.14), "85.1");
        assert_eq!(us(1034.4), "1034");
        assert_eq!(times(Some(1.234)), "1.23");
        assert_eq!(times(None), "-");
    }
}
