//! The reference sandbox: Landlock for files and TCP, seccomp for UDP, raw
//! sockets and io_uring, resource limits, a timeout that kills the whole
//! process tree, capped output. Unprivileged, no namespaces, fail-closed.
//!
//! ```no_run
//! use sandspec::policy::{Command, Policy};
//! use sandspec::sandbox::Sandbox;
//!
//! let policy = Policy {
//!     read: vec!["/usr".into(), "/lib".into(), "/lib64".into(), "/etc".into()],
//!     exec: vec!["/usr/bin".into(), "/bin".into(), "/lib64".into(), "/lib".into()],
//!     ..Default::default() // network: deny
//! };
//! let sandbox = Sandbox::new(&policy)?; // probes the kernel, builds the rules once
//! let out = sandbox.run(&Command::argv(["echo", "hi"]));
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok::<(), sandspec::sandbox::SetupError>(())
//! ```
//!
//! # Why blocking
//! [`Sandbox::run`] blocks the calling thread: the work is a fork, one
//! `poll` loop over the pipes and a wait, so a runtime would add nothing but
//! a dependency for every user. Async callers use `spawn_blocking`.
//!
//! # Compatibility
//! Landlock ABI 1 is the floor (files). TCP port rules need ABI 4, IPC
//! scoping ABI 6. `network: deny` is enforced on every ABI: below 4 the
//! seccomp filter refuses to create inet sockets at all; from 4 Landlock
//! denies TCP connect/bind; from 10 Landlock also denies UDP, below that
//! seccomp refuses UDP sockets. What the kernel cannot enforce is a
//! [`SetupError`], never a weaker sandbox.
//!
//! # Process tree
//! A supervisor process (a child subreaper) owns each run: when the command
//! exits or the deadline fires, every process it left — including one that
//! called `setsid()` and double-forked — is killed and reaped before
//! [`Sandbox::run`] returns. The sandbox needs `/proc` (for
//! `/proc/self/task/*/children`).

mod cancel;
mod caps;
mod capture;
pub mod landlock;
pub mod limits;
mod mutant;
mod reuse;
pub mod seccomp;
pub mod simulate;
mod spawn;

pub use cancel::Canceller;
#[doc(hidden)]
pub use mutant::Mutant;
pub use reuse::LastBuilt;

use std::ffi::{c_char, CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::{
    Command, Network, Outcome, Policy, Program, RunOutput, SetupErrorKind, DEFAULT_OUTPUT_BYTES,
    DEFAULT_PATH,
};
use spawn::{CapsPlan, ChildPlan, PlanMechanisms, Report, Stage};

/// The sandbox could not be set up; the command never ran.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SetupError {
    /// The class of failure.
    pub kind: SetupErrorKind,
    /// What failed and why, naming the path, rule or kernel feature.
    pub message: String,
}

/// How a run is started: [`Sandbox::run_opts`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the command's stdio goes.
    pub stdio: Stdio,
    /// Cancels the run from outside (an interrupt, a watchdog).
    pub cancel: Option<Canceller>,
    /// After a cancel signal, how long the tree has before SIGKILL.
    pub grace: Duration,
    /// With [`Stdio::Capture`]: this fd (e.g. a terminal) is the command's
    /// stdin instead of a pipe of [`Command::stdin`]; it must stay open
    /// until the run returns. A terminal given here becomes the controlling
    /// terminal of the supervisor's session, as a shell's terminal is for
    /// the programs it starts; the command starts a session of its own, so
    /// it is never the command's (no TIOCSTI into it).
    pub stdin_fd: Option<i32>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stdio: Stdio::Capture,
            cancel: None,
            grace: DEFAULT_GRACE,
            stdin_fd: None,
        }
    }
}

/// The grace after a cancel signal when the caller names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// Where the command's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// Pipes: stdin from [`Command::stdin`], stdout/stderr captured (capped).
    Capture,
    /// The caller's own stdin, stdout and stderr (the CLI's interactive mode).
    Inherit,
}

/// A policy compiled against the running kernel: Landlock ruleset and seccomp
/// filter built once, reused for every [`Sandbox::run`].
#[derive(Debug)]
pub struct Sandbox {
    ruleset: OwnedFd,
    filter: seccomp::Filter,
    /// Capabilities to drop; `None`: the caller holds none.
    caps: Option<CapsPlan>,
    /// Spawn-path mechanisms (all on outside mutants).
    on: PlanMechanisms,
    mutant: Option<Mutant>,
    limits: limits::Prepared,
    filtered: Vec<PathBuf>,
    env: Vec<CString>,
    path_var: String,
    cwd: CString,
    timeout: Option<Duration>,
    output_cap: usize,
    abi: u32,
    /// Emptied pids cgroups of earlier runs, for reuse: creating and
    /// removing one costs more than the rest of a spawn's cgroup work.
    cgroups: Mutex<Vec<limits::PidsCgroup>>,
}

