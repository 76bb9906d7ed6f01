//! The matrix as one self-contained HTML page: inline CSS, no script, no
//! font, image or stylesheet fetched from anywhere. A failing cell carries
//! its reason twice: as a tooltip (`title`) and in a `<details>` that opens
//! in place.

use std::fmt::Write as _;

use super::input::Status;
use super::matrix::{Cell, Column, Matrix};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --pass:#1a7f37; --fail:#cf222e; --error:#8250df; --skip:#6e7781; --xfail:#bf8700; --xpass:#d1242f;
        --bg:#ffffff; --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --head:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; font: 14px/1.45 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p.meta { color: var(--muted); margin: 0 0 16px; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
table { border-collapse: separate; border-spacing: 0; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; z-index: 1; border-bottom: 2px solid var(--line); }
table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.matrix { table-layout: fixed; width: 100%; }
table.matrix th.case-col { width: 330px; }
table.matrix td.case { overflow-wrap: anywhere; }
table.matrix td.cell, table.matrix thead th { overflow: hidden; text-overflow: ellipsis; }
tr.area th { background: #eef1f4; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
tr.differs td.case { box-shadow: inset 3px 0 0 var(--fail); }
.tags { display: block; color: var(--muted); font-size: 11px; }
.badge { display: inline-block; min-width: 52px; text-align: center; padding: 1px 8px; border-radius: 10px;
         font-size: 11.5px; font-weight: 600; color: #fff; letter-spacing: .03em; }
.s-pass { background: var(--pass); } .s-fail { background: var(--fail); } .s-error { background: var(--error); }
.s-skip { background: var(--skip); } .s-xfail { background: var(--xfail); } .s-xpass { background: var(--xpass); }
.s-passm { background: #fff; color: var(--pass); box-shadow: inset 0 0 0 2px var(--pass); }
.word { display: inline-block; margin-left: 4px; color: var(--muted); font-size: 10.5px; }
.absent { color: var(--muted); }
details > summary { cursor: pointer; list-style: none; }
details > summary::-webkit-details-marker { display: none; }
.more { display: inline-block; margin-left: 5px; color: var(--muted); font-size: 11px; transition: transform .1s; }
details[open] .more { transform: rotate(90deg); }
.why { margin-top: 4px; font-size: 12px; color: var(--fg); white-space: pre-wrap; overflow-wrap: anywhere; }
.why p { margin: 0 0 6px; }
.brief { display: block; margin-top: 3px; font-size: 12px; color: var(--muted); overflow: hidden; text-overflow: ellipsis;
         white-space: nowrap; max-width: 100%; }
details[open] .brief { display: none; }
.legend span.badge { margin-right: 4px; }
.legend { color: var(--muted); font-size: 12.5px; }
.legend div { margin: 2px 0; }
label.toggle { display: inline-block; margin: 8px 0 10px; color: var(--muted); cursor: pointer; user-select: none; }
body:has(#only-differing:checked) tr.same { display: none; }
"#;

fn badge(status: Status) -> String {
    format!(
        "<span class=\"badge s-{}\">{}</span>",
        status.as_str(),
        status.label()
    )
}

/// The cell's badge: `PASS*` (outlined) for a pass by another mechanism,
/// and a mark when the verdict rests on the driver's word alone.
fn cell_badge(cell: &Cell) -> String {
    let b = if cell.differs() {
        "<span class=\"badge s-passm\">PASS*</span>".to_string()
    } else {
        badge(cell.status)
    };
    if cell.driver_word && cell.status != Status::Skip {
        format!("{b}<span class=\"word\" title=\"the verdict rests on the driver's word alone\">word</span>")
    } else {
        b
    }
}

fn kernel_text(c: &Column) -> String {
    match &c.kernel {
        Some(k) => format!("{}, Landlock {}", k.release, k.landlock),
        None => "unknown".to_string(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn cell_html(out: &mut String, cell: Option<&Cell>, column: &Column) {
    let Some(cell) = cell else {
        let _ = write!(
            out,
            "<td class=\"cell absent\" title=\"not in the {} run\">&mdash;</td>",
            escape(&column.label)
        );
        return;
    };
    let detail = cell.detail();
    if (cell.status == Status::Pass && !cell.differs()) || detail.is_empty() {
        let _ = write!(
            out,
            "<td class=\"cell\" title=\"{}\">{}</td>",
            escape(&detail),
            cell_badge(cell)
        );
        return;
    }
    // A known failure is best summed up by the expectation file's words
    // (the behaviour observed); anything else by the harness's reason.
    let (first, second) = if cell.status == Status::Xfail {
        (&cell.expected_failure, &cell.reason)
    } else {
        (&cell.reason, &cell.expected_failure)
    };
    let brief = first
        .as_deref()
        .or(second.as_deref())
        .or(cell.outcome.as_deref())
        .map(first_line)
        .unwrap_or("");
    let _ = write!(
        out,
        "<td class=\"cell\" title=\"{}\"><details><summary>{}<span class=\"more\">&#9656;</span>\
         <span class=\"brief\">{}</span></summary><div class=\"why\">{}</div></details></td>",
        escape(&detail),
        cell_badge(cell),
        escape(brief),
        cell.detail_parts()
            .iter()
            .map(|p| format!("<p>{}</p>", escape(p)))
            .collect::<String>()
    );
}

/// Renders the matrix as a complete HTML document.
pub fn render(m: &Matrix, title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(title));
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} backends &times; {} cases. Hover a cell for its reason, or click it to open the details.</p>",
        m.columns.len(),
        m.rows.len()
    );

    // Per-backend summary.
    out.push_str("<h2>Backends</h2>\n<table class=\"summary\">\n<thead><tr><th>driver</th><th>backend</th><th>version</th><th>kernel</th>");
    for s in Status::ALL {
        let _ = write!(out, "<th>{}</th>", badge(s));
    }
    out.push_str(
        "<th><span class=\"badge s-passm\">PASS*</span></th>\
         <th title=\"isolation cases run whose verdict rests on the driver's word alone\">word</th>\
         <th>run file</th></tr></thead>\n<tbody>\n",
    );
    for c in &m.columns {
        let _ = write!(
            out,
            "<tr><td><strong>{}</strong></td><td>{}</td><td><code>{}</code></td><td>{}</td>",
            escape(&c.label),
            escape(&c.backend),
            escape(&c.version),
            escape(&kernel_text(c))
        );
        for s in Status::ALL {
            let n = c.counts.get(&s).copied().unwrap_or(0);
            let _ = write!(out, "<td class=\"num\">{n}</td>");
        }
        let _ = write!(
            out,
            "<td class=\"num\">{}</td><td class=\"num\">{} of {}</td>",
            c.mechanism_differs, c.isolation_driver_word, c.isolation_run
        );
        let _ = writeln!(out, "<td><code>{}</code></td></tr>", escape(&c.source));
    }
    out.push_str("</tbody>\n</table>\n");

    // The matrix.
    out.push_str("<h2>Cases</h2>\n");
    out.push_str(
        "<label class=\"toggle\"><input type=\"checkbox\" id=\"only-differing\"> \
         only cases where the backends disagree</label>\n",
    );
    out.push_str("<table class=\"matrix\">\n<thead><tr><th class=\"case-col\">case</th>");
    for c in &m.columns {
        let caps = if c.capabilities.is_empty() {
            String::new()
        } else {
            format!("claims: {}", c.capabilities.join(", "))
        };
        let _ = write!(
            out,
            "<th title=\"{}\">{}</th>",
            escape(&caps),
            escape(&c.label)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (area, rows) in m.areas() {
        let _ = writeln!(
            out,
            "<tr class=\"area\"><th colspan=\"{}\">{}</th></tr>",
            m.columns.len() + 1,
            escape(area)
        );
        for row in rows {
            let class = if row.differs() { "differs" } else { "same" };
            let tags = if row.tags.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"tags\">{}</span>",
                    escape(&row.tags.join(" "))
                )
            };
            let _ = write!(
                out,
                "<tr class=\"{class}\"><td class=\"case\"><span class=\"id\">{}</span>{tags}</td>",
                escape(&row.id)
            );
            for (cell, column) in row.cells.iter().zip(&m.columns) {
                cell_html(&mut out, cell.as_ref(), column);
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</tbody>\n</table>\n");

    out.push_str(
        "<h2>Legend</h2>\n<div class=\"legend\">\n\
         <div><span class=\"badge s-pass\">PASS</span> every expectation held (and the control run succeeded)</div>\n\
         <div><span class=\"badge s-passm\">PASS*</span> every property the harness observes held (nothing arrived, nothing changed, nothing survived), by another mechanism than the case names (another errno, exit code or probe report): the details say which</div>\n\
         <div><span class=\"word\">word</span> the verdict rests on the driver's word alone: no check of the harness's own observed anything (a driver that lies could pass it)</div>\n\
         <div><span class=\"badge s-fail\">FAIL</span> an expectation did not hold; the reason names it</div>\n\
         <div><span class=\"badge s-error\">ERROR</span> the harness or the driver broke; never a pass</div>\n\
         <div><span class=\"badge s-skip\">SKIP</span> a requirement is unmet (capability not claimed, kernel, program)</div>\n\
         <div><span class=\"badge s-xfail\">XFAIL</span> failed, and listed as a known failure in the backend's expectation file</div>\n\
         <div><span class=\"badge s-xpass\">XPASS</span> passed although listed as a known failure: the expectation is stale</div>\n\
         <div>A red bar left of a case: the backends disagree on it.</div>\n</div>\n",
    );
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::input::RunFile;
    use std::path::Path;

    fn matrix() -> Matrix {
        let a = RunFile::parse(
            r#"{"format":"sandspec-report","format_version":1,"driver":{"name":"evil<b>"},
            "cases":[{"id":"net.deny.tcp","status":"fail","reason":"connected to <127.0.0.1> & \"got in\""},
                     {"id":"fs.read","status":"pass"}]}"#,
            Path::new("a.json"),
        )
        .unwrap();
        Matrix::build(&[a])
    }

    #[test]
    fn reasons_and_names_are_escaped() {
        let html = render(&matrix(), "t");
        assert!(html.contains("evil&lt;b&gt;"));
        assert!(html.contains("connected to &lt;127.0.0.1&gt; &amp; &quot;got in&quot;"));
        assert!(!html.contains("<127.0.0.1>"));
        assert!(!html.contains("evil<b>"));
    }

    #[test]
    fn a_failure_carries_its_reason_in_a_tooltip_and_details() {
        let html = render(&matrix(), "t");
        let cell = html
            .split("<td class=\"cell\" title=\"")
            .nth(1)
            .expect("a cell with a title");
        assert!(cell.starts_with("connected to"), "{cell}");
        assert!(cell.contains("<details><summary><span class=\"badge s-fail\">FAIL</span>"));
    }

    #[test]
    fn the_page_fetches_nothing() {
        let html = render(&matrix(), "t");
        for needle in [
            "http://", "https://", "src=", "<link", "<script", "@import", "url(",
        ] {
            assert!(!html.contains(needle), "the page contains {needle:?}");
        }
    }
}
