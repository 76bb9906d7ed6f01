//! `reference`: the reference sandbox ([`crate::sandbox`]), called in
//! process.
//!
//! A simulated platform (a kernel without Landlock) needs a seccomp filter on
//! the *backend*, and a filter cannot be put on the harness itself (it would
//! stay on every later case, and on the test runner). So a simulated case
//! runs out of process: `sandspec driver` (the same sandbox behind the
//! protocol) is started under the filter, through [`ProcessFactory`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::process::ProcessFactory;
use super::{Driver, DriverError, DriverFactory, Hello, RunRequest};
use crate::corpus::case::{Capability, SimulatedLandlock};
use crate::harness::interrupt;
use crate::policy::RunOutput;
use crate::sandbox::Mutant;
use crate::sandbox::{Canceller, LastBuilt, RunOptions, Stdio};

/// The backend name the reference sandbox gives in its handshake, in
/// process and behind the protocol alike.
pub const BACKEND_NAME: &str = "sandspec-reference";

/// Every capability in the vocabulary.
pub fn all_capabilities() -> BTreeSet<Capability> {
    use Capability::*;
    let all = [
        FsRead,
        FsWrite,
        FsExec,
        FsFilterMissing,
        NetDeny,
        NetAllow,
        NetTcpConnect,
        NetTcpBind,
        ScopeSignal,
        ScopeAbstractUnixSocket,
        LimitsMemory,
        LimitsProcesses,
        LimitsOpenFiles,
        LimitsCpuSeconds,
        LimitsOutputBytes,
        Timeout,
        Script,
        Stdin,
        Env,
        Cwd,
        Terminal,
        FdsInherit,
    ];
    // A new capability must be added above: this match stops compiling.
    for c in all {
        match c {
            FsRead
            | FsWrite
            | FsExec
            | FsFilterMissing
            | NetDeny
            | NetAllow
            | NetTcpConnect
            | NetTcpBind
            | ScopeSignal
            | ScopeAbstractUnixSocket
            | LimitsMemory
            | LimitsProcesses
            | LimitsOpenFiles
            | LimitsCpuSeconds
            | LimitsOutputBytes
            | Timeout
            | Script
            | Stdin
            | Env
            | Cwd
            | Terminal
            | FdsInherit => {}
        }
    }
    all.into_iter().collect()
}

/// The reference sandbox's handshake.
pub fn hello() -> Hello {
    // A harness pty becomes the command's stdin (`RunOptions::stdin_fd`);
    // the command still starts a session of its own, so the terminal is
    // never its controlling one.
    let capabilities = all_capabilities();
    Hello {
        name: BACKEND_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities,
        // Landlock is the file and TCP enforcement: without it the sandbox
        // refuses every run (landlock_unavailable / landlock_disabled).
        requires_landlock_abi: Some(1),
    }
}

/// Makes reference drivers.
#[derive(Debug, Clone, Default)]
pub struct ReferenceFactory {
    exe: Option<PathBuf>,
    mutant: Option<Mutant>,
}

impl ReferenceFactory {
    /// `exe` is the `sandspec` binary, started as `sandspec driver` for
    /// simulated platforms; without it, simulated cases cannot run.
    pub fn new(exe: Option<PathBuf>) -> Self {
        ReferenceFactory { exe, mutant: None }
    }

    /// Drivers of the reference with one mechanism switched off, to
    /// measure the corpus ([`Mutant`]). Simulated platforms still run the
    /// unmutated sandbox out of process.
    #[doc(hidden)]
    pub fn with_mutant(mut self, mutant: Mutant) -> Self {
        self.mutant = Some(mutant);
        self
    }
}

impl DriverFactory for ReferenceFactory {
    fn name(&self) -> &str {
        "reference"
    }

    fn spawn(&self, simulate: Option<SimulatedLandlock>) -> Result<Box<dyn Driver>, DriverError> {
        match simulate {
            None => Ok(Box::new(ReferenceDriver {
                mutant: self.mutant,
                built: LastBuilt::default(),
            })),
            Some(how) => {
                let Some(exe) = &self.exe else {
                    return Err(DriverError::Start {
                        driver: "reference".into(),
                        why: "a simulated platform needs the sandspec executable \
                              (to run `sandspec driver` under the filter), and none was given"
                            .into(),
                    });
                };
                let f = ProcessFactory::new("reference", vec![exe.into(), "driver".into()]);
                Ok(Box::new(f.start(Some(how))?))
            }
        }
    }
}

