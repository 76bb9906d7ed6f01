//! Parsing of operation arguments: sizes, counts, durations, addresses,
//! signals. Errors are usage messages.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The arguments after the operation name.
pub struct Args<'a> {
    op: &'a str,
    rest: &'a [OsString],
}

impl<'a> Args<'a> {
    /// Wraps the arguments of `op`.
    pub fn new(op: &'a str, rest: &'a [OsString]) -> Args<'a> {
        Args { op, rest }
    }

    /// Exactly `min..=max` arguments, or a usage error naming the form.
    pub fn expect(&self, min: usize, max: usize, form: &str) -> Result<(), String> {
        let n = self.rest.len();
        if n < min || n > max {
            let usage = format!("usage: sandspec-probe {} {form}", self.op);
            return Err(usage.trim_end().to_owned());
        }
        Ok(())
    }

    /// Argument `i` as raw bytes (paths, text).
    pub fn os(&self, i: usize) -> Option<&'a OsString> {
        self.rest.get(i)
    }

    /// All arguments from `i` on.
    pub fn from(&self, i: usize) -> &'a [OsString] {
        self.rest.get(i..).unwrap_or(&[])
    }

    /// Argument `i` as UTF-8.
    pub fn str(&self, i: usize) -> Result<&'a str, String> {
        let a = self
            .rest
            .get(i)
            .ok_or_else(|| format!("{}: missing argument {}", self.op, i + 1))?;
        a.to_str()
            .ok_or_else(|| format!("{}: argument {:?} is not UTF-8", self.op, a))
    }
}

/// `12`, `256M`, `1G`: K/M/G/T suffixes are powers of 1024.
pub fn size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (expected e.g. 4096, 64K, 256M, 1G)");
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n = count(digits).map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// A non-negative decimal integer.
pub fn count(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid number {s:?}"));
    }
    s.parse().map_err(|_| format!("invalid number {s:?}"))
}

/// Seconds, fractional allowed: `2`, `0.25`.
pub fn secs(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected seconds, e.g. 2 or 0.5)");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(f).map_err(|_| bad())
}

/// `IP:PORT` (IPv6 as `[::1]:PORT`); `localhost` means 127.0.0.1. No name
/// resolution: the probe must not depend on /etc or a resolver.
pub fn addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| format!("invalid port in {s:?}"))?;
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse()
        .map_err(|_| format!("invalid address {s:?} (expected IP:PORT)"))
}

/// A signal: a number (`9`, `0` for "no signal") or a name with or
/// without `SIG` (`KILL`, `SIGSEGV`, `term`).
pub fn signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = count(s) {
        return match i32::try_from(n) {
            Ok(n) if n <= 64 => Ok(n),
            _ => Err(format!("invalid signal number {s:?}")),
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_suffixes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64K"), Ok(64 << 10));
        assert_eq!(size("256M"), Ok(256 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert!(size("12X").is_err());
        assert!(size("M").is_err());
        assert!(size("-1").is_err());
        assert!(size("99999999999T").is_err());
    }

    #[test]
    fn durations_allow_fractions() {
        assert_eq!(secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(secs("-1").is_err());
        assert!(secs("nan").is_err());
        assert!(secs("").is_err());
    }

    #[test]
    fn addresses_are_literal() {
        assert_eq!(
            addr("127.0.0.1:53"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 53)))
        );
        assert_eq!(
            addr("localhost:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert!(addr("[::1]:8080").is_ok());
        assert!(addr("example.com:53").is_err());
        assert!(addr("127.0.0.1").is_err());
    }

    #[test]
    fn signals_by_number_or_name() {
        assert_eq!(signal("9"), Ok(libc::SIGKILL));
        assert_eq!(signal("KILL"), Ok(libc::SIGKILL));
        assert_eq!(signal("SIGSEGV"), Ok(libc::SIGSEGV));
        assert_eq!(signal("term"), Ok(libc::SIGTERM));
        assert_eq!(signal("0"), Ok(0));
        assert!(signal("NOPE").is_err());
        assert!(signal("65").is_err());
    }
}