fn setup_err(kind: SetupErrorKind, message: String) -> SetupError {
    SetupError { kind, message }
}

impl Sandbox {
    /// Compiles `policy` for this kernel. Fails closed: no Landlock, an ABI
    /// too old for the policy, or an allowlisted path that exists but cannot
    /// be opened, is an error.
    pub fn new(policy: &Policy) -> Result<Sandbox, SetupError> {
        Self::build(policy, None)
    }

    /// The sandbox with one enforcement mechanism switched off, to measure
    /// the corpus (see [`Mutant`]). Never for running untrusted code.
    #[doc(hidden)]
    pub fn new_mutant(policy: &Policy, mutant: Mutant) -> Result<Sandbox, SetupError> {
        Self::build(policy, Some(mutant))
    }

    /// The mutant this sandbox was built as, if any.
    #[doc(hidden)]
    pub fn mutant(&self) -> Option<Mutant> {
        self.mutant
    }

    fn build(policy: &Policy, mutant: Option<Mutant>) -> Result<Sandbox, SetupError> {
        let off = |m: Mutant| mutant == Some(m);
        let abi = landlock::require_landlock(crate::kernel::landlock())?;
        if !Path::new("/proc/thread-self/children").exists() {
            return Err(setup_err(
                SetupErrorKind::SpawnFailed,
                "failed to prepare the process-tree supervisor: /proc/thread-self/children is missing (is /proc mounted?)".into(),
            ));
        }
        let compiled = landlock::compile(
            policy,
            abi,
            landlock::Mechanisms {
                fs: !off(Mutant::LandlockFs),
                net: !off(Mutant::LandlockNet),
                scope: !off(Mutant::LandlockScope),
            },
        )?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let mut limits = limits::prepare(&policy.limits, euid)?;
        if off(Mutant::Rlimits) {
            limits.rl = Default::default();
        }
        if off(Mutant::ProcessLimit) {
            limits.cgroup_processes = None;
            limits.nproc_processes = None;
        }
        let has_rlimits = limits.rl.iter().any(Option::is_some) || limits.nproc_processes.is_some();
        let filter = seccomp::Filter::sandbox(&seccomp::Spec {
            network: match &policy.network {
                Network::Allow => seccomp::NetRules::Allow,
                Network::Deny => seccomp::NetRules::Deny,
                // listen() on an unbound socket auto-binds an ephemeral
                // port without the bind() check Landlock makes
                // (landlock-lsm/linux#15), and seccomp cannot tell a bound
                // socket from an unbound one: listen() is allowed only when
                // the policy grants ephemeral ports (port 0) anyway.
                Network::Ports(p) => seccomp::NetRules::Ports {
                    listen: p.tcp_bind.contains(&0),
                },
            },
            landlock_tcp: abi >= landlock::ABI_TCP,
            landlock_udp: abi >= landlock::ABI_UDP,
            landlock_unix: abi >= landlock::ABI_RESOLVE_UNIX,
            landlock_signal_scope: compiled.signal_scope,
            lock_rlimits: euid == 0 && has_rlimits,
            root: euid == 0,
            groups: seccomp::Groups {
                sockets: !off(Mutant::SeccompSockets),
                io_uring: !off(Mutant::SeccompIoUring),
                kernel_surface: !off(Mutant::SeccompKernelSurface),
                keyrings: !off(Mutant::SeccompKeyrings),
                ipc: !off(Mutant::SeccompIpc),
                namespaces: !off(Mutant::SeccompNamespaces),
                admin: !off(Mutant::Privileges),
                memfd_exec: !off(Mutant::SeccompMemfdExec),
                metadata: !off(Mutant::SeccompMetadata),
                signals: !off(Mutant::SeccompSignals),
                // Redundant with the capability drop (raising a hard limit
                // needs CAP_SYS_RESOURCE): one mechanism for the mutants.
                rlimits: !off(Mutant::Privileges),
            },
        })?;
        let caps = if off(Mutant::Privileges) {
            None
        } else {
            caps::plan()?
        };

        let mut env = Vec::with_capacity(policy.env.len() + 1);
        if off(Mutant::EnvClear) {
            for (k, v) in std::env::vars_os() {
                if !policy.env.contains_key(&*k.to_string_lossy()) {
                    let mut kv = k.into_encoded_bytes();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_encoded_bytes());
                    if let Ok(c) = CString::new(kv) {
                        env.push(c);
                    }
                }
            }
        }
        for (k, v) in &policy.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(setup_err(
                    SetupErrorKind::InvalidPolicy,
                    format!("invalid policy: bad environment variable {k:?}"),
                ));
            }
            env.push(CString::new(format!("{k}={v}")).expect("checked for NUL"));
        }
        let path_var = policy
            .env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        if !policy.env.contains_key("PATH") {
            env.push(CString::new(format!("PATH={DEFAULT_PATH}")).expect("no NUL"));
        }
        let cwd = policy.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
        if !cwd.is_absolute() {
            return Err(setup_err(
                SetupErrorKind::InvalidPolicy,
                format!("invalid policy: cwd {} is not absolute", cwd.display()),
            ));
        }
        Ok(Sandbox {
            ruleset: compiled.fd,
            filter,
            caps,
            on: PlanMechanisms {
                new_session: !off(Mutant::NewSession),
                kill_tree: !off(Mutant::TreeKill),
                close_fds: !off(Mutant::CloseFds),
            },
            mutant,
            limits,
            filtered: compiled.filtered,
            env,
            path_var,
            cwd: limits::cpath(&cwd)?,
            timeout: policy
                .timeout
                .map(|t| t.0)
                .filter(|_| !off(Mutant::Timeout)),
            output_cap: if off(Mutant::OutputCap) {
                usize::MAX
            } else {
                policy
                    .limits
                    .output_bytes
                    .map_or(DEFAULT_OUTPUT_BYTES, |s| s.0) as usize
            },
            abi,
            cgroups: Mutex::new(Vec::new()),
        })
    }

    /// Allowlisted paths that did not exist and were left out.
    pub fn filtered_paths(&self) -> &[PathBuf] {
        &self.filtered
    }

    /// True when the policy's process limit is `RLIMIT_NPROC`, which the
    /// kernel counts over every task of the uid, not this run's alone (a
    /// non-root user without a delegated pids cgroup). Callers should say
    /// so: the limit is then approximate.
    pub fn process_limit_is_uid_wide(&self) -> bool {
        self.limits.nproc_processes.is_some()
    }

    /// The kernel's Landlock ABI this sandbox was built for.
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// Runs `command` under the sandbox, capturing its output, and waits
    /// for the whole tree.
    pub fn run(&self, command: &Command) -> RunOutput {
        self.run_with(command, Stdio::Capture)
    }

    /// Runs `command` with the given stdio, and waits for the whole tree.
    pub fn run_with(&self, command: &Command, stdio: Stdio) -> RunOutput {
        self.run_opts(
            command,
            &RunOptions {
                stdio,
                ..Default::default()
            },
        )
    }

    /// Runs `command` with `opts` (stdio, a canceller and its grace), and
    /// waits for the whole tree. A cancelled run returns normally once the
    /// tree is gone; its outcome is what the command died of.
    pub fn run_opts(&self, command: &Command, opts: &RunOptions) -> RunOutput {
        let started = Instant::now();
        let mut out = match self.spawn_and_wait(command, opts) {
            Ok(out) => out,
            Err(e) => RunOutput::setup_error(e.kind, e.message),
        };
        out.filtered_paths = self.filtered.clone();
        out.duration = started.elapsed();
        out
    }

    fn spawn_and_wait(
        &self,
        command: &Command,
        opts: &RunOptions,
    ) -> Result<RunOutput, SetupError> {
        let stdio = opts.stdio;
        let (argv, script_body): (Vec<&OsStr>, &[u8]) = match &command.program {
            Program::Argv(a) => (a.iter().map(OsString::as_os_str).collect(), &[]),
            Program::Script(s) => {
                let mut a: Vec<&OsStr> = s.interpreter.iter().map(OsStr::new).collect();
                a.push(OsStr::new("/dev/fd/3"));
                (a, s.body.as_bytes())
            }
        };
        let Some(&argv0) = argv.first() else {
            return Err(setup_err(
                SetupErrorKind::InvalidPolicy,
                "invalid command: empty argv".into(),
            ));
        };
        let Some(path) = resolve(argv0, &self.path_var) else {
            return Ok(exited_with_message(
                127,
                format!(
                    "sandspec: {}: command not found\n",
                    crate::escape::bytes(argv0.as_bytes())
                ),
            ));
        };
        let cstr = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                setup_err(
                    SetupErrorKind::InvalidPolicy,
                    format!(
                        "invalid command: argument {} contains a NUL byte",
                        crate::escape::bytes(s.as_bytes())
                    ),
                )
            })
        };
        let path_c = limits::cpath(&path)?;
        let argv_c = argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let argv_p = nul_terminated(&argv_c);
        let envp_p = nul_terminated(&self.env);

        let spawn_err = |what: &str, e: std::io::Error| {
            setup_err(
                SetupErrorKind::SpawnFailed,
                format!("failed to create the {what} pipe: {e}"),
            )
        };
        let capture = stdio == Stdio::Capture;
        let (stdin_r, stdin_w) = if capture && opts.stdin_fd.is_none() {
            let (r, w) = pipe().map_err(|e| spawn_err("stdin", e))?;
            (Some(r), (!command.stdin.is_empty()).then_some(w))
        } else {
            (None, None)
        };
        let (stdout_r, stdout_w) = if capture {
            let (r, w) = pipe().map_err(|e| spawn_err("stdout", e))?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let (stderr_r, stderr_w) = if capture {
            let (r, w) = pipe().map_err(|e| spawn_err("stderr", e))?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let (script_r, script_w) = match &command.program {
            Program::Script(_) => {
                let (r, w) = pipe().map_err(|e| spawn_err("script", e))?;
                (Some(r), Some(w))
            }
            Program::Argv(_) => (None, None),
        };

        let cgroup = match self.limits.cgroup_processes {
            Some(n) => match self.cgroups.lock().ok().and_then(|mut pool| pool.pop()) {
                Some(cg) => Some(cg),
                None => Some(limits::PidsCgroup::create(n)?),
            },
            None => None,
        };
        let mut rlimits = self.limits.rl;
        if let Some(n) = self.limits.nproc_processes {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            let max = limits::tasks_of_uid(uid) + u64::from(n);
            if let Some(slot) = rlimits.iter_mut().find(|r| r.is_none()) {
                *slot = Some(limits::Rlimit {
                    resource: libc::RLIMIT_NPROC,
                    soft: max,
                    hard: max,
                });
            }
        }
        let raw =
            |fd: &Option<OwnedFd>, inherited: i32| fd.as_ref().map_or(inherited, |f| f.as_raw_fd());
        let plan = ChildPlan {
            parent_pid: std::process::id() as libc::pid_t,
            stdin: match (capture, opts.stdin_fd) {
                (true, Some(fd)) => fd,
                (true, None) => raw(&stdin_r, -1),
                (false, _) => 0,
            },
            stdout: if capture { raw(&stdout_w, -1) } else { 1 },
            stderr: if capture { raw(&stderr_w, -1) } else { 2 },
            script: raw(&script_r, -1),
            ruleset: self.ruleset.as_raw_fd(),
            cgroup_procs: cgroup.as_ref().map_or(-1, |c| c.procs_fd()),
            rlimits: &rlimits,
            seccomp: Some(self.filter.sock_fprog()),
            seccomp_slots: self.filter.slots(),
            caps: self.caps,
            on: self.on,
            cancel: opts.cancel.as_ref().map_or(-1, Canceller::read_fd),
            // SAFETY: isatty takes an int.
            ctty: capture
                && opts
                    .stdin_fd
                    .is_some_and(|fd| unsafe { libc::isatty(fd) } == 1),
            grace: libc::timespec {
                tv_sec: opts.grace.as_secs().min(i32::MAX as u64) as _,
                tv_nsec: opts.grace.subsec_nanos() as libc::c_long,
            },
            path: path_c.as_ptr(),
            argv: argv_p.as_ptr(),
            envp: envp_p.as_ptr(),
            cwd: self.cwd.as_ptr(),
            timeout: self.timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs() as _,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            }),
        };
        // SAFETY: every pointer in `plan` refers to data declared before
        // `supervisor` and not touched until it is reaped (by `wait` below,
        // or by its drop, which comes first on any early exit).
        let supervisor = unsafe { spawn::Supervisor::start(&plan) }.map_err(|e| {
            setup_err(
                SetupErrorKind::SpawnFailed,
                format!("failed to start the sandbox supervisor: {e}"),
            )
        })?;
        drop((stdin_r, stdout_w, stderr_w, script_r));

        let cap = self.output_cap;
        let captured = capture::pump(
            capture::Pipes {
                stdin: stdin_w,
                script: script_w,
                stdout: stdout_r,
                stderr: stderr_r,
            },
            &command.stdin,
            script_body,
            cap,
        );
        let (report, st) = supervisor.wait();
        // A supervisor that reported reaped the whole tree: the cgroup is
        // empty again and can serve the next run. Otherwise it is removed
        // (or left behind if a process is still in it).
        if let (Some(cg), Some(_)) = (cgroup, &report) {
            if let Ok(mut pool) = self.cgroups.lock() {
                pool.push(cg);
            }
        }
        let mut out = RunOutput {
            outcome: Outcome::Timeout,
            stdout: captured.stdout,
            stderr: captured.stderr,
            output_truncated: captured.truncated,
            filtered_paths: Vec::new(),
            duration: Duration::ZERO,
        };
        out.outcome = match report {
            None => {
                return Err(setup_err(
                    SetupErrorKind::SpawnFailed,
                    format!("the sandbox supervisor ended without reporting (wait status {st:#x})"),
                ))
            }
            Some(r) => match outcome_of(&r, argv0, &path, &self.cwd) {
                Ok(o) => o,
                Err(e) => {
                    if let Some(msg) = e {
                        out.stderr.extend_from_slice(msg.as_bytes());
                    }
                    Outcome::Exited {
                        code: if r.errno == libc::ENOENT { 127 } else { 126 },
                    }
                }
            },
        };
        if let Outcome::SetupError { kind, message } = out.outcome {
            return Err(setup_err(kind, message));
        }
        Ok(out)
    }
}

