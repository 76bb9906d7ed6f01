//! sandspec-probe: performs ONE operation inside a sandbox and prints ONE
//! JSON line saying what happened, so conformance cases do not depend on
//! the tools a sandbox's filesystem has.
//!
//! ```text
//! {"op":"tcp-connect","ok":false,"errno":"EACCES","error":"Permission denied (os error 13)","value":null}
//! ```
//!
//! Fields: `op`, `ok`, `errno` (symbolic, or null), `error` (text, or
//! null), `value` (integer, or null), plus op-specific fields. Exit code 0
//! if ok, 1 if the operation failed, 2 on a usage error (with a JSON line
//! carrying "error"). `flood` reports on stderr; `exit CODE` exits with
//! CODE. Usage errors also list the operations on stderr.
//!
//! The probe must start with almost nothing readable: no /proc, no /dev,
//! no /etc. Rust's usual runtime start-up reopens a closed stdin, stdout
//! or stderr on /dev/null and aborts if it cannot; a sandbox may well hand
//! the probe a closed fd and an unreadable /dev. So the probe provides the
//! C `main` itself (`#![no_main]`) and does the one part of that start-up
//! it needs: ignoring SIGPIPE, so `flood` sees EPIPE.
// Unit tests get libtest's own main.
#![cfg_attr(not(test), no_main)]

#[path = "probe/args.rs"]
mod args;
#[path = "probe/dns.rs"]
mod dns;
#[path = "probe/fs.rs"]
mod fs;
#[path = "probe/limits.rs"]
mod limits;
#[path = "probe/net.rs"]
mod net;
#[path = "probe/process.rs"]
mod process;
#[path = "probe/report.rs"]
mod report;
#[path = "probe/stdio.rs"]
mod stdio;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use args::Args;
use report::Report;

const USAGE: &str = "\
usage: sandspec-probe OP [ARGS...]
  read PATH                   write PATH [TEXT]           exec PATH [ARGS...]
  tcp-connect HOST:PORT       tcp-bind HOST:PORT          udp-send HOST:PORT
  dns-query HOST:PORT NAME    raw-socket                  io-uring
  abstract-unix-connect NAME  fork-many N                 alloc BYTES
  open-many N                 cpu-burn SECS               setsid-daemon [HOLD_SECS]
  kill-outside PID [SIGNAL]   signal-self SIGNAL          exit CODE
  sleep SECS                  flood BYTES                 env
  cwd                         stdin                       write-stderr TEXT
udp-socket";

/// The C entry point (see the crate docs for why not Rust's `main`).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    use std::os::unix::ffi::OsStringExt;
    // SAFETY: signal(2) with a valid signal number and SIG_IGN.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes `argc` valid pointers to
            // NUL-terminated strings in `argv`, alive for the whole run.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect();
    run(&args).emit()
}

/// Dispatches `argv` (with argv[0]) to one operation.
fn run(argv: &[OsString]) -> Report {
    let op = argv.get(1).map(|s| s.to_string_lossy().into_owned());
    let op = op.as_deref().unwrap_or("");
    let args = Args::new(op, argv.get(2..).unwrap_or(&[]));
    match dispatch(op, &args) {
        Ok(report) => report,
        Err(msg) => {
            // The list of operations goes to stderr; the JSON line stays short.
            eprintln!("{USAGE}");
            Report::usage(op, msg)
        }
    }
}

