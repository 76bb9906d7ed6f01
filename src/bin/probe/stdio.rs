//! Operations on the probe's own environment and standard streams: flood,
//! flood-both, env, cwd, stdin, write-stderr.

use std::io::{self, Read, Write};

use serde_json::{Map, Value};

use crate::report::Report;

const CHUNK: usize = 64 * 1024;
/// How much of stdin `stdin` echoes back in "text".
const TEXT_MAX: usize = 4096;

/// `flood BYTES`: write BYTES 'x' to stdout in 64 KiB chunks, stop at the
/// first error (EPIPE when the reader went away); report on stderr.
/// value = bytes written; ok = all of them.
pub fn flood(bytes: u64) -> Report {
    let chunk = [b'x'; CHUNK];
    let mut written: u64 = 0;
    while written < bytes {
        let len = (bytes - written).min(CHUNK as u64) as usize;
        // Straight to fd 1: no buffering between the probe and the pipe.
        // SAFETY: `chunk` is valid for `len <= CHUNK` bytes.
        let n = unsafe { libc::write(1, chunk.as_ptr().cast(), len) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Report::os_error("flood", &e)
                .value(written as i64)
                .on_stderr();
        }
        written += n as u64;
    }
    Report::ok("flood", Some(written as i64)).on_stderr()
}

/// `env`: every environment variable, in field "env".
pub fn env() -> Report {
    let vars: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                Value::from(v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    let n = vars.len() as i64;
    Report::ok("env", Some(n)).with("env", Value::Object(vars))
}

/// `cwd`: the current directory, in field "cwd".
pub fn cwd() -> Report {
    match std::env::current_dir() {
        Ok(dir) => {
            Report::ok("cwd", None).with("cwd", Value::from(dir.to_string_lossy().into_owned()))
        }
        Err(e) => Report::os_error("cwd", &e),
    }
}

/// `stdin`: read to EOF; value = bytes; "text" = the first 4096, lossy.
pub fn stdin() -> Report {
    let mut head = Vec::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut input = io::stdin().lock();
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let keep = n.min(TEXT_MAX.saturating_sub(head.len()));
                head.extend_from_slice(&buf[..keep]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Report::os_error("stdin", &e).value(total as i64),
        }
    }
    Report::ok("stdin", Some(total as i64)).with(
        "text",
        Value::from(String::from_utf8_lossy(&head).into_owned()),
    )
}

/// `write-stderr TEXT`: TEXT on stderr as given; value = bytes.
pub fn write_stderr(text: &[u8]) -> Report {
    let mut err = io::stderr().lock();
    match err.write_all(text).and_then(|()| err.flush()) {
        Ok(()) => Report::ok("write-stderr", Some(text.len() as i64)),
        Err(e) => Report::os_error("write-stderr", &e),
    }
}

/// `flood-both BYTES`: write BYTES 'x' to stdout and BYTES 'y' to stderr,
/// alternating 64 KiB chunks, so a reader that drains one stream before
/// the other blocks the probe; stop at the first error. The report goes
/// to stderr; value = bytes written in all, "stdout" and "stderr" each.
pub fn flood_both(bytes: u64) -> Report {
    const OP: &str = "flood-both";
    let chunks = [[b'x'; CHUNK], [b'y'; CHUNK]];
    let mut written = [0u64; 2];
    let mut failure = None;
    'outer: while written.iter().any(|&w| w < bytes) {
        for (i, fd) in [1, 2].into_iter().enumerate() {
            if written[i] >= bytes {
                continue;
            }
            let len = (bytes - written[i]).min(CHUNK as u64) as usize;
            // SAFETY: `chunks[i]` is valid for `len <= CHUNK` bytes.
            let n = unsafe { libc::write(fd, chunks[i].as_ptr().cast(), len) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                failure = Some(e);
                break 'outer;
            }
            written[i] += n as u64;
        }
    }
    // The report must start a line of its own after the flood.
    if written[1] > 0 {
        // SAFETY: one byte from a static buffer.
        unsafe { libc::write(2, b"\n".as_ptr().cast(), 1) };
    }
    let total = (written[0] + written[1]) as i64;
    let report = match failure {
        None => Report::ok(OP, Some(total)),
        Some(e) => Report::os_error(OP, &e).value(total),
    };
    report
        .with("stdout", Value::from(written[0]))
        .with("stderr", Value::from(written[1]))
        .on_stderr()
}