/// The outcome from the supervisor's report. `Err(msg)`: exec itself
/// failed (the command's failure under the policy, like env(1): 126/127).
fn outcome_of(
    r: &Report,
    argv0: &OsStr,
    path: &Path,
    cwd: &CString,
) -> Result<Outcome, Option<String>> {
    let os = std::io::Error::from_raw_os_error(r.errno);
    let setup = |kind, message: String| Ok(Outcome::SetupError { kind, message });
    match r.stage {
        Stage::None => {}
        Stage::Exec => {
            return Err(Some(format!(
                "sandspec: failed to execute {}: {}\n",
                crate::escape::bytes(argv0.as_bytes()),
                exec_failure(path, r.errno, &os)
            )));
        }
        Stage::Chdir => {
            return setup(
                SetupErrorKind::PathError,
                format!(
                    "failed to enter the working directory {}: {os}",
                    cwd.to_string_lossy()
                ),
            )
        }
        Stage::Fork => {
            return setup(
                SetupErrorKind::SpawnFailed,
                format!("failed to fork the command: {os}"),
            )
        }
        stage => {
            let what = match stage {
                Stage::Cgroup => "join the pids cgroup",
                Stage::Rlimit => "set a resource limit",
                Stage::NoNewPrivs => "set no_new_privs",
                Stage::Landlock => "enforce the Landlock ruleset (landlock_restrict_self)",
                Stage::Seccomp => "load the seccomp filter",
                Stage::Session => "start a new session (setsid)",
                Stage::Capabilities => "drop capabilities",
                _ => "set up the sandbox supervisor",
            };
            return setup(
                SetupErrorKind::RestrictFailed,
                format!("failed to {what}: {os}; the command did not run"),
            );
        }
    }
    if r.timed_out {
        return Ok(Outcome::Timeout);
    }
    let st = r.wait_status;
    if libc::WIFEXITED(st) {
        Ok(Outcome::Exited {
            code: libc::WEXITSTATUS(st),
        })
    } else if libc::WIFSIGNALED(st) {
        Ok(Outcome::Signaled {
            signal: libc::WTERMSIG(st),
        })
    } else {
        Ok(Outcome::SetupError {
            kind: SetupErrorKind::SpawnFailed,
            message: format!("unexpected wait status {st:#x}"),
        })
    }
}