/// Makes `fds` close-on-exec again.
fn restore(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: fcntl on a descriptor the caller holds open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The in-process reference sandbox.
#[derive(Debug, Default)]
pub struct ReferenceDriver {
    mutant: Option<Mutant>,
    /// The sandbox of the last policy, reused while requests repeat it.
    built: LastBuilt,
}

impl ReferenceDriver {
    /// The reference sandbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reference with one mechanism switched off ([`Mutant`]).
    #[doc(hidden)]
    pub fn with_mutant(mutant: Mutant) -> Self {
        ReferenceDriver {
            mutant: Some(mutant),
            built: LastBuilt::default(),
        }
    }
}

impl Driver for ReferenceDriver {
    fn hello(&mut self) -> Result<Hello, DriverError> {
        let mut h = hello();
        if let Some(m) = self.mutant {
            h.name = format!("{BACKEND_NAME} (mutant {m})");
        }
        Ok(h)
    }

    /// Inherited fds are held open and inheritable by the harness (the
    /// sandbox's caller) for the whole call, as a careless caller would
    /// leak them: whatever the sandbox does not close reaches the command.
    /// (Other spawns of the harness in that window inherit them too: the
    /// short-lived plain spawns of other runs, which use no such number.)
    fn run_attached(
        &mut self,
        req: &RunRequest,
        attach: &super::Attach<'_>,
        watchdog: Duration,
    ) -> Result<RunOutput, DriverError> {
        let stdin_fd = attach.terminal.map(|t| std::os::fd::AsRawFd::as_raw_fd(&t));
        let mut cleared = Vec::new();
        for &fd in attach.fds {
            // SAFETY: fcntl on a descriptor the harness holds open for the
            // whole call; flags are plain integers.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            // SAFETY: as above.
            if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0
            {
                let e = std::io::Error::last_os_error();
                restore(&cleared);
                return Err(DriverError::Reported {
                    driver: "reference".into(),
                    message: format!("failed to make fd {fd} inheritable: {e}"),
                });
            }
            cleared.push(fd);
        }
        let r = self.run_named(req, watchdog, attach.spawner, stdin_fd);
        restore(&cleared);
        r
    }

    fn run(&mut self, req: &RunRequest, watchdog: Duration) -> Result<RunOutput, DriverError> {
        self.run_named(req, watchdog, None, None)
    }
}

impl ReferenceDriver {
    /// Runs the sandbox on a thread of its own; that thread's id goes
    /// into `spawner` first (the sandbox's supervisor is its child, which
    /// is how the harness finds the run's processes while it runs).
    fn run_named(
        &mut self,
        req: &RunRequest,
        watchdog: Duration,
        spawner: Option<&std::sync::atomic::AtomicI32>,
        stdin_fd: Option<i32>,
    ) -> Result<RunOutput, DriverError> {
        // The sandbox enforces the policy's timeout itself; the watchdog
        // guards against the sandbox hanging, and an interrupt stops the
        // run. Either way the run is cancelled (its whole tree killed and
        // reaped by the supervisor) and waited for before the case is
        // reported: nothing it started outlives it.
        let err = |why: String| DriverError::Start {
            driver: "reference".into(),
            why,
        };
        let canceller =
            Canceller::new().map_err(|e| err(format!("failed to make a canceller: {e}")))?;
        // Built (or reused) here: a setup failure is the run's outcome.
        let sandbox = match self.built.get(&req.policy, self.mutant) {
            Ok(sb) => sb,
            Err(e) => return Ok(RunOutput::setup_error(e.kind, e.message)),
        };
        let (tx, rx) = mpsc::channel();
        let command = req.command.clone();
        let opts = RunOptions {
            stdio: Stdio::Capture,
            cancel: Some(canceller.clone()),
            grace: Duration::ZERO,
            // Open until this call returns: the run is waited for first.
            stdin_fd,
        };
        let done = tx.clone();
        let (tid_tx, tid_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("reference:{}", req.case))
            .spawn(move || {
                let _ = tid_tx.send(super::gettid());
                let out = sandbox.run_opts(&command, &opts);
                let _ = done.send(Msg::Done(out));
            })
            .map_err(|e| err(format!("failed to start a thread: {e}")))?;
        if let (Some(slot), Ok(tid)) = (spawner, tid_rx.recv()) {
            slot.store(tid, std::sync::atomic::Ordering::Release);
        }
        let hook_tx = Mutex::new(tx);
        let _hook = interrupt::on_interrupt(move |sig, _| {
            if let Ok(tx) = hook_tx.lock() {
                let _ = tx.send(Msg::Interrupted(sig));
            }
        });
        let deadline = Instant::now() + watchdog;
        // Why the run is being stopped, and until when it may take to end.
        let mut stopping: Option<(Stop, Instant)> = None;
        loop {
            let until = stopping.as_ref().map_or(deadline, |(_, t)| *t);
            let msg = rx.recv_timeout(until.saturating_duration_since(Instant::now()));
            match (msg, stopping) {
                (Ok(Msg::Done(out)), None) => return Ok(out),
                (Ok(Msg::Done(_)), Some((why, _))) => return Err(why.error(watchdog, true)),
                (Ok(Msg::Interrupted(sig)), None) => {
                    canceller.cancel(libc::SIGKILL);
                    stopping = Some((Stop::Interrupted(sig), Instant::now() + STOP_WAIT));
                }
                (Ok(Msg::Interrupted(_)), Some(_)) => {}
                (Err(mpsc::RecvTimeoutError::Timeout), None) => {
                    canceller.cancel(libc::SIGKILL);
                    stopping = Some((Stop::Watchdog, Instant::now() + STOP_WAIT));
                }
                (Err(mpsc::RecvTimeoutError::Timeout), Some((why, _))) => {
                    // The supervisor did not end even after the kill: the
                    // thread is left behind (a kernel or sandbox bug).
                    return Err(why.error(watchdog, false));
                }
                (Err(mpsc::RecvTimeoutError::Disconnected), _) => {
                    return Err(DriverError::Died {
                        driver: "reference".into(),
                        why: "the sandbox panicked".into(),
                    })
                }
            }
        }
    }
}

/// How long a cancelled run may take to end: the supervisor kills and
/// reaps the tree, which takes milliseconds; this bounds a bug.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What the run's thread and the interrupt hook say.
enum Msg {
    Done(RunOutput),
    Interrupted(i32),
}

/// Why a run was cancelled.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Watchdog,
    Interrupted(i32),
}

