//! Detours through the filesystem's name space: hard links, renames,
//! symlinks, and reopening a file through `/proc/self/fd`. Each is a way
//! to reach a file under a name (or a file descriptor) the policy did not
//! mean to grant.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  cat PATH                    link SRC DST                link-proc SRC DST
  rename SRC DST [exchange|noreplace]                     symlink TARGET LINK
  proc-reopen PATH read|write [TEXT]";

/// How much of a file `cat` and `proc-reopen read` echo in "text".
const TEXT_MAX: usize = 4096;

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let c = |i: usize| sys::cstring(a.os(i).map(|s| s.as_os_str()).unwrap_or_default());
    Ok(Some(match op {
        "cat" => {
            a.expect(1, 1, "PATH")?;
            cat(&c(0)?)
        }
        "link" => {
            a.expect(2, 2, "SRC DST")?;
            link(&c(0)?, &c(1)?)
        }
        "link-proc" => {
            a.expect(2, 2, "SRC DST")?;
            link_proc(&c(0)?, &c(1)?)
        }
        "rename" => {
            a.expect(2, 3, "SRC DST [exchange|noreplace]")?;
            let flags = match a.os(2).map(|_| a.str(2)).transpose()? {
                None => 0,
                Some("exchange") => libc::RENAME_EXCHANGE,
                Some("noreplace") => libc::RENAME_NOREPLACE,
                Some(other) => return Err(format!("unknown rename flag {other:?}")),
            };
            rename(&c(0)?, &c(1)?, flags)
        }
        "symlink" => {
            a.expect(2, 2, "TARGET LINK")?;
            symlink(&c(0)?, &c(1)?)
        }
        "proc-reopen" => {
            a.expect(2, 3, "PATH read|write [TEXT]")?;
            let text = a.os(2).map(|t| t.as_encoded_bytes());
            match a.str(1)? {
                "read" if text.is_none() => proc_reopen_read(&c(0)?),
                "write" => proc_reopen_write(&c(0)?, text.unwrap_or(b"sandspec\n")),
                _ => return Err("usage: sandspec-probe proc-reopen PATH read|write [TEXT]".into()),
            }
        }
        _ => return Ok(None),
    }))
}

/// Reads up to TEXT_MAX bytes of the head and counts the rest.
fn read_all(mut f: impl Read) -> io::Result<(i64, Vec<u8>)> {
    let mut head = Vec::new();
    let mut total = 0i64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok((total, head)),
            Ok(n) => {
                let keep = n.min(TEXT_MAX.saturating_sub(head.len()));
                head.extend_from_slice(&buf[..keep]);
                total += n as i64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn open(path: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string; the result is checked.
    sys::owned_fd(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) }.into())
}

fn text_of(head: &[u8]) -> Value {
    Value::from(String::from_utf8_lossy(head).into_owned())
}

/// `cat PATH`: read a file; value = bytes, "text" = the first 4096
/// (lossy UTF-8), so what leaked shows in the run's stdout.
pub fn cat(path: &CString) -> Report {
    match open(path, libc::O_RDONLY).and_then(|fd| read_all(std::fs::File::from(fd))) {
        Ok((n, head)) => Report::ok("cat", Some(n)).with("text", text_of(&head)),
        Err(e) => Report::os_error("cat", &e),
    }
}

fn status(op: &str, ret: libc::c_int) -> Report {
    if ret == 0 {
        Report::ok(op, None)
    } else {
        Report::os_error(op, &io::Error::last_os_error())
    }
}

/// `link SRC DST`: link(2), a second name for SRC's inode.
pub fn link(src: &CString, dst: &CString) -> Report {
    // SAFETY: two valid C strings.
    status("link", unsafe { libc::link(src.as_ptr(), dst.as_ptr()) })
}

/// The `/proc/self/fd/N` name of an fd.
fn proc_fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// `link-proc SRC DST`: open SRC with O_PATH (no access is checked), then
/// linkat("/proc/self/fd/N", DST, AT_SYMLINK_FOLLOW): a new name for a
/// file reached only by a path-less descriptor.
pub fn link_proc(src: &CString, dst: &CString) -> Report {
    const OP: &str = "link-proc";
    let fd = match open(src, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("open")),
    };
    let from = proc_fd_path(&fd);
    // SAFETY: valid C strings; AT_FDCWD for both directories.
    let ret = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    status(OP, ret)
}

/// `rename SRC DST [exchange|noreplace]`: renameat2(2) with the flag.
pub fn rename(src: &CString, dst: &CString, flags: libc::c_uint) -> Report {
    // The raw syscall: the musl that Rust's static target bundles has no
    // renameat2() wrapper, and the kernel matrix runs this probe built there.
    // SAFETY: valid C strings; AT_FDCWD for both directories; integer flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            flags,
        )
    };
    status("rename", ret as libc::c_int)
}

/// `symlink TARGET LINK`: symlink(2).
pub fn symlink(target: &CString, link: &CString) -> Report {
    // SAFETY: two valid C strings.
    status("symlink", unsafe {
        libc::symlink(target.as_ptr(), link.as_ptr())
    })
}

/// `proc-reopen PATH read`: open PATH with O_PATH (which checks no
/// access), then open "/proc/self/fd/N" for reading and read it all.
/// value = bytes, "text" = the first 4096; "stage" says which open failed.
pub fn proc_reopen_read(path: &CString) -> Report {
    const OP: &str = "proc-reopen";
    let fd = match open(path, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("open")),
    };
    let reopened = match open(&proc_fd_path(&fd), libc::O_RDONLY) {
        Ok(f) => f,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("reopen")),
    };
    match read_all(std::fs::File::from(reopened)) {
        Ok((n, head)) => Report::ok(OP, Some(n)).with("text", text_of(&head)),
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("read")),
    }
}

/// `proc-reopen PATH write [TEXT]`: open PATH with O_PATH, then open
/// "/proc/self/fd/N" for writing (truncating) and write TEXT (default
/// "sandspec\n"). value = bytes written.
pub fn proc_reopen_write(path: &CString, text: &[u8]) -> Report {
    const OP: &str = "proc-reopen";
    let fd = match open(path, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("open")),
    };
    let reopened = match open(&proc_fd_path(&fd), libc::O_WRONLY | libc::O_TRUNC) {
        Ok(f) => f,
        Err(e) => return Report::os_error(OP, &e).with("stage", Value::from("reopen")),
    };
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::write(reopened.as_raw_fd(), text.as_ptr().cast(), text.len()) };
    match sys::check(n as libc::c_long) {
        Ok(n) => Report::ok(OP, Some(n)),
        Err(e) => Report::os_error(OP, &e).with("stage", Value::from("write")),
    }
}
