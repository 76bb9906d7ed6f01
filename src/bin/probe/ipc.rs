//! Kernel IPC objects that outlive the process that makes them: POSIX
//! message queues, System V shared memory, message queues and semaphores,
//! and keys. Each operation creates one object and, unless told `keep`,
//! removes it again before reporting, so a run without a sandbox leaves
//! nothing behind. `keep` leaves it for a harness leak check, which must
//! then remove it.

use std::ffi::CString;
use std::io;

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  mq-open NAME [keep]         sysv-shm [keep]             sysv-msg [keep]
  sysv-sem [keep]             keyctl-add DESC [process|session|user] [keep]
  request-key TYPE DESC";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    let keep = |i: usize| -> Result<bool, String> {
        match a.os(i).map(|_| a.str(i)).transpose()? {
            None => Ok(false),
            Some("keep") => Ok(true),
            Some(other) => Err(format!("{op}: unexpected {other:?} (only `keep`)")),
        }
    };
    let c = |i: usize| sys::cstring(a.os(i).map(|s| s.as_os_str()).unwrap_or_default());
    Ok(Some(match op {
        "mq-open" => {
            a.expect(1, 2, "NAME [keep]")?;
            let name = queue_name(a.str(0)?)?;
            let name = CString::new(name).map_err(|_| "a NUL in the queue name".to_string())?;
            mq_open(&name, keep(1)?)
        }
        "sysv-shm" | "sysv-msg" | "sysv-sem" => {
            a.expect(0, 1, "[keep]")?;
            sysv(op, keep(0)?)
        }
        "keyctl-add" => {
            a.expect(1, 3, "DESC [process|session|user] [keep]")?;
            let (ring, keep_at) = match a.os(1).map(|_| a.str(1)).transpose()? {
                Some("process") => (KEY_SPEC_PROCESS_KEYRING, 2),
                Some("session") => (KEY_SPEC_SESSION_KEYRING, 2),
                Some("user") => (KEY_SPEC_USER_KEYRING, 2),
                Some("keep") if a.os(2).is_none() => (KEY_SPEC_PROCESS_KEYRING, 1),
                None => (KEY_SPEC_PROCESS_KEYRING, 1),
                Some(other) => return Err(format!("unknown keyring {other:?}")),
            };
            keyctl_add(&c(0)?, ring, keep(keep_at)?)
        }
        "request-key" => {
            a.expect(2, 2, "TYPE DESC")?;
            request_key(&c(0)?, &c(1)?)
        }
        _ => return Ok(None),
    }))
}

/// A queue name from NAME: a leading `/` added if missing, and any other
/// `/` turned into `_`, so that a unique path such as a case's scratch
/// directory can serve as a name.
pub fn queue_name(name: &str) -> Result<String, String> {
    let body = name.strip_prefix('/').unwrap_or(name).replace('/', "_");
    if body.is_empty() || body.len() > 254 {
        return Err(format!("invalid queue name {name:?} (1 to 254 bytes)"));
    }
    Ok(format!("/{body}"))
}

/// `mq-open NAME [keep]`: mq_open(NAME, O_CREAT | O_EXCL | O_RDWR, 0600),
/// then mq_unlink unless `keep`. "name" = the queue's name (with its
/// leading `/`; it shows as /dev/mqueue/NAME where mqueue is mounted).
pub fn mq_open(name: &CString, keep: bool) -> Report {
    const OP: &str = "mq-open";
    // SAFETY: a valid C string; NULL attributes ask for the defaults.
    let mq = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
            std::ptr::null_mut::<libc::mq_attr>(),
        )
    };
    if mq < 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    // SAFETY: `mq` was just opened here.
    unsafe { libc::mq_close(mq) };
    let report = Report::ok(OP, None)
        .with("name", Value::from(name.to_string_lossy().into_owned()))
        .with("kept", Value::from(keep));
    if !keep {
        // SAFETY: a valid C string.
        if unsafe { libc::mq_unlink(name.as_ptr()) } != 0 {
            return Report::os_error(OP, &io::Error::last_os_error())
                .with("stage", Value::from("unlink"));
        }
    }
    report
}

/// `sysv-shm|sysv-msg|sysv-sem [keep]`: a private System V segment (one
/// page), message queue or semaphore set (one semaphore), mode 0600;
/// removed with IPC_RMID unless `keep`. value = its id.
pub fn sysv(op: &str, keep: bool) -> Report {
    let flags = libc::IPC_CREAT | 0o600;
    // SAFETY: the *get calls take no pointers.
    let id = unsafe {
        match op {
            "sysv-shm" => libc::shmget(libc::IPC_PRIVATE, 4096, flags),
            "sysv-msg" => libc::msgget(libc::IPC_PRIVATE, flags),
            _ => libc::semget(libc::IPC_PRIVATE, 1, flags),
        }
    };
    if id < 0 {
        return Report::os_error(op, &io::Error::last_os_error());
    }
    if !keep {
        // SAFETY: IPC_RMID ignores the buffer argument, which is NULL.
        let r = unsafe {
            match op {
                "sysv-shm" => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                "sysv-msg" => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                _ => libc::semctl(id, 0, libc::IPC_RMID),
            }
        };
        if r != 0 {
            return Report::os_error(op, &io::Error::last_os_error())
                .value(i64::from(id))
                .with("stage", Value::from("remove"));
        }
    }
    Report::ok(op, Some(i64::from(id))).with("kept", Value::from(keep))
}

/// Special keyring ids (linux/keyctl.h).
const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
const KEY_SPEC_SESSION_KEYRING: i32 = -3;
const KEY_SPEC_USER_KEYRING: i32 = -4;
const KEYCTL_INVALIDATE: libc::c_long = 21;

/// `keyctl-add DESC [process|session|user] [keep]`: add_key("user", DESC,
/// "sandspec") to the keyring (default: the process keyring, which dies
/// with the probe); invalidated afterwards unless `keep`. value = the
/// key's serial number.
pub fn keyctl_add(desc: &CString, ring: i32, keep: bool) -> Report {
    const OP: &str = "keyctl-add";
    let payload = b"sandspec";
    // SAFETY: valid C strings; the payload is valid for its length.
    let key = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::c_long::from(ring),
        )
    };
    if key < 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    if !keep {
        // SAFETY: keyctl(KEYCTL_INVALIDATE, serial) takes no pointers.
        if unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key) } != 0 {
            return Report::os_error(OP, &io::Error::last_os_error())
                .value(key as i64)
                .with("stage", Value::from("invalidate"));
        }
    }
    Report::ok(OP, Some(key as i64)).with("kept", Value::from(keep))
}

/// `request-key TYPE DESC`: request_key(TYPE, DESC, NULL, 0): look a key
/// up in the keyrings the probe can search, with no upcall to userspace.
/// ok = found (value = its serial); ENOKEY = the keyrings were searched
/// and had none, so the call itself was allowed.
pub fn request_key(ty: &CString, desc: &CString) -> Report {
    // SAFETY: valid C strings; NULL callout info means no upcall.
    let key = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            ty.as_ptr(),
            desc.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_long,
        )
    };
    match sys::check(key) {
        Ok(k) => Report::ok("request-key", Some(k)),
        Err(e) => Report::os_error("request-key", &e),
    }
}
