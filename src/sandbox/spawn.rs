//! The process side of a run, created vfork-style as `posix_spawn` does:
//! neither process copies the caller's page tables.
//!
//! # Two processes per run
//! - the **supervisor** S becomes a child subreaper, so every orphan of the
//!   tree — a grandchild that called `setsid()` and double-forked included —
//!   is re-parented to it instead of to init. It starts the command, waits
//!   for it with the deadline (a pidfd and `ppoll`, or a plain blocking
//!   `wait4` when there is no deadline), then kills whatever is left of the
//!   tree (its process group first, then every remaining child, repeatedly,
//!   until it has none), reaps it all and writes one [`Report`] into memory
//!   the caller reads after reaping S.
//! - the **command** G leads its own process group, joins the pids cgroup,
//!   applies the limits, enters the working directory, restricts itself
//!   with Landlock, loads the seccomp filter and execs. A failure before exec
//!   is written as a `(stage, errno)` pair into the same shared memory
//!   before G exits; a G that exec'd leaves it at [`Stage::None`].
//!
//! # How they are created
//! On x86_64 and aarch64:
//! - S is `clone3(CLONE_VM | CLONE_CLEAR_SIGHAND)` (exit signal `SIGCHLD`)
//!   on a stack the caller maps for the run ([`Region`]) and unmaps after
//!   reaping S. No `CLONE_VFORK`: the caller goes on pumping the pipes while
//!   S runs. Where clone3 or `CLONE_CLEAR_SIGHAND` is missing (before Linux
//!   5.5, or refused by a seccomp filter), plain `clone(CLONE_VM | SIGCHLD)`.
//! - G is `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` from S, on a second
//!   stack in the same region: S is suspended until G execs or exits.
//!
//! Both therefore run in the caller's address space until G's `execve`
//! replaces it for G. That is sound only because S and G stay inside a very
//! small world:
//! - **No libc, no errno, no TLS, no locks, no heap.** S and G run with the
//!   caller thread's TLS pointer (no `CLONE_SETTLS`), so errno, malloc's
//!   arenas, stdio and any lock would be the caller's, in use concurrently.
//!   Every system call goes through [`raw_syscall`] (inline `asm!`), which
//!   returns `-errno` and touches nothing else.
//! - **No panics.** A panic touches TLS and allocates. The code of S and G
//!   has no panicking path: no indexing that can fail (iterators and `get`
//!   only), wrapping or saturating arithmetic, no `unwrap`.
//! - **Only their own stacks and the read-only plan.** S and G read the
//!   [`ChildPlan`] (and what its pointers point to), which the caller keeps
//!   alive and unchanged until S is reaped, and write only their stacks and
//!   the [`Shared`] block of the region, which the caller reads after
//!   reaping S. Stores there are atomic.
//! - **No caller signal handler ever runs in them.** The caller blocks every
//!   signal in its thread around the clone (a raw `rt_sigprocmask`: glibc's
//!   wrapper would leave its two internal signals unblocked) and restores its
//!   mask right after; S inherits the full mask and keeps it (a fault in S is
//!   delivered with the default action anyway, since the kernel forces a
//!   blocked synchronous signal to `SIG_DFL`). S and G have their own copy
//!   of the handler table (no `CLONE_SIGHAND`); with `CLONE_CLEAR_SIGHAND`
//!   every handled signal starts at `SIG_DFL` in S already. G inherits the
//!   mask and, right before `execve`, resets every handler that is neither
//!   `SIG_DFL` nor `SIG_IGN` to `SIG_DFL` (one `rt_sigaction` pair per
//!   signal; not needed, and skipped, when S was created with
//!   `CLONE_CLEAR_SIGHAND`) and `SIGPIPE` to `SIG_DFL` (Rust ignores it; an
//!   ignored signal stays ignored across exec), and only then unblocks its
//!   mask, as glibc's `posix_spawn` does. S also sets `SIGCHLD` to
//!   `SIG_DFL`: it must be able to wait for its children. As with
//!   `posix_spawn`, a signal sent to the caller's process group while G is
//!   still in it (before its `setpgid`) is delivered to G with the default
//!   action when G unblocks; a stress run (a handler in the caller, its
//!   group flooded with `SIGUSR1` during 2000 runs) never saw the handler
//!   run outside the caller.
//! - **Nothing outlives its memory.** The caller unmaps the region only
//!   after reaping S, and only if S reported: S reports only after reaping
//!   G, so no process runs on the region any more. An S that died without
//!   reporting (killed from outside) may leave a G that has not exec'd yet;
//!   G asks for `SIGKILL` when S dies (`PR_SET_PDEATHSIG`, checked against
//!   S's pid), so it dies with S, and the region is then leaked rather than
//!   unmapped. (The setting survives exec: a command whose supervisor is
//!   killed dies with it instead of running on unsupervised.) The kernel state that would otherwise be shared is not:
//!   without `CLONE_FILES`, `CLONE_FS`, `CLONE_SIGHAND` or `CLONE_THREAD`,
//!   fds, cwd, rlimits, no_new_privs, Landlock domain and seccomp filter are
//!   per process, and the kernel drops the rseq and robust-list
//!   registrations of a `CLONE_VM` child.
//!
//! On other architectures (no `raw_syscall` there) S and G are plain
//! `fork`s of the same code; the region is then a `MAP_SHARED` mapping so
//! that G's failure and S's report still reach the caller.

