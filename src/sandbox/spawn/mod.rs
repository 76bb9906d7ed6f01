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
//! - the **command** G starts a session of its own (so it has no
//!   controlling terminal: nothing it does can push input into the
//!   caller's), joins the pids cgroup, applies the limits, enters the
//!   working directory, restricts itself with Landlock, drops every
//!   capability (bounding, ambient, effective, permitted, inheritable; the
//!   securebits locked so root's exec grants none back), loads the seccomp
//!   filter and execs.
//! - S also watches a cancel pipe ([`super::Canceller`]): on a byte (a
//!   signal number) it sends that signal to the command's tree, gives it
//!   the plan's grace, then kills and reaps everything as on a deadline. A failure before exec
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

use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use super::limits::Rlimit;

/// Fixed fd layout S sets up for G. The cancel pipe is S's own: G closes
/// it at exec (close-on-exec), like the ruleset and the cgroup file.
const FD_SCRIPT: i32 = 3;
const FD_RULESET: i32 = 4;
const FD_CGROUP: i32 = 5;
const FD_CANCEL: i32 = 6;
const FD_FIRST_FREE: i32 = 7;

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
    /// setsid.
    Session = 10,
    /// Dropping capabilities.
    Capabilities = 11,
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
            10 => Stage::Session,
            11 => Stage::Capabilities,
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
    /// The run was cancelled (and the tree killed).
    pub cancelled: bool,
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
    /// Read end of the cancel pipe, or -1.
    pub cancel: i32,
    /// stdin is a terminal: S makes it the controlling terminal of a
    /// session of its own, as the shell a command is started from has one
    /// (the command's own new session then has none).
    pub ctty: bool,
    /// How long the tree has after a cancel signal before SIGKILL.
    pub grace: libc::timespec,
    /// Capabilities to drop before exec; `None`: nothing to drop.
    pub caps: Option<CapsPlan>,
    /// Instructions of the seccomp program to patch with this run's pids
    /// (below Landlock ABI 6); empty: install it as it is.
    pub seccomp_slots: &'a [super::seccomp::Slot],
    /// Mechanisms a mutant switches off (all true outside mutants).
    pub on: PlanMechanisms,
}

/// How G drops capabilities.
#[derive(Debug, Clone, Copy)]
pub struct CapsPlan {
    /// The highest capability number the kernel knows.
    pub last_cap: u32,
    /// The process may change its bounding set and securebits
    /// (`CAP_SETPCAP`); without it only the sets it holds are emptied,
    /// which `no_new_privs` keeps from coming back at exec.
    pub setpcap: bool,
}

/// Spawn-path mechanisms a mutant can switch off.
#[derive(Debug, Clone, Copy)]
pub struct PlanMechanisms {
    /// G starts a new session (else only a new process group).
    pub new_session: bool,
    /// S kills the rest of the tree after the command.
    pub kill_tree: bool,
    /// S closes every fd the command was not meant to get.
    pub close_fds: bool,
}

mod command;
mod raw;
mod supervisor;

use raw::{check, start_supervisor, sys, SIGSET_SIZE};
use supervisor::supervisor_entry;

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
    /// The command's pid, stored by S once G exists (0 before): if S dies
    /// without reporting, the caller still kills G's process group.
    command_pid: AtomicI32,
    /// S's report; `reported` is stored last.
    wait_status: AtomicI32,
    timed_out: AtomicU32,
    cancelled: AtomicU32,
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
                command_pid: AtomicI32::new(0),
                wait_status: AtomicI32::new(0),
                timed_out: AtomicU32::new(0),
                cancelled: AtomicU32::new(0),
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
            let g = sh.command_pid.load(Ordering::Relaxed);
            self.region.leak = true;
            // G dies with S (PR_SET_PDEATHSIG); what G started in its own
            // session and process group goes with it here. (The command
            // cannot kill S itself: Landlock's signal scope, or the seccomp
            // fallback below ABI 6, refuses it; this is for S killed from
            // outside.)
            if g > 0 {
                // SAFETY: kill with integers, on the command's own group.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
            return (None, st);
        }
        let report = Report {
            wait_status: sh.wait_status.load(Ordering::Relaxed),
            timed_out: sh.timed_out.load(Ordering::Relaxed) != 0,
            cancelled: sh.cancelled.load(Ordering::Relaxed) != 0,
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
