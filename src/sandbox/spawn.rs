//! The fork side of a run: everything here runs between `fork` and `exec`
//! in a copy of a possibly multi-threaded process, so it only makes
//! syscalls on data prepared by the parent: no allocation, no locks.
//!
//! Two processes per run:
//! - the **supervisor** (forked from the caller) becomes a child subreaper,
//!   so every orphan of the tree — a grandchild that called `setsid()` and
//!   double-forked included — is re-parented to it instead of to init. It
//!   forks the command, waits for it on a pidfd with the deadline, and then
//!   kills whatever is left of the tree (its process group first, then
//!   every remaining child, repeatedly, until it has none), reaps it all
//!   and reports one fixed-size [`Report`] on a pipe.
//! - the **command** leads its own process group, applies the limits, joins
//!   the pids cgroup, restricts itself with Landlock, loads the seccomp
//!   filter and execs. A failure before exec is reported to the supervisor
//!   as a `(stage, errno)` pair on a close-on-exec pipe.

use std::ffi::c_char;

use super::limits::Rlimit;
use super::seccomp::Filter;

/// Fixed fd layout the supervisor sets up for the command.
const FD_SCRIPT: i32 = 3;
const FD_RULESET: i32 = 4;
const FD_CGROUP: i32 = 5;
const FD_STATUS: i32 = 6;
const FD_FIRST_FREE: i32 = 7;

/// Where the command failed before exec.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Started (no failure).
    None = 0,
    /// Forking the command.
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

const REPORT_LEN: usize = 16;

impl Report {
    fn encode(&self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        b[0..4].copy_from_slice(&self.wait_status.to_ne_bytes());
        b[4..8].copy_from_slice(&(self.timed_out as u32).to_ne_bytes());
        b[8..12].copy_from_slice(&(self.stage as u32).to_ne_bytes());
        b[12..16].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    /// Decodes a report read from the status pipe.
    pub fn decode(b: &[u8]) -> Option<Report> {
        if b.len() != REPORT_LEN {
            return None;
        }
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Some(Report {
            wait_status: i32::from_ne_bytes(word(0)),
            timed_out: u32::from_ne_bytes(word(4)) != 0,
            stage: Stage::from_u32(u32::from_ne_bytes(word(8))),
            errno: i32::from_ne_bytes(word(12)),
        })
    }
}

/// Everything the fork side needs, prepared by the parent. Raw pointers
/// into parent-owned buffers that outlive the fork.
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
    /// `cgroup.procs` of the run's pids cgroup, or -1.
    pub cgroup_procs: i32,
    /// Write end of the status pipe (supervisor → caller).
    pub status: i32,
    /// The rlimits to set.
    pub rlimits: &'a [Option<Rlimit>],
    /// The seccomp filter.
    pub filter: &'a Filter,
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

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `write` all of `buf`, retrying on EINTR.
fn write_all(fd: i32, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        off += n as usize;
    }
}

/// Forks the supervisor. Returns its pid in the parent; never returns in
/// the child.
///
/// # Safety
/// Must be called with a plan whose pointers stay valid until this returns;
/// the child only makes async-signal-safe calls.
pub unsafe fn fork_supervisor(plan: &ChildPlan<'_>) -> std::io::Result<libc::pid_t> {
    // SAFETY: fork is safe to call; the child below only makes
    // async-signal-safe calls on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { supervisor(plan) }
    }
    Ok(pid)
}

