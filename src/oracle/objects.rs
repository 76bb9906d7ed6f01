//! Kernel objects a run may leave behind, outliving every process: POSIX
//! message queues (/dev/mqueue), SysV shared memory, message queues and
//! semaphore sets (/proc/sysvipc/*), and keys (/proc/keys). They are
//! listed before and after a run; what is new, belongs to the harness's
//! uid and (where the kernel keeps a creation time) was made during the
//! run is the run's, and is removed.
//!
//! None of these can be traced to a process once made, so a case checking
//! them runs alone among such cases (the runner holds [`lock`]), and
//! another process of the same user making an object during the run would
//! be blamed. The implicit keyrings the kernel makes on first use
//! (`_uid.N`, `_uid_ses.N`, `_ses`, `_pid`, `_tid`) are never counted and
//! never removed.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// One kernel object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// A POSIX message queue, by name (without the leading `/`).
    Mqueue(String),
    /// A SysV shared memory segment, by id.
    Shm(i32),
    /// A SysV message queue, by id.
    Msg(i32),
    /// A SysV semaphore set, by id.
    Sem(i32),
    /// A key, by serial number, with its type and description.
    Key(i32, String),
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Mqueue(n) => write!(f, "POSIX message queue /{n}"),
            Object::Shm(id) => write!(f, "SysV shared memory segment {id}"),
            Object::Msg(id) => write!(f, "SysV message queue {id}"),
            Object::Sem(id) => write!(f, "SysV semaphore set {id}"),
            Object::Key(id, what) => write!(f, "key {id:08x} ({what})"),
        }
    }
}

/// The objects present at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    objects: BTreeSet<Object>,
}

/// Serialises the cases that check kernel objects (see the module docs).
pub fn lock() -> MutexGuard<'static, ()> {
    static L: OnceLock<Mutex<()>> = OnceLock::new();
    L.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the epoch, as /proc/sysvipc prints creation times.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Snapshot {
    /// Lists every object of the harness's uid. `Err` when a source cannot
    /// be read at all (then nothing can be said).
    pub fn take() -> Result<Snapshot, String> {
        Self::take_since(0)
    }

    /// As [`Snapshot::take`], keeping SysV objects created at or after
    /// `since` (seconds since the epoch) only.
    fn take_since(since: u64) -> Result<Snapshot, String> {
        let uid = nix::unistd::geteuid().as_raw();
        let mut objects = BTreeSet::new();
        for name in mqueues(uid)? {
            objects.insert(Object::Mqueue(name));
        }
        // (file, kind, column of the creator's uid, column of the creation time)
        type Source = (&'static str, fn(i32) -> Object, usize, usize);
        let sysv: [Source; 3] = [
            ("/proc/sysvipc/shm", Object::Shm, 9, 13),
            ("/proc/sysvipc/msg", Object::Msg, 9, 13),
            ("/proc/sysvipc/sem", Object::Sem, 6, 9),
        ];
        for (file, make, cuid_col, ctime_col) in sysv {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("failed to read {file}: {e}"))?;
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(id), Some(cuid), Some(ctime)) = (
                    f.get(1).and_then(|v| v.parse().ok()),
                    f.get(cuid_col).and_then(|v| v.parse::<u32>().ok()),
                    f.get(ctime_col).and_then(|v| v.parse::<u64>().ok()),
                ) else {
                    continue;
                };
                if cuid == uid && ctime >= since {
                    objects.insert(make(id));
                }
            }
        }
        // /proc/keys is missing without CONFIG_KEYS: then there are no keys.
        if let Ok(text) = std::fs::read_to_string("/proc/keys") {
            for line in text.lines() {
                if let Some(k) = parse_key(line, uid) {
                    objects.insert(k);
                }
            }
        }
        Ok(Snapshot { objects })
    }

    /// What `after` has that this snapshot had not: the run's objects.
    /// SysV objects must also have been created at or after `since`.
    pub fn left_by_run(&self, since: u64) -> Result<Vec<Object>, String> {
        let after = Self::take()?;
        let recent = Self::take_since(since)?;
        Ok(after
            .objects
            .difference(&self.objects)
            .filter(|o| match o {
                Object::Shm(_) | Object::Msg(_) | Object::Sem(_) => recent.objects.contains(o),
                _ => true,
            })
            .cloned()
            .collect())
    }
}

/// The POSIX message queues of `uid`: from /dev/mqueue when the mqueue
/// filesystem is mounted there; else, as root, from a private mount of it
/// in a child's own mount namespace (seen by nobody else, gone with the
/// child). Otherwise they cannot be listed, which is an error.
fn mqueues(uid: u32) -> Result<Vec<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let is_mqueue =
        |p: &str| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == 0x19800202);
    if is_mqueue("/dev/mqueue") {
        let entries = std::fs::read_dir("/dev/mqueue")
            .map_err(|e| format!("failed to list POSIX message queues in /dev/mqueue: {e}"))?;
        return Ok(entries
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect());
    }
    if uid != 0 {
        return Err(
            "failed to list POSIX message queues: /dev/mqueue is not mounted, and \
                    mounting a view of them needs root"
                .into(),
        );
    }
    private_mqueue_listing()
}

