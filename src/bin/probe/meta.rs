//! Changes to a file other than its content through open(2): mode, owner,
//! extended attributes, size, times, device nodes; and `write-size`, which
//! writes a file of a given size.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  chmod PATH MODE             chown PATH UID[:GID]        setxattr PATH NAME VALUE
  truncate PATH SIZE          utimes PATH SECS            mknod PATH c|b MAJOR MINOR
  write-size PATH SIZE";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let c = |i: usize| sys::cstring(a.os(i).map(|s| s.as_os_str()).unwrap_or_default());
    Ok(Some(match op {
        "chmod" => {
            a.expect(2, 2, "PATH MODE")?;
            let mode = a.str(1)?;
            let mode = u32::from_str_radix(mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("invalid mode {mode:?} (octal, e.g. 0755)"))?;
            chmod(&c(0)?, mode)
        }
        "chown" => {
            a.expect(2, 2, "PATH UID[:GID]")?;
            let spec = a.str(1)?;
            let (uid, gid) = match spec.split_once(':') {
                Some((u, g)) => (id(u)?, id(g)?),
                None => (id(spec)?, u32::MAX),
            };
            chown(&c(0)?, uid, gid)
        }
        "setxattr" => {
            a.expect(3, 3, "PATH NAME VALUE")?;
            let value = a.os(2).map(|v| v.as_encoded_bytes()).unwrap_or_default();
            setxattr(&c(0)?, &c(1)?, value)
        }
        "truncate" => {
            a.expect(2, 2, "PATH SIZE")?;
            truncate(&c(0)?, args::size(a.str(1)?)?)
        }
        "utimes" => {
            a.expect(2, 2, "PATH SECS")?;
            let secs = args::count(a.str(1)?)?;
            utimes(&c(0)?, secs)
        }
        "mknod" => {
            a.expect(4, 4, "PATH c|b MAJOR MINOR")?;
            let kind = match a.str(1)? {
                "c" => libc::S_IFCHR,
                "b" => libc::S_IFBLK,
                other => return Err(format!("unknown node type {other:?} (c or b)")),
            };
            let major = id(a.str(2)?)?;
            let minor = id(a.str(3)?)?;
            mknod(&c(0)?, kind, major, minor)
        }
        "write-size" => {
            a.expect(2, 2, "PATH SIZE")?;
            write_size(&c(0)?, args::size(a.str(1)?)?)
        }
        _ => return Ok(None),
    }))
}

fn id(s: &str) -> Result<u32, String> {
    args::count(s).and_then(|n| u32::try_from(n).map_err(|_| format!("invalid id {s:?}")))
}

fn status(op: &str, ret: libc::c_int) -> Report {
    if ret == 0 {
        Report::ok(op, None)
    } else {
        Report::os_error(op, &io::Error::last_os_error())
    }
}

/// lstat(2), for reporting what a change left.
fn lstat(path: &CString) -> Option<libc::stat> {
    // SAFETY: stat is plain data; lstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and out-pointer.
    (unsafe { libc::lstat(path.as_ptr(), &mut st) } == 0).then_some(st)
}

/// `chmod PATH MODE` (octal). "mode" = the mode found afterwards (octal
/// string), when the file can be stat'ed.
pub fn chmod(path: &CString, mode: u32) -> Report {
    // SAFETY: a valid C string.
    let r = status("chmod", unsafe { libc::chmod(path.as_ptr(), mode) });
    match lstat(path) {
        Some(st) => r.with("mode", Value::from(format!("{:04o}", st.st_mode & 0o7777))),
        None => r,
    }
}

/// `chown PATH UID[:GID]`: chown(2); a missing GID leaves the group.
/// "uid" and "gid" = the owner found afterwards.
pub fn chown(path: &CString, uid: u32, gid: u32) -> Report {
    // SAFETY: a valid C string; -1 (u32::MAX) leaves an id unchanged.
    let r = status("chown", unsafe { libc::chown(path.as_ptr(), uid, gid) });
    match lstat(path) {
        Some(st) => r
            .with("uid", Value::from(st.st_uid))
            .with("gid", Value::from(st.st_gid)),
        None => r,
    }
}

/// `setxattr PATH NAME VALUE`: setxattr(2), creating or replacing.
pub fn setxattr(path: &CString, name: &CString, value: &[u8]) -> Report {
    // SAFETY: valid C strings; the value is valid for its length.
    status("setxattr", unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `truncate PATH SIZE`: truncate(2) by path, no open needed.
pub fn truncate(path: &CString, size: u64) -> Report {
    let Ok(size) = libc::off_t::try_from(size) else {
        return Report::os_error("truncate", &io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: a valid C string.
    status("truncate", unsafe { libc::truncate(path.as_ptr(), size) })
}

/// `utimes PATH SECS`: set access and modification times to SECS after
/// the epoch. "mtime" = the modification time found afterwards.
pub fn utimes(path: &CString, secs: u64) -> Report {
    let t = libc::timespec {
        tv_sec: secs as _,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: a valid C string and two timespecs.
    let r = status("utimes", unsafe {
        libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0)
    });
    match lstat(path) {
        Some(st) => r.with("mtime", Value::from(st.st_mtime)),
        None => r,
    }
}

/// `mknod PATH c|b MAJOR MINOR`: a character or block device node, mode
/// 0600.
pub fn mknod(path: &CString, kind: libc::mode_t, major: u32, minor: u32) -> Report {
    let dev = libc::makedev(major, minor);
    // SAFETY: a valid C string.
    status("mknod", unsafe {
        libc::mknod(path.as_ptr(), kind | 0o600, dev)
    })
}

/// `write-size PATH SIZE`: create or truncate PATH and write SIZE bytes
/// of 'x' in 64 KiB chunks, stopping at the first error (EFBIG past a
/// file-size limit: SIGXFSZ is ignored here, ENOSPC, EDQUOT). value =
/// bytes written.
pub fn write_size(path: &CString, size: u64) -> Report {
    const OP: &str = "write-size";
    // SAFETY: setting a signal's disposition to ignore.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    let fd = match sys::owned_fd(fd.into()) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e),
    };
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0u64;
    while written < size {
        let len = (size - written).min(chunk.len() as u64) as usize;
        // SAFETY: `chunk` is valid for `len` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), chunk.as_ptr().cast(), len) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Report::os_error(OP, &e).value(written as i64);
        }
        written += n as u64;
    }
    Report::ok(OP, Some(written as i64))
}