/// Moves `src` to `dst`; `cloexec` decides the flag on `dst`.
unsafe fn place(src: i32, dst: i32, cloexec: bool) -> bool {
    if src < 0 {
        // SAFETY: closing a possibly unused fd number is harmless.
        unsafe { libc::close(dst) };
        return true;
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 on fds we own in this process.
    unsafe { libc::dup3(src, dst, flags) >= 0 }
}

/// Closes every fd from `first` up.
unsafe fn close_from(first: i32) {
    // SAFETY: close_range takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
    if r != 0 {
        // Kernels before 5.9: close one by one up to the fd limit.
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a live local.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        let max = rl.rlim_cur.min(1 << 20) as i32;
        for fd in first..max {
            // SAFETY: closing fds we do not need; harmless if unused.
            unsafe { libc::close(fd) };
        }
    }
}

/// The supervisor process. Never returns.
/// Reports a failure of the supervisor's own setup and exits.
fn report_failure(fd: i32, stage: Stage, e: i32) -> ! {
    let r = Report {
        wait_status: 0,
        timed_out: false,
        stage,
        errno: e,
    };
    write_all(fd, &r.encode());
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

unsafe fn supervisor(plan: &ChildPlan<'_>) -> ! {
    let fail = |stage: Stage, e: i32| report_failure(plan.status, stage, e);
    // SAFETY: prctl/getppid with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            || libc::getppid() != plan.parent_pid
        {
            libc::_exit(1);
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            fail(Stage::Supervisor, errno());
        }
    }

    // Lay out the fds: first lift every source above the target range so
    // no dup3 clobbers a source not yet moved, then place them, then close
    // everything else this fork inherited (other runs' pipes included).
    let sources = [
        plan.stdin,
        plan.stdout,
        plan.stderr,
        plan.script,
        plan.ruleset,
        plan.cgroup_procs,
        plan.status,
    ];
    let mut lifted = [-1i32; 7];
    for (i, &fd) in sources.iter().enumerate() {
        if fd >= 0 {
            // SAFETY: fcntl on an fd we own.
            lifted[i] = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 16) };
            if lifted[i] < 0 {
                fail(Stage::Supervisor, errno());
            }
        }
    }
    let targets = [
        (0, false),
        (1, false),
        (2, false),
        (FD_SCRIPT, false),
        (FD_RULESET, true),
        (FD_CGROUP, true),
        (FD_STATUS, true),
    ];
    for (i, &(dst, cloexec)) in targets.iter().enumerate() {
        // SAFETY: dup3/close on fds of this process.
        if !unsafe { place(lifted[i], dst, cloexec) } {
            fail(Stage::Supervisor, errno());
        }
    }
    // SAFETY: closes fds this process does not need.
    unsafe { close_from(FD_FIRST_FREE) };
    let status_fd = FD_STATUS;
    let fail = |stage: Stage, e: i32| report_failure(status_fd, stage, e);

    let mut errpipe = [-1i32; 2];
    // SAFETY: pipe2 writes two fds into a live local array.
    if unsafe { libc::pipe2(errpipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fail(Stage::Fork, errno());
    }
    let start = now();

    // SAFETY: fork; the child only makes async-signal-safe calls.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail(Stage::Fork, errno());
    }
    if child == 0 {
        // SAFETY: we are the command's process, before exec.
        unsafe { command(plan, errpipe[1], plan.cgroup_procs >= 0) }
    }

    // Supervisor: drop everything the command owns, so the caller sees EOF
    // on the output pipes as soon as the tree is gone.
    // FD_SCRIPT and FD_CGROUP are only ours when placed: when unused, the
    // error pipe may have been given those numbers.
    // SAFETY: closing fds of this process.
    unsafe {
        libc::close(errpipe[1]);
        for fd in [0, 1, 2, FD_RULESET] {
            libc::close(fd);
        }
        if plan.script >= 0 {
            libc::close(FD_SCRIPT);
        }
        if plan.cgroup_procs >= 0 {
            libc::close(FD_CGROUP);
        }
    }
    let mut buf = [0u8; 8];
    let n = read_full(errpipe[0], &mut buf);
    if n == 8 {
        let stage = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let e = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let mut st = 0;
        // SAFETY: waitpid on our child with a live status pointer.
        unsafe { libc::waitpid(child, &mut st, 0) };
        fail(Stage::from_u32(stage), e);
    }

    let timed_out = wait_with_deadline(child, start, plan.timeout);
    let mut st = 0;
    loop {
        // SAFETY: waitpid on our child with a live status pointer.
        let r = unsafe { libc::waitpid(child, &mut st, 0) };
        if r >= 0 || errno() != libc::EINTR {
            break;
        }
    }
    kill_tree(child);
    let r = Report {
        wait_status: st,
        timed_out,
        stage: Stage::None,
        errno: 0,
    };
    write_all(status_fd, &r.encode());
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn read_full(fd: i32, buf: &mut [u8]) -> usize {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: reading into the unfilled part of a live buffer.
        let n = unsafe { libc::read(fd, buf[off..].as_mut_ptr().cast(), buf.len() - off) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
    off
}

fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// Remaining time until `start + timeout`, or `None` when it has passed.
fn remaining(start: libc::timespec, timeout: libc::timespec) -> Option<libc::timespec> {
    let t = now();
    let ns = |x: libc::timespec| x.tv_sec as i128 * 1_000_000_000 + x.tv_nsec as i128;
    let left = ns(start) + ns(timeout) - ns(t);
    if left <= 0 {
        return None;
    }
    Some(libc::timespec {
        tv_sec: (left / 1_000_000_000) as libc::time_t,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    })
}

/// Waits for `child` to exit or the deadline to pass; on the deadline,
/// kills the command's process group and returns `true`. The command is
/// not reaped here.
fn wait_with_deadline(
    child: libc::pid_t,
    start: libc::timespec,
    timeout: Option<libc::timespec>,
) -> bool {
    // SAFETY: pidfd_open takes integers only.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0u32) } as i32;
    loop {
        let left = match timeout {
            None => None,
            Some(t) => match remaining(start, t) {
                Some(l) => Some(l),
                None => {
                    // SAFETY: kill with integers; the group is the command's.
                    unsafe {
                        libc::kill(-child, libc::SIGKILL);
                        libc::kill(child, libc::SIGKILL);
                    }
                    return true;
                }
            },
        };
        if pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            let tsp = left
                .as_ref()
                .map_or(std::ptr::null(), |l| l as *const libc::timespec);
            // SAFETY: ppoll on one live pollfd and an optional live timespec.
            let r = unsafe { libc::ppoll(&mut pfd, 1, tsp, std::ptr::null()) };
            if r > 0 {
                return false;
            }
        } else {
            // No pidfd (kernel < 5.3): look every millisecond, without reaping.
            // SAFETY: a zeroed siginfo is a valid out-parameter.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid with WNOWAIT fills a live siginfo.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    child as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
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
            unsafe { libc::nanosleep(&ms, std::ptr::null_mut()) };
        }
    }
}