use std::ffi::{c_char, c_long, c_void};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use super::limits::Rlimit;

/// Fixed fd layout S sets up for G.
const FD_SCRIPT: i32 = 3;
const FD_RULESET: i32 = 4;
const FD_CGROUP: i32 = 5;
const FD_FIRST_FREE: i32 = 6;

/// Whether S and G share the caller's memory (`clone(CLONE_VM)`) or are
/// forks of it.
const SHARED_VM: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Stack sizes for S and G. Only the pages they touch are ever allocated.
const SUPERVISOR_STACK: usize = 64 * 1024;
const COMMAND_STACK: usize = 64 * 1024;

/// Where the command failed before exec.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Started (no failure).
    None = 0,
    /// Creating the command's process.
    Fork = 1,
    /// Joining the pids cgroup.
    Cgroup = 2,
    /// setrlimit.
    Rlimit = 3,
    /// chdir to the policy's cwd.
    Chdir = 4,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs = 5,
    /// landlock_restrict_self.
    Landlock = 6,
    /// Loading the seccomp filter.
    Seccomp = 7,
    /// execve.
    Exec = 8,
    /// The supervisor's own setup (prctl, fds).
    Supervisor = 9,
}

impl Stage {
    fn from_u32(v: u32) -> Stage {
        match v {
            1 => Stage::Fork,
            2 => Stage::Cgroup,
            3 => Stage::Rlimit,
            4 => Stage::Chdir,
            5 => Stage::NoNewPrivs,
            6 => Stage::Landlock,
            7 => Stage::Seccomp,
            8 => Stage::Exec,
            9 => Stage::Supervisor,
            _ => Stage::None,
        }
    }
}

/// What the supervisor reports when the tree is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Raw wait status of the command (valid when `stage` is `None`).
    pub wait_status: i32,
    /// The deadline fired and the supervisor killed the tree.
    pub timed_out: bool,
    /// Where the command failed before exec, if it did.
    pub stage: Stage,
    /// The errno of that failure.
    pub errno: i32,
}

/// Everything S and G need, prepared by the caller. Raw pointers into
/// caller-owned buffers that stay alive and unchanged until S is reaped.
pub struct ChildPlan<'a> {
    /// The caller's pid (for the parent-death check).
    pub parent_pid: libc::pid_t,
    /// Pipe ends the command gets as stdin, stdout, stderr.
    pub stdin: i32,
    /// Write end of the stdout pipe.
    pub stdout: i32,
    /// Write end of the stderr pipe.
    pub stderr: i32,
    /// Read end of the script pipe, or -1.
    pub script: i32,
    /// The Landlock ruleset.
    pub ruleset: i32,
    /// The file to join the run's pids cgroup through (`tasks` or
    /// `cgroup.procs`, see `PidsCgroup`), or -1.
    pub cgroup_procs: i32,
    /// The rlimits to set.
    pub rlimits: &'a [Option<Rlimit>],
    /// The seccomp program (points into the sandbox's filter); `None`
    /// when the policy leaves it nothing to deny.
    pub seccomp: Option<libc::sock_fprog>,
    /// NUL-terminated executable path.
    pub path: *const c_char,
    /// NULL-terminated argv.
    pub argv: *const *const c_char,
    /// NULL-terminated envp.
    pub envp: *const *const c_char,
    /// NUL-terminated cwd.
    pub cwd: *const c_char,
    /// The deadline, relative to the supervisor's start; `None`: no deadline.
    pub timeout: Option<libc::timespec>,
}

