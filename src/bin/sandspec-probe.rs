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
#[path = "probe/compat.rs"]
mod compat;
#[path = "probe/daemon.rs"]
mod daemon;
#[path = "probe/dns.rs"]
mod dns;
#[path = "probe/exec.rs"]
mod exec;
#[path = "probe/fds.rs"]
mod fds;
#[path = "probe/fs.rs"]
mod fs;
#[path = "probe/ipc.rs"]
mod ipc;
#[path = "probe/kernel.rs"]
mod kernel;
#[path = "probe/limits.rs"]
mod limits;
#[path = "probe/meta.rs"]
mod meta;
#[path = "probe/net.rs"]
mod net;
#[path = "probe/ns.rs"]
mod ns;
#[path = "probe/paths.rs"]
mod paths;
#[path = "probe/process.rs"]
mod process;
#[path = "probe/report.rs"]
mod report;
#[path = "probe/signals.rs"]
mod signals;
#[path = "probe/sockets.rs"]
mod sockets;
#[path = "probe/stdio.rs"]
mod stdio;
#[path = "probe/sys.rs"]
mod sys;
#[path = "probe/trace.rs"]
mod trace;
#[path = "probe/tty.rs"]
mod tty;
#[path = "probe/uring.rs"]
mod uring;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use args::Args;
use report::Report;

const USAGE: &str = "\
usage: sandspec-probe OP [ARGS...]
  read PATH                   write PATH [TEXT]           exec PATH [ARGS...]
  tcp-connect HOST:PORT       tcp-bind HOST:PORT          udp-send HOST:PORT
  dns-query HOST:PORT NAME    raw-socket [HOST:PORT]      io-uring [HOST:PORT]
  abstract-unix-connect NAME  fork-many N                 alloc BYTES
  open-many N                 cpu-burn SECS               setsid-daemon [HOLD_SECS]
  kill-outside PID [SIGNAL]   signal-self SIGNAL          exit CODE
  sleep SECS                  flood BYTES                 env
  cwd                         stdin                       write-stderr TEXT
  udp-socket                  tcp-fastopen HOST:PORT      tcp-fastopen-connect HOST:PORT
  tcp-listen [HOST:PORT] [SECS]                           threads N
  mmap BYTES                  setrlimit RESOURCE VALUE    flood-both BYTES
  mptcp-connect HOST:PORT";

/// One operation family: runs `op` if it is one of its own.
type Family = fn(&str, &Args) -> Result<Option<Report>, String>;

/// The operation families beyond the core ones, with their usage lines.
const FAMILIES: &[(Family, &str)] = &[
    (tty::dispatch, tty::USAGE),
    (sockets::dispatch, sockets::USAGE),
    (compat::dispatch, compat::USAGE),
    (paths::dispatch, paths::USAGE),
    (fds::dispatch, fds::USAGE),
    (meta::dispatch, meta::USAGE),
    (ipc::dispatch, ipc::USAGE),
    (ns::dispatch, ns::USAGE),
    (trace::dispatch, trace::USAGE),
    (signals::dispatch, signals::USAGE),
    (daemon::dispatch, daemon::USAGE),
    (exec::dispatch, exec::USAGE),
    (kernel::dispatch, kernel::USAGE),
];

/// The C entry point (see the crate docs for why not Rust's `main`).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    use std::os::unix::ffi::OsStringExt;
    // SAFETY: signal(2) with a valid signal number and SIG_IGN.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let argc = usize::try_from(argc).unwrap_or(0);
    // SAFETY: the C runtime passes `argc` valid pointers to strings the
    // kernel laid out one after the other.
    unsafe { daemon::remember_argv(argc, argv) };
    let args: Vec<OsString> = (0..argc)
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
            for (_, usage) in FAMILIES {
                eprintln!("{usage}");
            }
            Report::usage(op, msg)
        }
    }
}

