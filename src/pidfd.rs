//! Process file descriptors: a handle on one process that turns readable
//! when it exits, for waiting on it without polling /proc or sleeping.

use std::os::fd::{FromRawFd, OwnedFd};

/// A pidfd for `pid`, or `None` when there is no such process or the
/// kernel has no `pidfd_open` (before 5.3). The pid must not be reused
/// between finding it and this call: the caller's unreaped child, or a
/// process it just saw alive (a reuse in between is then a spurious wait,
/// never a missed exit).
pub(crate) fn open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, touches no memory of ours,
    // and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
