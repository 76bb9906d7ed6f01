//! Live progress: a progress bar on a terminal (failures printed above it as
//! they happen), one plain line per case otherwise.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::use_color;
use crate::harness::status::{CaseResult, Status};

/// Prints results as they arrive.
pub struct Live {
    bar: Option<ProgressBar>,
    color: bool,
}

impl Live {
    /// A bar (on stderr) when both stdout and stderr are terminals; plain
    /// lines on stdout otherwise, so `sandspec run > log` keeps every case.
    pub fn new(total: usize) -> Live {
        if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{pos:>4}/{len:4} [{bar:30}] {elapsed} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            Live {
                bar: Some(bar),
                color: use_color(true),
            }
        } else {
            Live {
                bar: None,
                color: use_color(std::io::stdout().is_terminal()),
            }
        }
    }

    /// Reports one finished case.
    pub fn on_result(&mut self, r: &CaseResult) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(r.id.clone());
                // A pass by another mechanism is printed too: visible.
                if r.status != Status::Pass || !r.mechanism_differs.is_empty() {
                    bar.println(line(r, self.color));
                }
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", line(r, self.color));
                let _ = out.flush();
            }
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `PASS  fs.read.allowed (12 ms)`, with the reason for anything else.
pub fn line(r: &CaseResult, color: bool) -> String {
    let ms = r.duration.as_millis();
    let mut s = format!("{} {} ({ms} ms)", paint(r.status, color), r.id);
    if let Some(why) = &r.reason {
        s.push_str(": ");
        s.push_str(&crate::escape::line(why));
    }
    if r.status == Status::Xfail {
        if let Some(listed) = &r.expected_failure {
            s.push_str(&format!(" [expected: {listed}]"));
        }
    }
    for k in &r.kept {
        s.push_str(&format!(" [kept {}]", crate::escape::path(k)));
    }
    s
}

/// The status label, padded, coloured when asked.
pub fn paint(s: Status, color: bool) -> String {
    let label = format!("{:<5}", s.label());
    if !color {
        return label;
    }
    let code = match s {
        Status::Pass => "32",
        Status::Fail | Status::Xpass => "31;1",
        Status::Error => "35;1",
        Status::Skip => "33",
        Status::Xfail => "36",
    };
    format!("\x1b[{code}m{label}\x1b[0m")
}
