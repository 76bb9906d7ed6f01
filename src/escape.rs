//! Escaping text that came from outside (paths, arguments, case text, a
//! driver's stderr) before it goes into a message: a control byte printed
//! raw can move the cursor, recolour or clear a terminal, or forge a line
//! in a CI log. Control characters become `\n`, `\t`, `\x1b` or `\u{9b}`;
//! bytes of a path that are not UTF-8 become `\xff`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether `c` must not reach a terminal raw: C0 controls, DEL and C1
/// controls (`ESC` and `CSI` among them).
fn is_control(c: char) -> bool {
    c.is_control()
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` on one line: every control character escaped, line breaks included.
/// For a value inside a message (an argument, a case's text).
pub fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole message for a terminal or a log: line breaks and tabs are kept
/// (a message may span lines on purpose), every other control character
/// is escaped.
pub fn message(s: &str) -> Cow<'_, str> {
    let bad = |c: char| is_control(c) && c != '\n' && c != '\t';
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Raw bytes as text: UTF-8 runs kept (controls escaped as in [`line`]),
/// other bytes as `\xNN`.
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_control(c) {
                push_escaped(&mut out, c);
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// A path for a message: [`bytes`] of its raw bytes, so neither a control
/// character nor a non-UTF-8 name can break the line it is on.
pub fn path(p: &Path) -> String {
    bytes(p.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(line("plain é"), "plain é");
        assert_eq!(line("a\x1b[2Jb\nc\td"), "a\\x1b[2Jb\\nc\\td");
        assert_eq!(line("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(line("del\x7f"), "del\\x7f");
        assert_eq!(
            message("two\nlines\x1b]0;t\x07"),
            "two\nlines\\x1b]0;t\\x07"
        );
    }

    #[test]
    fn paths_escape_controls_and_non_utf8_bytes() {
        use std::ffi::OsStr;
        let p = Path::new(OsStr::from_bytes(b"/tmp/a\nb\xff\x1bc"));
        assert_eq!(path(p), "/tmp/a\\nb\\xff\\x1bc");
        assert_eq!(path(Path::new("/usr/bin")), "/usr/bin");
    }
}