/// Why `execve(path)` failed, for people: not found, not executable, or
/// refused by the policy's exec rules. Decided from outside the sandbox: a
/// file that exists, is executable by this user and whose interpreter is
/// too can only have been refused by the sandbox (Landlock's exec right).
fn exec_failure(path: &Path, errno: i32, os: &std::io::Error) -> String {
    use std::os::unix::fs::PermissionsExt;
    let shown = crate::escape::path(path);
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    // The program the kernel opens too: an ELF's loader, a script's `#!`.
    // Only a regular file is opened (a FIFO would block).
    let interpreter = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|_| elf_interpreter(path).or_else(|| shebang(path)));
    match errno {
        libc::ENOENT => match &interpreter {
            Some(i) if path.exists() && !i.exists() => format!(
                "not found: its interpreter {} does not exist",
                crate::escape::path(i)
            ),
            _ => format!("not found: {shown} does not exist"),
        },
        libc::EACCES if path.exists() && !executable(path) => {
            format!("not executable: {shown} is not a file with execute permission")
        }
        libc::EACCES if interpreter.as_deref().is_some_and(|i| !executable(i)) => format!(
            "not executable: its interpreter {} is not a file with execute permission",
            crate::escape::path(interpreter.as_deref().unwrap_or(path))
        ),
        libc::EACCES => match &interpreter {
            Some(i) => format!(
                "refused by the policy's exec rules: {shown} and its interpreter {} must \
                 both be below an exec path ({os})",
                crate::escape::path(i)
            ),
            None => format!(
                "refused by the policy's exec rules: {shown} must be below an exec path ({os})"
            ),
        },
        libc::ENOEXEC => format!("not executable: {shown} is not in a format the kernel runs"),
        _ => format!("{shown}: {os}"),
    }
}

