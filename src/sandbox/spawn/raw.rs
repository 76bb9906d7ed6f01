//! Raw system calls (no errno, no TLS, no libc) and the clone calls that
//! create S and G. See the parent module's docs for why.

use std::ffi::{c_long, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

// ---------------------------------------------------------------------------
// Raw system calls: no errno, no TLS, no libc.

/// One system call. Returns the kernel's result: `-errno` on failure.
///
/// # Safety
/// The caller upholds the contract of system call `nr` for these arguments.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
    let [a0, a1, a2, a3, a4, a5] = args;
    let ret: isize;
    // SAFETY: the `syscall` instruction with the kernel's calling convention:
    // number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; result in rax;
    // rcx and r11 clobbered. Memory effects are the syscall's, which the
    // caller vouches for (no `nomem`: the compiler assumes any memory may be
    // read or written).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            in("r8") a4,
            in("r9") a5,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// One system call. Returns the kernel's result: `-errno` on failure.
///
/// # Safety
/// The caller upholds the contract of system call `nr` for these arguments.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
    let [a0, a1, a2, a3, a4, a5] = args;
    let ret: isize;
    // SAFETY: `svc #0` with the kernel's calling convention: number in x8,
    // arguments in x0..x5, result in x0; nothing else is clobbered. Memory
    // effects are the syscall's, which the caller vouches for.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x8") nr,
            inlateout("x0") a0 as isize => ret,
            in("x1") a1,
            in("x2") a2,
            in("x3") a3,
            in("x4") a4,
            in("x5") a5,
            options(nostack),
        );
    }
    ret
}

/// One system call through libc, for the fork-based fallback, where S and
/// G have their own copy of errno. Returns `-errno` on failure.
///
/// # Safety
/// The caller upholds the contract of system call `nr` for these arguments.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
    let [a0, a1, a2, a3, a4, a5] = args;
    // SAFETY: as the caller vouches; only used in forked processes.
    let r = unsafe {
        libc::syscall(
            nr,
            a0 as c_long,
            a1 as c_long,
            a2 as c_long,
            a3 as c_long,
            a4 as c_long,
            a5 as c_long,
        )
    };
    if r == -1 {
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        -(e as isize)
    } else {
        r as isize
    }
}

/// `raw_syscall` with 0 to 6 arguments, each converted with `as usize`.
macro_rules! sys {
    ($nr:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall($nr, [0; 6])
    };
    ($nr:expr, $a:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall($nr, [$a as usize, 0, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall($nr, [$a as usize, $b as usize, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall($nr, [$a as usize, $b as usize, $c as usize, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall($nr, [$a as usize, $b as usize, $c as usize, $d as usize, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, 0],
        )
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr, $f:expr) => {
        $crate::sandbox::spawn::raw::raw_syscall(
            $nr,
            [
                $a as usize,
                $b as usize,
                $c as usize,
                $d as usize,
                $e as usize,
                $f as usize,
            ],
        )
    };
}

pub(crate) use sys;

/// A raw result as `Ok(value)` or `Err(errno)`.
pub(super) fn check(r: isize) -> Result<usize, i32> {
    if (-4095..0).contains(&r) {
        Err(r.wrapping_neg() as i32)
    } else {
        Ok(r as usize)
    }
}

/// Ends the calling process (S or G).
pub(super) fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { sys!(libc::SYS_exit_group, code) };
    }
}

/// The kernel's `struct sigaction` on x86_64 and aarch64 (both define
/// `SA_RESTORER`, so the layout is handler, flags, restorer, mask).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The kernel's sigset size for `rt_sig*` calls.
pub(super) const SIGSET_SIZE: usize = 8;

/// Sets `sig` to `SIG_DFL`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) fn set_default(sig: i32) {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction setting SIG_DFL from a live local.
    unsafe {
        sys!(
            libc::SYS_rt_sigaction,
            sig,
            &dfl as *const KernelSigaction,
            0,
            SIGSET_SIZE
        )
    };
}

/// Sets `sig` to `SIG_DFL` (fork-based fallback).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn set_default(sig: i32) {
    // SAFETY: sigaction from a live local in a forked process.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
}

/// Resets every handled signal, and `SIGPIPE`, to `SIG_DFL`. Called by G
/// with every signal blocked, before it unblocks them and execs.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) fn reset_signal_handlers() {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64usize {
        if sig == libc::SIGKILL as usize || sig == libc::SIGSTOP as usize {
            continue;
        }
        let mut old = dfl;
        // SAFETY: rt_sigaction reading one disposition into a live local.
        let r = unsafe {
            sys!(
                libc::SYS_rt_sigaction,
                sig,
                0,
                &mut old as *mut KernelSigaction,
                SIGSET_SIZE
            )
        };
        if r == 0 && old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN {
            set_default(sig as i32);
        }
    }
    set_default(libc::SIGPIPE);
}

/// Resets every handled signal, and `SIGPIPE`, to `SIG_DFL` (fork-based
/// fallback: libc is usable in a forked process).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn reset_signal_handlers() {
    // SAFETY: sigaction on live locals in a forked, single-threaded process.
    unsafe {
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
            {
                set_default(sig);
            }
        }
    }
    set_default(libc::SIGPIPE);
}

// ---------------------------------------------------------------------------
// Creating S and G.

/// The entry point of a new process; never returns.
pub(super) type Entry = unsafe extern "C" fn(*mut c_void) -> !;

