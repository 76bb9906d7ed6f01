//! `read` and `write`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};

use crate::report::Report;

/// The text `write` puts in a file when none is given.
pub const DEFAULT_TEXT: &[u8] = b"sandspec\n";

/// `read PATH`: a file is read to the end (value = bytes), a directory is
/// listed (value = entries, without `.` and `..`).
pub fn read(path: &OsStr) -> Report {
    match read_path(path) {
        Ok((n, is_dir)) => Report::ok("read", Some(n)).with("dir", is_dir.into()),
        Err(e) => Report::os_error("read", &e),
    }
}

fn read_path(path: &OsStr) -> io::Result<(i64, bool)> {
    // Open first, so a denial comes from the same call for files and
    // directories (Landlock checks the open).
    let mut file = File::open(path)?;
    if file.metadata()?.is_dir() {
        let mut n = 0;
        for entry in std::fs::read_dir(path)? {
            entry?;
            n += 1;
        }
        return Ok((n, true));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: i64 = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok((total, false)),
            Ok(n) => total += n as i64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `write PATH [TEXT]`: create or truncate, write TEXT; value = bytes.
pub fn write(path: &OsStr, text: &[u8]) -> Report {
    let result = File::create(path).and_then(|mut f| f.write_all(text));
    match result {
        Ok(()) => Report::ok("write", Some(text.len() as i64)),
        Err(e) => Report::os_error("write", &e),
    }
}
