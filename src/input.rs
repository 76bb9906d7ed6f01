//! Reading the files a user names (case files, expectation files, run
//! reports, driver registrations): regular files only, and bounded.
//!
//! A FIFO given as a case file would block the reader forever, a device
//! may have side effects on open (a tape rewinds, a watchdog arms), and a
//! huge file would be read into memory whole. So the path is checked with
//! `stat` before it is opened, opened non-blocking, checked again on the
//! open descriptor (the path may have been swapped in between), and read
//! up to a limit.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest input file read (64 MiB): far above any real case file,
/// expectation file or run report, far below what would hurt the harness.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// `stat`, `open` or `read` failed.
    #[error("failed to read {}: {source}", crate::escape::path(.path))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is a FIFO, a device, a socket or a directory.
    #[error("failed to read {}: it is {kind}, not a regular file", crate::escape::path(.path))]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a FIFO", "a directory" …).
        kind: &'static str,
    },
    /// The file is larger than the limit.
    #[error("failed to read {}: it is larger than {limit} bytes", crate::escape::path(.path))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("failed to read {}: it is not UTF-8 text ({source})", crate::escape::path(.path))]
    NotText {
        /// The file.
        path: PathBuf,
        /// Where the encoding broke.
        source: std::string::FromUtf8Error,
    },
}

impl InputError {
    /// Whether the file does not exist (callers may treat that as "empty").
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What a non-regular file is, for the message.
fn kind_of(t: FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Whether `path` (followed through symlinks) is a regular file; `Err`
/// says what it is instead. For directory walks, before anything is opened.
pub fn check_regular(path: &Path) -> Result<(), InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    match kind_of(meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(InputError::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// The bytes of the regular file `path`, at most `limit` of them.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    check_regular(path)?;
    // O_NONBLOCK: should the path have become a FIFO since the check, the
    // open returns at once instead of waiting for a writer.
    let f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read is cut at the limit, and refused.
    f.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// The text of the regular file `path`, at most [`MAX_INPUT_BYTES`].
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let bytes = read_bytes(path, MAX_INPUT_BYTES)?;
    String::from_utf8(bytes).map_err(|source| InputError::NotText {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reads_regular_files_and_refuses_everything_else_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("case.yaml");
        std::fs::write(&f, "id: x\n").unwrap();
        assert_eq!(read_text(&f).unwrap(), "id: x\n");

        let fifo = d.path().join("fifo.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let t0 = Instant::now();
        let e = read_text(&fifo).unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(e.contains("it is a FIFO, not a regular file"), "{e}");

        let dir = d.path().join("dir.yaml");
        std::fs::create_dir(&dir).unwrap();
        let e = read_text(&dir).unwrap_err().to_string();
        assert!(e.contains("it is a directory"), "{e}");

        let e = read_text(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("it is a character device"), "{e}");

        let missing = read_text(&d.path().join("missing")).unwrap_err();
        assert!(missing.is_not_found());
    }

    #[test]
    fn refuses_files_past_the_limit_and_non_utf8() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big");
        std::fs::write(&f, vec![b'a'; 100]).unwrap();
        assert_eq!(read_bytes(&f, 100).unwrap().len(), 100);
        let e = read_bytes(&f, 99).unwrap_err().to_string();
        assert!(e.contains("larger than 99 bytes"), "{e}");
        std::fs::write(&f, b"\xff\xfe").unwrap();
        assert!(read_text(&f).unwrap_err().to_string().contains("not UTF-8"));
    }

    #[test]
    fn control_bytes_in_the_path_are_escaped_in_the_message() {
        let e = read_text(Path::new("/nonexistent/\x1b[31mred\n")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\\x1b[31mred\\n"), "{msg}");
        assert!(!msg.contains('\x1b'));
    }
}