/// The interpreter a `#!` script names.
fn shebang(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?.trim();
    let interp = text.split_whitespace().next()?;
    Some(PathBuf::from(interp))
}

fn exited_with_message(code: i32, msg: String) -> RunOutput {
    RunOutput {
        outcome: Outcome::Exited { code },
        stdout: Vec::new(),
        stderr: msg.into_bytes(),
        output_truncated: false,
        filtered_paths: Vec::new(),
        duration: Duration::ZERO,
    }
}

fn nul_terminated(v: &[CString]) -> Vec<*const c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// `argv0` as a path: itself when it has a slash, else the first executable
/// file of that name in `path_var` (as seen from outside the sandbox).
fn resolve(argv0: &OsStr, path_var: &str) -> Option<PathBuf> {
    if argv0.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(argv0));
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| {
            let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
                return false;
            };
            // SAFETY: access with a NUL-terminated path.
            p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
        })
}

/// Compiles `policy` and runs `command`: a setup failure becomes
/// [`Outcome::SetupError`].
pub fn run(policy: &Policy, command: &Command) -> RunOutput {
    match Sandbox::new(policy) {
        Ok(sb) => sb.run(command),
        Err(e) => {
            let mut out = RunOutput::setup_error(e.kind, e.message);
            out.filtered_paths = Vec::new();
            out
        }
    }
}