/// A `clone`-family syscall whose child runs `entry(arg)` on the stack the
/// arguments give it: `clone(a0 = flags, a1 = stack top)` or
/// `clone3(a0 = &clone_args, a1 = its size)`. Returns the child's pid, or
/// `-errno`, in the parent.
///
/// # Safety
/// The stack must be 16-byte aligned writable memory that stays mapped
/// while the child runs on it; `entry` must be sound to run in a child
/// created with those flags (see the module docs for `CLONE_VM`).
#[cfg(target_arch = "x86_64")]
unsafe fn clone_raw(nr: c_long, a0: usize, a1: usize, entry: Entry, arg: *mut c_void) -> isize {
    let ret: isize;
    // SAFETY: the syscall (number in rax; arguments in rdi, rsi, and zero
    // for clone's parent tid, child tid and tls in rdx, r10, r8). The parent
    // falls through to label 2 with the result in rax and every other
    // register but rcx and r11 intact. The child starts after `syscall` with
    // rax = 0, the same registers, and rsp at the top of its new stack: it
    // calls entry(arg) there (rsp is 16-byte aligned at the call, as the ABI
    // wants), which never returns, so the child never leaves this asm block.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") nr as isize => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A `clone`-family syscall whose child runs `entry(arg)` on the stack the
/// arguments give it. Returns the child's pid, or `-errno`, in the parent.
///
/// # Safety
/// As for the x86_64 version.
#[cfg(target_arch = "aarch64")]
unsafe fn clone_raw(nr: c_long, a0: usize, a1: usize, entry: Entry, arg: *mut c_void) -> isize {
    let ret: isize;
    // SAFETY: the syscall (number in x8; arguments in x0, x1, and zero for
    // clone's parent tid, tls and child tid in x2..x4). The parent branches
    // to label 2 with the result in x0 and every other register intact. The
    // child starts after `svc` with x0 = 0, the same registers and sp at
    // the top of its new stack (16-byte aligned): it calls entry(arg), which
    // never returns, so the child never leaves this asm block (x30, written
    // by `blr`, only in the child).
    unsafe {
        core::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x0, x21",
            "blr x20",
            "brk #1",
            "2:",
            in("x8") nr,
            inlateout("x0") a0 as isize => ret,
            in("x1") a1,
            in("x2") 0usize,
            in("x3") 0usize,
            in("x4") 0usize,
            in("x20") entry,
            in("x21") arg,
            options(nostack),
        );
    }
    ret
}

/// Starts G: `entry(arg)` in a new process sharing the caller's memory, on
/// `stack_top`, with S suspended until it execs or exits.
///
/// # Safety
/// As for [`clone_raw`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) unsafe fn start_command(stack_top: *mut u8, entry: Entry, arg: *mut c_void) -> isize {
    let flags = libc::CLONE_VM as usize | libc::CLONE_VFORK as usize | libc::SIGCHLD as usize;
    // SAFETY: forwarded from the caller.
    unsafe { clone_raw(libc::SYS_clone, flags, stack_top as usize, entry, arg) }
}

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5, clone3 only): the child starts with
/// every handled signal reset to `SIG_DFL`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// `struct clone_args` of clone3, first version (64 bytes).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Starts S: `entry(arg)` in a new process sharing the caller's memory, on
/// `stack_size` bytes below `stack_top`. Returns the pid or `-errno`.
/// Stores in `cleared`, before S can read it, whether S starts with no
/// signal handler at all (`CLONE_CLEAR_SIGHAND`, which spares G resetting
/// them one by one) or with a copy of the caller's.
///
/// # Safety
/// As for [`clone_raw`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) unsafe fn start_supervisor(
    stack_top: *mut u8,
    stack_size: usize,
    entry: Entry,
    arg: *mut c_void,
    cleared: &AtomicBool,
) -> isize {
    let args = CloneArgs {
        flags: libc::CLONE_VM as u64 | CLONE_CLEAR_SIGHAND,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: (stack_top as u64).wrapping_sub(stack_size as u64),
        stack_size: stack_size as u64,
        tls: 0,
    };
    let size = std::mem::size_of::<CloneArgs>();
    cleared.store(true, Ordering::Relaxed);
    // SAFETY: forwarded from the caller; `args` is live for the call.
    let r = unsafe {
        clone_raw(
            libc::SYS_clone3,
            &args as *const CloneArgs as usize,
            size,
            entry,
            arg,
        )
    };
    if r >= 0 {
        return r;
    }
    // No clone3 (before 5.3, or refused by a seccomp filter) or no
    // CLONE_CLEAR_SIGHAND (before 5.5): plain clone. No S runs yet.
    cleared.store(false, Ordering::Relaxed);
    let flags = libc::CLONE_VM as usize | libc::SIGCHLD as usize;
    // SAFETY: forwarded from the caller.
    unsafe { clone_raw(libc::SYS_clone, flags, stack_top as usize, entry, arg) }
}

/// Starts `entry(arg)` in a forked process (fallback without `raw_syscall`
/// support: the child has its own copy of memory).
///
/// # Safety
/// `entry` must be sound to run in a fork of a possibly multi-threaded
/// process.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn fork_into(entry: Entry, arg: *mut c_void) -> isize {
    // SAFETY: the child only runs `entry`, which the caller vouches for.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe { entry(arg) }
    }
    if pid < 0 {
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return -(e as isize);
    }
    pid as isize
}

/// Starts G (fork fallback).
///
/// # Safety
/// As for [`fork_into`].
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) unsafe fn start_command(_stack_top: *mut u8, entry: Entry, arg: *mut c_void) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { fork_into(entry, arg) }
}

/// Starts S (fork fallback): S has a copy of the caller's handlers.
///
/// # Safety
/// As for [`fork_into`].
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) unsafe fn start_supervisor(
    _stack_top: *mut u8,
    _stack_size: usize,
    entry: Entry,
    arg: *mut c_void,
    cleared: &AtomicBool,
) -> isize {
    cleared.store(false, Ordering::Relaxed);
    // SAFETY: forwarded from the caller.
    unsafe { fork_into(entry, arg) }
}