/// Lists the mqueue filesystem from a child that mounts it in a mount
/// namespace of its own (root only), with `ls -1A`. Owners are not
/// listed: as root every queue of root's is the harness's uid's, and the
/// before/after difference is what counts.
fn private_mqueue_listing() -> Result<Vec<String>, String> {
    use std::os::unix::process::CommandExt;
    let fail = |e: String| format!("failed to list POSIX message queues in a private mount: {e}");
    let dir = tempfile::Builder::new()
        .prefix("sandspec-mqueue-")
        .tempdir()
        .map_err(|e| fail(e.to_string()))?;
    let target =
        CString::new(dir.path().as_os_str().as_encoded_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut cmd = std::process::Command::new("ls");
    cmd.arg("-1A")
        .arg(dir.path())
        .stdin(std::process::Stdio::null());
    // SAFETY: only system calls run in the child (unshare, mount), on
    // C strings made before the fork, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            let none = std::ptr::null::<libc::c_char>();
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"mqueue".as_ptr(),
                target.as_ptr(),
                c"mqueue".as_ptr(),
                0,
                std::ptr::null(),
            ))
        });
    }
    let out = cmd.output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "ls {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Seconds since the epoch now (the `since` of [`Snapshot::left_by_run`]).
pub fn since_now() -> u64 {
    now_secs()
}

/// One line of /proc/keys (`id flags usage timeout perm uid gid type
/// description`), if it is a key of `uid` the run could have made.
fn parse_key(line: &str, uid: u32) -> Option<Object> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let id = i32::from_str_radix(f.first()?, 16).ok()?;
    let owner: u32 = f.get(5)?.parse().ok()?;
    let ty = *f.get(7)?;
    let desc = f.get(8..)?.join(" ");
    let desc = desc.split(':').next().unwrap_or("").to_string();
    if owner != uid {
        return None;
    }
    let implicit = ty == "keyring"
        && (desc.starts_with("_uid.")
            || desc.starts_with("_uid_ses.")
            || desc.starts_with("_ses")
            || desc == "_pid"
            || desc == "_tid");
    (!implicit).then(|| Object::Key(id, format!("{ty} {desc}")))
}

impl Object {
    /// Removes the object; `Err` says why it could not be.
    pub fn remove(&self) -> Result<(), String> {
        let ok = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(format!(
                    "failed to remove {self}: {}",
                    std::io::Error::last_os_error()
                ))
            }
        };
        match self {
            Object::Mqueue(name) => {
                let c = CString::new(format!("/{name}"))
                    .map_err(|_| format!("failed to remove {self}: NUL in the name"))?;
                // SAFETY: a valid C string.
                ok(unsafe { libc::mq_unlink(c.as_ptr()) })
            }
            // SAFETY: IPC_RMID with an id and a null buffer.
            Object::Shm(id) => {
                ok(unsafe { libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut()) })
            }
            // SAFETY: as above.
            Object::Msg(id) => {
                ok(unsafe { libc::msgctl(*id, libc::IPC_RMID, std::ptr::null_mut()) })
            }
            // SAFETY: IPC_RMID ignores the semaphore number.
            Object::Sem(id) => ok(unsafe { libc::semctl(*id, 0, libc::IPC_RMID) }),
            Object::Key(id, _) => {
                const KEYCTL_INVALIDATE: libc::c_long = 21;
                // SAFETY: keyctl with integer arguments only.
                let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, *id) };
                ok(if r == 0 { 0 } else { -1 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_parse_and_implicit_keyrings_are_left_out() {
        let user = "1d2c3b4a I--Q---     1 perm 3f010000     0     0 user      sandspec-test: 5";
        assert_eq!(
            parse_key(user, 0),
            Some(Object::Key(0x1d2c3b4a, "user sandspec-test".into()))
        );
        assert_eq!(parse_key(user, 1000), None);
        let implicit = "0a0b0c0d I--Q---     2 perm 3f010000     0 65534 keyring   _uid.0: empty";
        assert_eq!(parse_key(implicit, 0), None);
        let own_ring = "0a0b0c0e I--Q---     1 perm 3f010000     0     0 keyring   mine: empty";
        assert!(parse_key(own_ring, 0).is_some());
    }

    #[test]
    fn a_new_sysv_segment_and_queue_are_found_and_removed() {
        let _l = lock();
        let before = Snapshot::take().unwrap();
        let since = since_now();
        // SAFETY: plain syscalls with integer arguments.
        let shm = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(shm >= 0);
        let name = CString::new(format!("/sandspec-test-{}", std::process::id())).unwrap();
        // SAFETY: a valid name; a null attr means the defaults.
        let mq = unsafe {
            libc::mq_open(
                name.as_ptr(),
                libc::O_CREAT | libc::O_RDWR,
                0o600 as libc::mode_t,
                std::ptr::null_mut::<libc::mq_attr>(),
            )
        };
        let left = before.left_by_run(since).unwrap();
        // Only ours are touched: other processes of this user may make
        // objects meanwhile.
        let mut mine = vec![Object::Shm(shm)];
        if mq >= 0 {
            // SAFETY: closing the descriptor mq_open returned.
            unsafe { libc::mq_close(mq) };
            mine.push(Object::Mqueue(name.to_str().unwrap()[1..].to_string()));
        }
        for o in &mine {
            assert!(left.contains(o), "{o} not in {left:?}");
            o.remove().unwrap();
        }
        let after = before.left_by_run(since).unwrap();
        assert!(mine.iter().all(|o| !after.contains(o)), "{after:?}");
    }
}