fn dispatch(op: &str, a: &Args) -> Result<Report, String> {
    let bytes = |i: usize| a.os(i).map(|s| s.as_bytes());
    Ok(match op {
        "read" => {
            a.expect(1, 1, "PATH")?;
            fs::read(&a.os(0).cloned().unwrap_or_default())
        }
        "write" => {
            a.expect(1, 2, "PATH [TEXT]")?;
            let text = bytes(1).unwrap_or(fs::DEFAULT_TEXT);
            fs::write(&a.os(0).cloned().unwrap_or_default(), text)
        }
        "exec" => {
            a.expect(1, usize::MAX, "PATH [ARGS...]")?;
            process::exec(&a.os(0).cloned().unwrap_or_default(), a.from(1))
        }
        "tcp-connect" => {
            a.expect(1, 1, "HOST:PORT")?;
            net::tcp_connect(args::addr(a.str(0)?)?)
        }
        "tcp-bind" => {
            a.expect(1, 1, "HOST:PORT")?;
            net::tcp_bind(args::addr(a.str(0)?)?)
        }
        "udp-send" => {
            a.expect(1, 1, "HOST:PORT")?;
            net::udp_send(args::addr(a.str(0)?)?)
        }
        "udp-socket" => {
            a.expect(0, 0, "")?;
            net::udp_socket_only()
        }
        "dns-query" => {
            a.expect(2, 2, "HOST:PORT NAME")?;
            net::dns_query(args::addr(a.str(0)?)?, a.str(1)?)
        }
        "raw-socket" => {
            a.expect(0, 0, "")?;
            net::raw_socket()
        }
        "io-uring" => {
            a.expect(0, 0, "")?;
            net::io_uring()
        }
        "abstract-unix-connect" => {
            a.expect(1, 1, "NAME")?;
            net::abstract_unix_connect(bytes(0).unwrap_or_default())
        }
        "fork-many" => {
            a.expect(1, 1, "N")?;
            process::fork_many(args::count(a.str(0)?)?)
        }
        "alloc" => {
            a.expect(1, 1, "BYTES")?;
            limits::alloc(args::size(a.str(0)?)?)
        }
        "open-many" => {
            a.expect(1, 1, "N")?;
            limits::open_many(args::count(a.str(0)?)?)
        }
        "cpu-burn" => {
            a.expect(1, 1, "SECS")?;
            limits::cpu_burn(args::secs(a.str(0)?)?)
        }
        "setsid-daemon" => {
            a.expect(0, 1, "[HOLD_SECS]")?;
            let hold = match a.os(0) {
                Some(_) => args::secs(a.str(0)?)?,
                None => std::time::Duration::ZERO,
            };
            process::setsid_daemon(hold)
        }
        "kill-outside" => {
            a.expect(1, 2, "PID [SIGNAL]")?;
            let pid = a.str(0)?;
            let pid: i32 = pid.parse().map_err(|_| format!("invalid pid {pid:?}"))?;
            let sig = match a.os(1) {
                Some(_) => args::signal(a.str(1)?)?,
                None => libc::SIGTERM,
            };
            process::kill_outside(pid, sig)
        }
        "signal-self" => {
            a.expect(1, 1, "SIGNAL")?;
            match args::signal(a.str(0)?)? {
                0 => return Err("signal-self: signal 0 is not a signal".into()),
                sig => process::signal_self(sig),
            }
        }
        "exit" => {
            a.expect(1, 1, "CODE")?;
            let code = a.str(0)?;
            let code: u8 = code
                .parse()
                .map_err(|_| format!("invalid exit code {code:?} (0-255)"))?;
            process::exit(code)
        }
        "sleep" => {
            a.expect(1, 1, "SECS")?;
            process::sleep(args::secs(a.str(0)?)?)
        }
        "flood" => {
            a.expect(1, 1, "BYTES")?;
            stdio::flood(args::size(a.str(0)?)?)
        }
        "env" => {
            a.expect(0, 0, "")?;
            stdio::env()
        }
        "cwd" => {
            a.expect(0, 0, "")?;
            stdio::cwd()
        }
        "stdin" => {
            a.expect(0, 0, "")?;
            stdio::stdin()
        }
        "write-stderr" => {
            a.expect(1, 1, "TEXT")?;
            stdio::write_stderr(bytes(0).unwrap_or_default())
        }
        "" => return Err("missing operation".into()),
        _ => return Err(format!("unknown operation {op:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Report {
        let argv: Vec<OsString> = std::iter::once("sandspec-probe")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        run(&argv)
    }

    #[test]
    fn unknown_or_missing_operations_are_usage_errors() {
        for args in [&[][..], &["frobnicate"], &["read"], &["read", "a", "b"]] {
            let r = run_args(args);
            assert_eq!(r.exit_code(), report::EXIT_USAGE, "{args:?}");
            assert!(r.line().contains(r#""ok":false"#), "{args:?}");
        }
    }

    #[test]
    fn exit_reports_ok_and_exits_with_the_code() {
        let r = run_args(&["exit", "3"]);
        assert_eq!(r.exit_code(), 3);
        assert!(r.line().starts_with(r#"{"op":"exit","ok":true"#));
    }
}