// ---------------------------------------------------------------------------
// Raw system calls: no errno, no TLS, no libc.

/// One system call. Returns the kernel's result: `-errno` on failure.
///
/// # Safety
/// The caller upholds the contract of system call `nr` for these arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
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
unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
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
unsafe fn raw_syscall(nr: c_long, args: [usize; 6]) -> isize {
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
        raw_syscall($nr, [0; 6])
    };
    ($nr:expr, $a:expr) => {
        raw_syscall($nr, [$a as usize, 0, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr) => {
        raw_syscall($nr, [$a as usize, $b as usize, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr) => {
        raw_syscall($nr, [$a as usize, $b as usize, $c as usize, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr) => {
        raw_syscall($nr, [$a as usize, $b as usize, $c as usize, $d as usize, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr, $e:expr) => {
        raw_syscall(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, $e as usize, 0],
        )
    };
}

/// A raw result as `Ok(value)` or `Err(errno)`.
fn check(r: isize) -> Result<usize, i32> {
    if (-4095..0).contains(&r) {
        Err(r.wrapping_neg() as i32)
    } else {
        Ok(r as usize)
    }
}

/// Ends the calling process (S or G).
fn exit(code: i32) -> ! {
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
const SIGSET_SIZE: usize = 8;

/// Sets `sig` to `SIG_DFL`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn set_default(sig: i32) {
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
fn set_default(sig: i32) {
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
fn reset_signal_handlers() {
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
fn reset_signal_handlers() {
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
type Entry = unsafe extern "C" fn(*mut c_void) -> !;

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
unsafe fn start_command(stack_top: *mut u8, entry: Entry, arg: *mut c_void) -> isize {
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
unsafe fn start_supervisor(
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
unsafe fn start_command(_stack_top: *mut u8, entry: Entry, arg: *mut c_void) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { fork_into(entry, arg) }
}

/// Starts S (fork fallback): S has a copy of the caller's handlers.
///
/// # Safety
/// As for [`fork_into`].
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn start_supervisor(
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

/// The block of the region S and G write and the caller reads after
/// reaping S. The caller initialises it before starting S.
#[repr(C)]
struct Shared {
    /// The plan (a `*const ChildPlan`).
    plan: *const c_void,
    /// Top of G's stack.
    command_stack: *mut u8,
    /// S was created with no signal handlers (`CLONE_CLEAR_SIGHAND`).
    handlers_cleared: AtomicBool,
    /// Written by G before it exits on a failure before exec.
    command_stage: AtomicU32,
    command_errno: AtomicI32,
    /// S's report; `reported` is stored last.
    wait_status: AtomicI32,
    timed_out: AtomicU32,
    stage: AtomicU32,
    errno: AtomicI32,
    reported: AtomicU32,
}

/// The memory of one run: a guard page, G's stack, S's stack, and the
/// [`Shared`] block at the top. With the fork fallback, only the block, in
/// a `MAP_SHARED` mapping.
struct Region {
    base: *mut u8,
    len: usize,
    supervisor_stack: *mut u8,
    supervisor_stack_size: usize,
    shared: *mut Shared,
    /// Do not unmap on drop (a process may still run on it).
    leak: bool,
}

impl Region {
    fn new() -> std::io::Result<Region> {
        // SAFETY: sysconf takes an integer.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let round = |n: usize| n.div_ceil(page) * page;
        let shared_len = round(std::mem::size_of::<Shared>());
        let (guard, command, supervisor) = if SHARED_VM {
            (page, round(COMMAND_STACK), round(SUPERVISOR_STACK))
        } else {
            (0, 0, 0)
        };
        let len = guard + command + supervisor + shared_len;
        let flags = if SHARED_VM {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK
        } else {
            libc::MAP_SHARED | libc::MAP_ANONYMOUS
        };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = base.cast::<u8>();
        let region = Region {
            base,
            len,
            // SAFETY (both): offsets within the mapping of `len` bytes.
            supervisor_stack: unsafe { base.add(guard + command + supervisor) },
            supervisor_stack_size: supervisor,
            shared: unsafe { base.add(len - shared_len) }.cast::<Shared>(),
            leak: false,
        };
        // SAFETY: the page-aligned block at the top is ours, writable, large
        // enough and suitably aligned for `Shared`; nothing else uses it yet.
        unsafe {
            region.shared.write(Shared {
                plan: std::ptr::null(),
                command_stack: base.add(guard + command),
                handlers_cleared: AtomicBool::new(false),
                command_stage: AtomicU32::new(0),
                command_errno: AtomicI32::new(0),
                wait_status: AtomicI32::new(0),
                timed_out: AtomicU32::new(0),
                stage: AtomicU32::new(0),
                errno: AtomicI32::new(0),
                reported: AtomicU32::new(0),
            })
        };
        // SAFETY: the lowest page of our own mapping becomes the guard below
        // G's stack.
        if guard > 0 && unsafe { libc::mprotect(base.cast(), guard, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(region)
    }

    fn shared(&self) -> &Shared {
        // SAFETY: initialised in `new`, mapped until `self` is dropped.
        unsafe { &*self.shared }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: our own mapping, which no process uses any more.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// A running supervisor. Borrows the plan: S reads it until reaped.
pub struct Supervisor<'a> {
    pid: libc::pid_t,
    region: Region,
    reaped: bool,
    _plan: PhantomData<&'a ChildPlan<'a>>,
}

impl<'a> Supervisor<'a> {
    /// Starts the supervisor (which starts the command) for `plan`.
    ///
    /// # Safety
    /// Every pointer in `plan` must stay valid, and what it points to
    /// unchanged, until the supervisor is reaped by [`Supervisor::wait`] or
    /// by dropping the returned value, which must not be leaked.
    pub unsafe fn start(plan: &'a ChildPlan<'a>) -> std::io::Result<Supervisor<'a>> {
        let region = Region::new()?;
        // SAFETY: `shared` is initialised and nothing else runs on the
        // region yet; the plan outlives S by the caller's contract.
        unsafe { (*region.shared).plan = (plan as *const ChildPlan<'a>).cast() };
        let all: u64 = !0;
        let mut old: u64 = 0;
        // SAFETY: blocks every signal of this thread, saving the old mask
        // into a live local, so that no handler of the caller can run in S
        // (see the module docs); restored below. Raw, because glibc's
        // wrapper would not block its internal signals.
        unsafe {
            sys!(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &all as *const u64,
                &mut old as *mut u64,
                SIGSET_SIZE
            )
        };
        // SAFETY: S runs `supervisor_entry` on the region's stack, which
        // stays mapped until S is reaped (and beyond, if S did not report);
        // `supervisor_entry` keeps to the rules of the module docs.
        let r = unsafe {
            start_supervisor(
                region.supervisor_stack,
                region.supervisor_stack_size,
                supervisor_entry,
                region.shared.cast(),
                &region.shared().handlers_cleared,
            )
        };
        // SAFETY: restores the mask saved above from a live local.
        unsafe {
            sys!(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &old as *const u64,
                0,
                SIGSET_SIZE
            )
        };
        match check(r) {
            Ok(pid) => Ok(Supervisor {
                pid: pid as libc::pid_t,
                region,
                reaped: false,
                _plan: PhantomData,
            }),
            Err(e) => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// Waits for the supervisor, which returns once the whole tree is gone.
    /// Returns its report (`None`: it died without one) and its own wait
    /// status.
    pub fn wait(mut self) -> (Option<Report>, i32) {
        self.reap()
    }

    fn reap(&mut self) -> (Option<Report>, i32) {
        let mut st = 0;
        loop {
            // SAFETY: waitpid on our own child with a live status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut st, 0) };
            // Any result but EINTR means S is gone (ECHILD included: reaped
            // elsewhere, or SIGCHLD ignored, where waitpid returns once it
            // has exited).
            if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        self.reaped = true;
        let sh = self.region.shared();
        if sh.reported.load(Ordering::Acquire) == 0 {
            // S died before reaping G: a G that had not exec'd yet may still
            // be on its way out (see the module docs). Keep its stack mapped.
            self.region.leak = true;
            return (None, st);
        }
        let report = Report {
            wait_status: sh.wait_status.load(Ordering::Relaxed),
            timed_out: sh.timed_out.load(Ordering::Relaxed) != 0,
            stage: Stage::from_u32(sh.stage.load(Ordering::Relaxed)),
            errno: sh.errno.load(Ordering::Relaxed),
        };
        (Some(report), st)
    }
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            self.reap();
        }
    }
}

// ---------------------------------------------------------------------------
// The supervisor S. Everything from here on runs in S or G: raw syscalls,
// no panics, no heap, no TLS (module docs).

/// S's entry point.
///
/// # Safety
/// `arg` is the region's initialised [`Shared`] block.
unsafe extern "C" fn supervisor_entry(arg: *mut c_void) -> ! {
    // SAFETY: the caller initialised the block and the plan it points to,
    // and keeps both alive and unchanged until S is reaped.
    let (shared, plan) = unsafe {
        let shared = &*arg.cast::<Shared>();
        (shared, &*shared.plan.cast::<ChildPlan<'_>>())
    };
    supervisor(plan, shared)
}

fn report(shared: &Shared, r: Report) -> ! {
    shared.wait_status.store(r.wait_status, Ordering::Relaxed);
    shared
        .timed_out
        .store(u32::from(r.timed_out), Ordering::Relaxed);
    shared.stage.store(r.stage as u32, Ordering::Relaxed);
    shared.errno.store(r.errno, Ordering::Relaxed);
    shared.reported.store(1, Ordering::Release);
    exit(0)
}

/// Reports a failure before the command ran, and exits.
fn report_failure(shared: &Shared, stage: Stage, errno: i32) -> ! {
    report(
        shared,
        Report {
            wait_status: 0,
            timed_out: false,
            stage,
            errno,
        },
    )
}

/// What G gets from S: lives in S's frame, which stays put while G runs
/// (S is suspended until G execs or exits; with the fork fallback G has its
/// own copy).
struct CommandArgs<'p> {
    plan: &'p ChildPlan<'p>,
    shared: &'p Shared,
    supervisor: isize,
}

fn supervisor(plan: &ChildPlan<'_>, shared: &Shared) -> ! {
    // SAFETY: prctl/getppid with integer arguments.
    unsafe {
        if check(sys!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL)).is_err()
            || sys!(libc::SYS_getppid) != plan.parent_pid as isize
        {
            exit(1);
        }
        if let Err(e) = check(sys!(libc::SYS_prctl, libc::PR_SET_CHILD_SUBREAPER, 1)) {
            report_failure(shared, Stage::Supervisor, e);
        }
    }
    // S waits for its children: a caller that ignores SIGCHLD would have
    // them reaped by the kernel, and their statuses lost.
    set_default(libc::SIGCHLD);
    if let Err(e) = place_fds(plan) {
        report_failure(shared, Stage::Supervisor, e);
    }
    let deadline = plan.timeout.map(|t| (now(), t));
    let args = CommandArgs {
        plan,
        shared,
        // SAFETY: getpid takes nothing.
        supervisor: unsafe { sys!(libc::SYS_getpid) },
    };
    // SAFETY: G runs `command_entry` on its own stack in the region; with
    // CLONE_VFORK this frame (and `args`) stays untouched until G execs or
    // exits. `command_entry` keeps to the rules of the module docs.
    let r = unsafe {
        start_command(
            shared.command_stack,
            command_entry,
            (&args as *const CommandArgs<'_>).cast_mut().cast(),
        )
    };
    let child = match check(r) {
        Ok(pid) => pid as libc::pid_t,
        Err(e) => report_failure(shared, Stage::Fork, e),
    };
    // S needs none of its fds any more: closing them lets the caller see EOF
    // on the output pipes as soon as the tree is gone.
    close_from(0);

    let timed_out = match deadline {
        Some((start, timeout)) => wait_with_deadline(child, start, timeout),
        None => false,
    };
    let status = reap(child);
    kill_tree(child);
    let stage = shared.command_stage.load(Ordering::Relaxed);
    if stage != Stage::None as u32 {
        let errno = shared.command_errno.load(Ordering::Relaxed);
        report_failure(shared, Stage::from_u32(stage), errno);
    }
    report(
        shared,
        Report {
            wait_status: status,
            timed_out,
            stage: Stage::None,
            errno: 0,
        },
    )
}

/// Moves the plan's fds to G's fixed layout (0, 1, 2, script, ruleset,
/// cgroup) and closes every other fd. Returns the errno of a failure.
fn place_fds(plan: &ChildPlan<'_>) -> Result<(), i32> {
    let moves = [
        (plan.stdin, 0, false),
        (plan.stdout, 1, false),
        (plan.stderr, 2, false),
        (plan.script, FD_SCRIPT, false),
        (plan.ruleset, FD_RULESET, true),
        (plan.cgroup_procs, FD_CGROUP, true),
    ];
    // A source inside the target range, not already in place, might be
    // overwritten by an earlier move: lift it out of the range first. Other
    // sources are safe (targets are distinct, and a source in place is no
    // other move's target).
    let mut sources = moves.map(|(src, _, _)| src);
    for (src, &(_, dst, _)) in sources.iter_mut().zip(&moves) {
        if *src >= 0 && *src < FD_FIRST_FREE && *src != dst {
            // SAFETY: fcntl on an fd of this process.
            let r = unsafe { sys!(libc::SYS_fcntl, *src, libc::F_DUPFD_CLOEXEC, FD_FIRST_FREE) };
            *src = check(r)? as i32;
        }
    }
    for (&src, &(_, dst, cloexec)) in sources.iter().zip(&moves) {
        // SAFETY (all three): fd operations on fds of this process.
        let r = if src < 0 {
            // Nothing to place: free the number for the command.
            unsafe { sys!(libc::SYS_close, dst) };
            0
        } else if src == dst {
            let fl = if cloexec { libc::FD_CLOEXEC } else { 0 };
            unsafe { sys!(libc::SYS_fcntl, dst, libc::F_SETFD, fl) }
        } else {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            unsafe { sys!(libc::SYS_dup3, src, dst, fl) }
        };
        check(r)?;
    }
    close_from(FD_FIRST_FREE);
    Ok(())
}

/// `struct rlimit64` of `prlimit64`.
#[repr(C)]
struct Rlimit64 {
    cur: u64,
    max: u64,
}

/// Closes every fd from `first` up.
fn close_from(first: i32) {
    // SAFETY: close_range takes integers only.
    if check(unsafe { sys!(libc::SYS_close_range, first, u32::MAX, 0) }).is_ok() {
        return;
    }
    // Kernels before 5.9: one by one up to the fd limit.
    let mut rl = Rlimit64 { cur: 0, max: 0 };
    // SAFETY: prlimit64 reading into a live local.
    let r = unsafe {
        sys!(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            0,
            &mut rl as *mut Rlimit64
        )
    };
    let max = if r == 0 {
        rl.cur.min(1 << 20) as i32
    } else {
        1024
    };
    for fd in first..max {
        // SAFETY: closing fds this process does not need; harmless if unused.
        unsafe { sys!(libc::SYS_close, fd) };
    }
}

fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe {
        sys!(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC,
            &mut ts as *mut libc::timespec
        )
    };
    ts
}

fn nanos(t: libc::timespec) -> i128 {
    (t.tv_sec as i128)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as i128)
}

/// Remaining time until `start + timeout`, or `None` when it has passed.
fn remaining(start: libc::timespec, timeout: libc::timespec) -> Option<libc::timespec> {
    let left = nanos(start)
        .saturating_add(nanos(timeout))
        .saturating_sub(nanos(now()));
    if left <= 0 {
        return None;
    }
    Some(libc::timespec {
        tv_sec: (left / 1_000_000_000) as _,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    })
}

/// Reaps `child`; returns its wait status.
fn reap(child: libc::pid_t) -> i32 {
    let mut status = 0i32;
    loop {
        // SAFETY: wait4 on our child with a live status pointer.
        let r = unsafe { sys!(libc::SYS_wait4, child, &mut status as *mut i32, 0, 0) };
        if check(r) != Err(libc::EINTR) {
            return status;
        }
    }
}

/// Waits for `child` to exit or the deadline to pass; on the deadline,
/// kills the command's process group and returns `true`. The command is
/// not reaped here.
fn wait_with_deadline(child: libc::pid_t, start: libc::timespec, timeout: libc::timespec) -> bool {
    // SAFETY: pidfd_open takes integers only.
    let pidfd = check(unsafe { sys!(libc::SYS_pidfd_open, child, 0) }).ok();
    loop {
        let Some(left) = remaining(start, timeout) else {
            // SAFETY: kill with integers; the group is the command's.
            unsafe {
                sys!(libc::SYS_kill, -child, libc::SIGKILL);
                sys!(libc::SYS_kill, child, libc::SIGKILL);
            }
            return true;
        };
        if let Some(fd) = pidfd {
            let mut pfd = libc::pollfd {
                fd: fd as i32,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: ppoll on one live pollfd with a live timespec and no
            // signal mask.
            let r = unsafe {
                sys!(
                    libc::SYS_ppoll,
                    &mut pfd as *mut libc::pollfd,
                    1,
                    &left as *const libc::timespec,
                    0,
                    SIGSET_SIZE
                )
            };
            if r > 0 {
                return false;
            }
        } else {
            // No pidfd (kernel < 5.3): look every millisecond, without reaping.
            // SAFETY: a zeroed siginfo is a valid out-parameter.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid with WNOWAIT fills a live siginfo.
            let r = unsafe {
                sys!(
                    libc::SYS_waitid,
                    libc::P_PID,
                    child,
                    &mut info as *mut libc::siginfo_t,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                    0
                )
            };
            // SAFETY: si_pid is valid for a filled (or zeroed) siginfo.
            if r == 0 && unsafe { info.si_pid() } == child {
                return false;
            }
            let ms = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            // SAFETY: nanosleep with a live timespec.
            unsafe { sys!(libc::SYS_nanosleep, &ms as *const libc::timespec, 0) };
        }
    }
}

/// Kills and reaps every remaining process of the tree. S is a subreaper,
/// so every descendant whose parent died is its child: when S has no child
/// left the tree is gone, and killing all its children, over and over,
/// ends it (SIGKILLed processes do not fork, and their orphans come to S).
fn kill_tree(leader: libc::pid_t) {
    let mut group_killed = false;
    loop {
        loop {
            // SAFETY: reap without blocking; status not needed.
            let r = unsafe { sys!(libc::SYS_wait4, -1i32, 0, libc::WNOHANG, 0) };
            match check(r) {
                Err(libc::ECHILD) => return,
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if !group_killed && leader > 0 {
            // SAFETY: kill with integers; the group is the command's.
            unsafe { sys!(libc::SYS_kill, -leader, libc::SIGKILL) };
            group_killed = true;
        }
        kill_children();
        // SAFETY: block until one of them is gone (or, for a child that
        // could not be listed, until it exits).
        unsafe { sys!(libc::SYS_wait4, -1i32, 0, 0, 0) };
    }
}

/// SIGKILLs every pid in `/proc/thread-self/children`.
fn kill_children() {
    const PATH: &[u8] = b"/proc/thread-self/children\0";
    // SAFETY: openat with a NUL-terminated static path.
    let r = unsafe {
        sys!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            PATH.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0
        )
    };
    let Ok(fd) = check(r) else { return };
    let kill = |pid: u32| {
        let pid = pid as i32;
        if pid > 0 {
            // SAFETY: kill with integers, on a positive pid (never a group).
            unsafe { sys!(libc::SYS_kill, pid, libc::SIGKILL) };
        }
    };
    let mut buf = [0u8; 4096];
    let mut cur: Option<u32> = None;
    loop {
        // SAFETY: read into a live buffer of its length.
        let r = unsafe { sys!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        let n = match check(r) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &c in buf.iter().take(n) {
            if c.is_ascii_digit() {
                let digit = u32::from(c.wrapping_sub(b'0'));
                cur = Some(cur.unwrap_or(0).wrapping_mul(10).wrapping_add(digit));
            } else if let Some(pid) = cur.take() {
                kill(pid);
            }
        }
    }
    if let Some(pid) = cur {
        kill(pid);
    }
    // SAFETY: closing our fd.
    unsafe { sys!(libc::SYS_close, fd) };
}

// ---------------------------------------------------------------------------
// The command G, between its creation and exec.

/// G's entry point.
///
/// # Safety
/// `arg` is a [`CommandArgs`] in S's suspended frame.
unsafe extern "C" fn command_entry(arg: *mut c_void) -> ! {
    // SAFETY: S passed a pointer to a live CommandArgs that stays put while
    // G runs.
    let args = unsafe { &*arg.cast::<CommandArgs<'_>>() };
    command(args)
}

fn command(args: &CommandArgs<'_>) -> ! {
    let plan = args.plan;
    let fail = |stage: Stage, errno: i32| -> ! {
        args.shared.command_errno.store(errno, Ordering::Relaxed);
        args.shared
            .command_stage
            .store(stage as u32, Ordering::Relaxed);
        exit(127)
    };
    // SAFETY (whole block): raw syscalls on integers, on live locals, and on
    // the plan's buffers, which the caller keeps alive and unchanged.
    unsafe {
        // Die with S: if S is killed before G execs, the caller may reuse
        // the plan's memory (module docs).
        if check(sys!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL)).is_err()
            || sys!(libc::SYS_getppid) != args.supervisor
        {
            exit(127);
        }
        sys!(libc::SYS_setpgid, 0, 0);
        if plan.cgroup_procs >= 0 {
            match check(sys!(libc::SYS_write, FD_CGROUP, b"0".as_ptr(), 1)) {
                Ok(1) => {}
                Ok(_) => fail(Stage::Cgroup, libc::EIO),
                Err(e) => fail(Stage::Cgroup, e),
            }
        }
        for r in plan.rlimits.iter().flatten() {
            // rlim_t is 32 bits wide on 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            let rl = Rlimit64 {
                cur: r.soft as u64,
                max: r.hard as u64,
            };
            let res = sys!(
                libc::SYS_prlimit64,
                0,
                r.resource,
                &rl as *const Rlimit64,
                0
            );
            if let Err(e) = check(res) {
                fail(Stage::Rlimit, e);
            }
        }
        if let Err(e) = check(sys!(libc::SYS_chdir, plan.cwd)) {
            fail(Stage::Chdir, e);
        }
        if let Err(e) = check(sys!(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
            fail(Stage::NoNewPrivs, e);
        }
        if let Err(e) = check(sys!(libc::SYS_landlock_restrict_self, FD_RULESET, 0)) {
            fail(Stage::Landlock, e);
        }
        if let Some(prog) = &plan.seccomp {
            if let Err(e) = check(sys!(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog as *const libc::sock_fprog
            )) {
                fail(Stage::Seccomp, e);
            }
        }
        // Handlers first, then the mask: no caller handler may run here.
        if args.shared.handlers_cleared.load(Ordering::Relaxed) {
            set_default(libc::SIGPIPE);
        } else {
            reset_signal_handlers();
        }
        let empty: u64 = 0;
        sys!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0,
            SIGSET_SIZE
        );
        let r = sys!(libc::SYS_execve, plan.path, plan.argv, plan.envp);
        fail(Stage::Exec, check(r).err().unwrap_or(libc::EIO))
    }
}