/// The ELF interpreter (dynamic loader) of an executable, if it has one: a
/// policy must grant `exec` on it for the executable to start under
/// Landlock (the kernel opens the loader for execution too).
pub fn elf_interpreter(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::FileExt;
    // Only the headers are read (a debug build's probe is 80+ MiB), with
    // checked arithmetic (the file may be anyone's), from a regular file
    // only (a FIFO would block).
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut eh = [0u8; 64];
    f.read_exact_at(&mut eh, 0).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 {
        return None; // not a 64-bit ELF
    }
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(&eh, 0x20)?;
    let phentsize = usize::from(u16_at(&eh, 0x36)?);
    let phnum = usize::from(u16_at(&eh, 0x38)?);
    // As the kernel's ELF loader (load_elf_phdrs): entries of exactly the
    // 64-bit size, a table of at most 64 KiB; anything else it refuses to
    // run, and a crafted header must not make this allocate gigabytes.
    let table = phentsize.checked_mul(phnum)?;
    if phentsize != 56 || table == 0 || table > 65536 {
        return None;
    }
    let mut ph = vec![0u8; table];
    f.read_exact_at(&mut ph, phoff).ok()?;
    for entry in ph.chunks_exact(phentsize) {
        if u32::from_le_bytes(entry.get(..4)?.try_into().ok()?) == 3 {
            // PT_INTERP: a path, at most PATH_MAX bytes.
            let off = u64_at(entry, 8)?;
            let size = usize::try_from(u64_at(entry, 32)?).ok()?.min(4096);
            let mut raw = vec![0u8; size];
            f.read_exact_at(&mut raw, off).ok()?;
            let s = raw.split(|b| *b == 0).next()?;
            return Some(PathBuf::from(String::from_utf8_lossy(s).into_owned()));
        }
    }
    None
}