impl Stop {
    /// The case's error; `ended`: the tree was killed and reaped.
    fn error(self, watchdog: Duration, ended: bool) -> DriverError {
        match (self, ended) {
            (Stop::Watchdog, true) => DriverError::Hung {
                driver: "reference".into(),
                after: watchdog,
            },
            (Stop::Watchdog, false) => DriverError::Died {
                driver: "reference".into(),
                why: format!(
                    "the run outlived its {watchdog:?} watchdog and did not end within \
                     {STOP_WAIT:?} of being killed"
                ),
            },
            (Stop::Interrupted(sig), _) => DriverError::Interrupted {
                driver: "reference".into(),
                signal: interrupt::name(sig),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Command, Policy, Timeout};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    fn cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD on a descriptor the test holds.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    #[test]
    fn inherited_fds_are_held_inheritable_for_the_call_only_and_the_spawner_is_named() {
        if !matches!(
            crate::kernel::landlock(),
            crate::kernel::LandlockSupport::Abi(_)
        ) {
            return;
        }
        let f = tempfile::tempfile().unwrap();
        let fd = f.as_raw_fd();
        assert!(cloexec(fd));
        let policy = Policy {
            exec: vec!["/usr".into(), "/lib".into(), "/lib64".into(), "/bin".into()],
            timeout: Some(Timeout(Duration::from_secs(5))),
            ..Default::default()
        };
        let req = RunRequest {
            seq: 1,
            case: "t.fds".into(),
            policy,
            command: Command::argv(["sleep", "0.3"]),
        };
        let spawner = AtomicI32::new(0);
        let seen_inheritable = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if !cloexec(fd) {
                        seen_inheritable.store(true, Ordering::Release);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let fds = [fd];
            let attach = super::super::Attach {
                fds: &fds,
                spawner: Some(&spawner),
                ..Default::default()
            };
            let out = ReferenceDriver::new()
                .run_attached(&req, &attach, Duration::from_secs(10))
                .unwrap();
            done.store(true, Ordering::Release);
            assert_eq!(
                out.outcome,
                crate::policy::Outcome::Exited { code: 0 },
                "{out:?}"
            );
        });
        assert!(
            seen_inheritable.load(Ordering::Acquire),
            "the fd was never inheritable"
        );
        assert!(cloexec(fd), "the fd stayed inheritable after the call");
        assert_ne!(spawner.load(Ordering::Acquire), 0);
        assert!(hello().capabilities.contains(&Capability::Terminal));
    }
}
