//! The one JSON line a probe prints, and how the process exits after it.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::Value;

/// Exit code for a usage error (bad or missing arguments).
pub const EXIT_USAGE: i32 = 2;

/// Where the JSON line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    /// `flood` owns stdout, so its report goes to stderr.
    Stderr,
}

/// What one operation observed.
#[derive(Debug)]
pub struct Report {
    op: String,
    ok: bool,
    errno: Option<i32>,
    error: Option<String>,
    value: Option<i64>,
    extra: Vec<(&'static str, Value)>,
    channel: Channel,
    /// Sleep this long after printing (`setsid-daemon HOLD_SECS`).
    hold: Option<Duration>,
    /// Exit code, when not the default (0 if ok, 1 if not).
    exit_code: Option<i32>,
}

impl Report {
    /// The operation succeeded.
    pub fn ok(op: &str, value: Option<i64>) -> Report {
        Report {
            op: op.to_owned(),
            ok: true,
            errno: None,
            error: None,
            value,
            extra: Vec::new(),
            channel: Channel::Stdout,
            hold: None,
            exit_code: None,
        }
    }

    /// The operation failed with an OS error.
    pub fn os_error(op: &str, e: &io::Error) -> Report {
        Report::failed(op, errno_of(e), e.to_string())
    }

    /// The operation failed with this errno (if any) and message.
    pub fn failed(op: &str, errno: Option<i32>, error: String) -> Report {
        Report {
            ok: false,
            errno,
            error: Some(error),
            ..Report::ok(op, None)
        }
    }

    /// The arguments were wrong: nothing was attempted.
    pub fn usage(op: &str, error: String) -> Report {
        Report {
            exit_code: Some(EXIT_USAGE),
            ..Report::failed(op, None, error)
        }
    }

    /// Sets `value`.
    pub fn value(mut self, value: i64) -> Report {
        self.value = Some(value);
        self
    }

    /// Adds an op-specific field.
    pub fn with(mut self, key: &'static str, value: Value) -> Report {
        self.extra.push((key, value));
        self
    }

    /// Prints the report on stderr instead of stdout.
    pub fn on_stderr(mut self) -> Report {
        self.channel = Channel::Stderr;
        self
    }

    /// Sleeps this long after the line is printed.
    pub fn hold(mut self, hold: Duration) -> Report {
        self.hold = Some(hold);
        self
    }

    /// Exits with this code instead of the default.
    pub fn exit_with(mut self, code: i32) -> Report {
        self.exit_code = Some(code);
        self
    }

    /// The JSON line, without the newline; fields in contract order.
    pub fn line(&self) -> String {
        let mut fields: Vec<(&str, Value)> = vec![
            ("op", Value::from(self.op.as_str())),
            ("ok", Value::from(self.ok)),
            ("errno", self.errno.map(errno_name).into()),
            ("error", self.error.clone().into()),
            ("value", self.value.into()),
        ];
        fields.extend(self.extra.iter().map(|(k, v)| (*k, v.clone())));
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Prints the line, holds if asked, and returns the exit code.
    // Only the C `main` calls it, which unit-test builds leave out.
    #[cfg_attr(test, allow(dead_code))]
    pub fn emit(self) -> i32 {
        let line = format!("{}\n", self.line());
        // A closed output is not the probe's failure to report: ignore it.
        let _ = match self.channel {
            Channel::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
            Channel::Stderr => io::stderr().lock().write_all(line.as_bytes()),
        };
        if let Some(hold) = self.hold {
            std::thread::sleep(hold);
        }
        self.exit_code()
    }

    /// 0 if ok, 1 if not, unless set otherwise (usage errors, `exit`).
    pub fn exit_code(&self) -> i32 {
        self.exit_code.unwrap_or(if self.ok { 0 } else { 1 })
    }
}

/// The errno behind an I/O error; errors std makes up itself (a connect
/// timeout) are mapped to the errno they stand for.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or(match e.kind() {
        io::ErrorKind::TimedOut => Some(libc::ETIMEDOUT),
        io::ErrorKind::WouldBlock => Some(libc::EAGAIN),
        _ => None,
    })
}

/// The symbolic name of an errno (`EACCES`), or `E<n>` if unknown.
pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("E{errno}"),
        known => format!("{known:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_contract_fields_in_order() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        let line = Report::os_error("tcp-connect", &e).line();
        assert_eq!(
            line,
            r#"{"op":"tcp-connect","ok":false,"errno":"EACCES","error":"Permission denied (os error 13)","value":null}"#
        );
    }

    #[test]
    fn extra_fields_follow_the_common_ones() {
        let line = Report::ok("cwd", None)
            .with("cwd", Value::from("/tmp"))
            .line();
        assert_eq!(
            line,
            r#"{"op":"cwd","ok":true,"errno":null,"error":null,"value":null,"cwd":"/tmp"}"#
        );
    }

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(errno_name(libc::ENOSYS), "ENOSYS");
        assert_eq!(errno_name(libc::EAGAIN), "EAGAIN");
        assert_eq!(errno_name(9999), "E9999");
    }

    #[test]
    fn exit_codes_follow_ok_and_usage() {
        assert_eq!(Report::ok("x", None).exit_code(), 0);
        assert_eq!(Report::failed("x", None, "no".into()).exit_code(), 1);
        assert_eq!(Report::usage("x", "bad".into()).exit_code(), EXIT_USAGE);
        assert_eq!(Report::ok("exit", None).exit_with(7).exit_code(), 7);
    }
}