/// `unshare FLAGS [OP ARGS...]`: unshare(2) the namespaces named in FLAGS
/// (`user,net,mnt,pid,ipc,uts,cgroup,time`), then, if given, run OP in
/// them and report OP with field "unshared" = FLAGS. A failed unshare is
/// reported as op `unshare`.
fn unshare_then(a: &Args) -> Result<Report, String> {
    a.expect(1, usize::MAX, "FLAGS [OP ARGS...]")?;
    let spec = a.str(0)?;
    let flags = ns::parse_flags(spec)?;
    let rest = a.from(1);
    let Some(inner) = rest.first() else {
        return Ok(ns::unshare_report(spec, flags));
    };
    let inner_op = inner.to_string_lossy().into_owned();
    if inner_op == "unshare" {
        return Err("unshare: the operation after FLAGS cannot be unshare".into());
    }
    // Check the inner operation's arguments before changing anything.
    let inner_args = Args::new(&inner_op, rest.get(1..).unwrap_or(&[]));
    if let Err(e) = ns::unshare(flags) {
        return Ok(
            Report::os_error("unshare", &e).with("namespaces", serde_json::Value::from(spec))
        );
    }
    dispatch(&inner_op, &inner_args).map(|r| r.with("unshared", serde_json::Value::from(spec)))
}

fn dispatch(op: &str, a: &Args) -> Result<Report, String> {
    for (family, _) in FAMILIES {
        if let Some(report) = family(op, a)? {
            return Ok(report);
        }
    }
    let bytes = |i: usize| a.os(i).map(|s| s.as_bytes());
    Ok(match op {
        "unshare" => return unshare_then(a),
        "tcp-fastopen" | "tcp-fastopen-connect" | "mptcp-connect" => {
            a.expect(1, 1, "HOST:PORT")?;
            let addr = args::addr(a.str(0)?)?;
            match op {
                "tcp-fastopen" => net::tcp_fastopen(addr),
                "tcp-fastopen-connect" => net::tcp_fastopen_connect(addr),
                _ => net::mptcp_connect(addr),
            }
        }
        "tcp-listen" => {
            a.expect(0, 2, "[HOST:PORT] [SECS]")?;
            // One argument: an address if it has a colon, else seconds.
            let (addr, secs) = match (a.os(0), a.os(1)) {
                (None, _) => (None, None),
                (Some(_), None) if !a.str(0)?.contains(':') => (None, Some(a.str(0)?)),
                (Some(_), _) => (
                    Some(args::addr(a.str(0)?)?),
                    a.os(1).map(|_| a.str(1)).transpose()?,
                ),
            };
            let secs = secs.map(args::secs).transpose()?.unwrap_or_default();
            net::tcp_listen(addr, secs)
        }
        "threads" => {
            a.expect(1, 1, "N")?;
            limits::threads(args::count(a.str(0)?)?)
        }
        "mmap" => {
            a.expect(1, 1, "BYTES")?;
            limits::mmap(args::size(a.str(0)?)?)
        }
        "setrlimit" => {
            a.expect(2, 2, "RESOURCE VALUE")?;
            let res = limits::resource(a.str(0)?)?;
            let value = match a.str(1)? {
                "unlimited" | "infinity" => libc::RLIM_INFINITY,
                v => args::count(v)?,
            };
            limits::setrlimit(res, value)
        }
        "flood-both" => {
            a.expect(1, 1, "BYTES")?;
            stdio::flood_both(args::size(a.str(0)?)?)
        }
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
            a.expect(0, 1, "[HOST:PORT]")?;
            match a.os(0) {
                Some(_) => net::raw_udp_send(args::addr(a.str(0)?)?),
                None => net::raw_socket(),
            }
        }
        "io-uring" => {
            a.expect(0, 1, "[HOST:PORT]")?;
            match a.os(0) {
                Some(_) => uring::connect(args::addr(a.str(0)?)?),
                None => net::io_uring(),
            }
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