/// Kills and reaps every remaining process of the tree. The supervisor is
/// a subreaper, so every descendant whose parent died is its child; killing
/// all its children, over and over, ends the tree (SIGKILLed processes do
/// not fork, and their orphans come to us).
fn kill_tree(leader: libc::pid_t) {
    // SAFETY: kill with integers; the group is the command's.
    unsafe { libc::kill(-leader, libc::SIGKILL) };
    // "/proc/self/task/<tid>/children": the supervisor is single-threaded.
    let mut path = [0u8; 64];
    let prefix = b"/proc/self/task/";
    path[..prefix.len()].copy_from_slice(prefix);
    // SAFETY: getpid takes nothing.
    let n = fmt_u32(unsafe { libc::getpid() } as u32, &mut path[prefix.len()..]) + prefix.len();
    let suffix = b"/children\0";
    path[n..n + suffix.len()].copy_from_slice(suffix);
    loop {
        loop {
            // SAFETY: reap without blocking; status not needed.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r <= 0 {
                break;
            }
        }
        let killed = kill_children(&path);
        if killed == 0 {
            // SAFETY: reap without blocking.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r < 0 && errno() == libc::ECHILD {
                return;
            }
            if r == 0 {
                // A child we could not list (no /proc): block for it.
                // SAFETY: blocking reap.
                unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
            }
            continue;
        }
        // SAFETY: block until one of them is gone.
        unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
    }
}

/// SIGKILLs every pid listed in the children file; returns how many.
fn kill_children(path: &[u8]) -> usize {
    // SAFETY: open with a NUL-terminated path in a live buffer.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 4096];
    let mut killed = 0;
    let mut cur: i64 = -1;
    loop {
        // SAFETY: read into a live buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        for &c in &buf[..n as usize] {
            if c.is_ascii_digit() {
                cur = if cur < 0 { 0 } else { cur } * 10 + (c - b'0') as i64;
            } else if cur >= 0 {
                // SAFETY: kill with integers.
                unsafe { libc::kill(cur as libc::pid_t, libc::SIGKILL) };
                killed += 1;
                cur = -1;
            }
        }
    }
    if cur >= 0 {
        // SAFETY: kill with integers.
        unsafe { libc::kill(cur as libc::pid_t, libc::SIGKILL) };
        killed += 1;
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    killed
}

/// Writes `v` in decimal into `out`; returns the length.
fn fmt_u32(mut v: u32, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 10];
    let mut i = 0;
    loop {
        tmp[i] = b'0' + (v % 10) as u8;
        i += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for j in 0..i {
        out[j] = tmp[i - 1 - j];
    }
    i
}

/// The command's process, between fork and exec. Never returns.
/// Reports where the command failed before exec, and exits.
fn command_failure(errfd: i32, stage: Stage) -> ! {
    let e = errno();
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    b[4..].copy_from_slice(&e.to_ne_bytes());
    write_all(errfd, &b);
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(127) }
}

unsafe fn command(plan: &ChildPlan<'_>, errfd: i32, cgroup: bool) -> ! {
    let fail = |stage: Stage| command_failure(errfd, stage);
    // SAFETY: all calls below are async-signal-safe syscalls on data
    // prepared by the parent.
    unsafe {
        libc::setpgid(0, 0);
        // Rust ignores SIGPIPE in its programs; the command gets the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::close(FD_STATUS);
        if cgroup && libc::write(FD_CGROUP, b"0".as_ptr().cast(), 1) != 1 {
            fail(Stage::Cgroup);
        }
        for r in plan.rlimits.iter().flatten() {
            let rl = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            if libc::setrlimit(r.resource, &rl) != 0 {
                fail(Stage::Rlimit);
            }
        }
        if libc::chdir(plan.cwd) != 0 {
            fail(Stage::Chdir);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(Stage::NoNewPrivs);
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, FD_RULESET, 0u32) != 0 {
            fail(Stage::Landlock);
        }
        libc::close(FD_RULESET);
        if plan.filter.install().is_err() {
            fail(Stage::Seccomp);
        }
        libc::execve(plan.path, plan.argv, plan.envp);
        fail(Stage::Exec)
    }
}
