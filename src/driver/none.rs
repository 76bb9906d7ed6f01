//! `none`: the negative control. A plain spawn that honours the policy's
//! environment, working directory, stdin, output cap and timeout, and
//! restricts nothing. It claims every capability on purpose: a case tagged
//! `isolation` that passes under `none` cannot fail, which is a defect in
//! the case.
//!
//! Attached files ([`Attach`]) are handed over as a plain caller would: a
//! terminal becomes the command's stdin and controlling terminal (a new
//! session, as an interactive shell gives a job its terminal), inherited
//! fds stay open across exec, and the command joins the run's cgroup
//! before exec so that the harness finds all it starts.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};

use super::child::kill_group;
use super::{Attach, Driver, DriverError, DriverFactory, Hello, RunRequest};
use crate::corpus::case::SimulatedLandlock;
use crate::policy::{
    Outcome, Program, RunOutput, SetupErrorKind, DEFAULT_OUTPUT_BYTES, DEFAULT_PATH,
};
use crate::sandbox::simulate::NoLandlock;

/// How long output is still collected after the command exited, from
/// processes it left behind that hold the pipes open. They are not waited
/// for: under `none` nothing reaps a background tree.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// Makes [`NoneDriver`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoneFactory;

impl DriverFactory for NoneFactory {
    fn name(&self) -> &str {
        "none"
    }

    fn spawn(&self, simulate: Option<SimulatedLandlock>) -> Result<Box<dyn Driver>, DriverError> {
        let simulate = match simulate {
            None => None,
            Some(how) => Some(Arc::new(NoLandlock::new(how).map_err(|e| {
                DriverError::Start {
                    driver: "none".into(),
                    why: e.to_string(),
                }
            })?)),
        };
        Ok(Box::new(NoneDriver { simulate }))
    }
}

/// One `none` instance; stateless apart from the simulation filter.
#[derive(Debug)]
pub struct NoneDriver {
    simulate: Option<Arc<NoLandlock>>,
}

impl Driver for NoneDriver {
    fn hello(&mut self) -> Result<Hello, DriverError> {
        Ok(Hello {
            name: "none".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: super::reference::all_capabilities(),
            requires_landlock_abi: None,
        })
    }

    fn run(&mut self, req: &RunRequest, watchdog: Duration) -> Result<RunOutput, DriverError> {
        run_plain(req, &Attach::default(), watchdog, self.simulate.as_ref())
    }

    fn run_attached(
        &mut self,
        req: &RunRequest,
        attach: &Attach<'_>,
        watchdog: Duration,
    ) -> Result<RunOutput, DriverError> {
        run_plain(req, attach, watchdog, self.simulate.as_ref())
    }
}

/// Spawns the request's command with no restriction and collects its output.
fn run_plain(
    req: &RunRequest,
    attach: &Attach<'_>,
    watchdog: Duration,
    simulate: Option<&Arc<NoLandlock>>,
) -> Result<RunOutput, DriverError> {
    let policy = &req.policy;
    // A script body goes into a file, never into argv (ARG_MAX).
    let mut _script_file = None;
    let argv: Vec<std::ffi::OsString> = match &req.command.program {
        Program::Argv(a) => a.clone(),
        Program::Script(s) => {
            let file = match write_script(&s.body) {
                Ok(f) => f,
                Err(e) => {
                    return Ok(RunOutput::setup_error(
                        SetupErrorKind::SpawnFailed,
                        format!("failed to write the script to a temporary file: {e}"),
                    ))
                }
            };
            let mut a: Vec<std::ffi::OsString> = s.interpreter.iter().map(Into::into).collect();
            a.push(file.path().into());
            _script_file = Some(file);
            a
        }
    };
    let Some((program, args)) = argv.split_first() else {
        return Ok(RunOutput::setup_error(
            SetupErrorKind::InvalidPolicy,
            "failed to start the command: empty argv",
        ));
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&policy.env)
        .current_dir(policy.cwd.as_deref().unwrap_or("/".as_ref()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if req.command.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        });
    if let Some(tty) = attach.terminal {
        let tty = match tty.try_clone_to_owned() {
            Ok(t) => t,
            Err(e) => {
                return Ok(RunOutput::setup_error(
                    SetupErrorKind::SpawnFailed,
                    format!("failed to hand the command its terminal: {e}"),
                ))
            }
        };
        cmd.stdin(Stdio::from(tty));
    } else {
        cmd.process_group(0);
    }
    if !policy.env.contains_key("PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    let session = attach.terminal.is_some();
    let inherit: Vec<i32> = attach.fds.to_vec();
    let cgroup = attach.cgroup_procs;
    // SAFETY: only system calls run in the child (setsid, ioctl, fcntl,
    // write), on plain integers and a static buffer, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            if let Some(fd) = cgroup {
                // Writing "0" moves the writer itself.
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                check(if r == 1 { 0 } else { -1 })?;
            }
            if session {
                // Its own session, with the terminal (already its stdin) as
                // the controlling terminal.
                check(libc::setsid())?;
                check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            }
            for &fd in &inherit {
                check(libc::fcntl(fd, libc::F_SETFD, 0))?;
            }
            Ok(())
        });
    }
    if let Some(filter) = simulate {
        let filter = Arc::clone(filter);
        // SAFETY: `install` is async-signal-safe (one prctl and one seccomp
        // syscall on a program built before the fork), as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || filter.install());
        }
    }
    let start = Instant::now();
    let spawned = cmd.spawn();
    // Never taken for an orphan by a concurrent run's sweep.
    let _own = spawned
        .as_ref()
        .ok()
        .map(|c| crate::oracle::tracker::own_child(c.id()));
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Ok(RunOutput::setup_error(
                SetupErrorKind::SpawnFailed,
                format!("failed to start {}: {e}", program.to_string_lossy()),
            ))
        }
    };
    let cap = policy
        .limits
        .output_bytes
        .map(|s| s.0)
        .unwrap_or(DEFAULT_OUTPUT_BYTES) as usize;
    let deadline = policy.timeout.map(|t| start + t.0);
    collect(
        child,
        &req.command.stdin,
        cap,
        start,
        deadline,
        start + watchdog,
    )
    .map_err(|why| match why {
        Collect::Hung => DriverError::Hung {
            driver: "none".into(),
            after: watchdog,
        },
        Collect::Io(e) => DriverError::Died {
            driver: "none".into(),
            why: format!("failed to collect the command's output: {e}"),
        },
        Collect::Interrupted(sig) => DriverError::Interrupted {
            driver: "none".into(),
            signal: crate::harness::interrupt::name(sig),
        },
    })
}

fn write_script(body: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new()
        .prefix("sandspec-none-script-")
        .tempfile()?;
    f.write_all(body.as_bytes())?;
    f.flush()?;
    Ok(f)
}

enum Collect {
    Hung,
    Io(std::io::Error),
    /// The run was interrupted by this signal (the loop checks every 20 ms).
    Interrupted(i32),
}

/// One captured stream: kept up to the cap, the rest read and dropped.
struct Capture<R> {
    src: Option<R>,
    buf: Vec<u8>,
    truncated: bool,
}

impl<R: Read + AsFd> Capture<R> {
    fn new(src: Option<R>) -> std::io::Result<Self> {
        if let Some(s) = &src {
            set_nonblocking(s)?;
        }
        Ok(Capture {
            src,
            buf: Vec::new(),
            truncated: false,
        })
    }

    /// Reads whatever is available; closes the stream at EOF.
    fn drain(&mut self, cap: usize) -> std::io::Result<()> {
        let Some(src) = &mut self.src else {
            return Ok(());
        };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match src.read(&mut chunk) {
                Ok(0) => {
                    self.src = None;
                    return Ok(());
                }
                Ok(n) => {
                    let room = cap.saturating_sub(self.buf.len());
                    if n > room {
                        self.truncated = true;
                    }
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn set_nonblocking(fd: &impl AsFd) -> std::io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// Feeds stdin, reads both pipes, enforces the deadline (whole group killed,
/// outcome `timeout`) and the watchdog, all on this thread.
fn collect(
    mut child: Child,
    input: &[u8],
    cap: usize,
    start: Instant,
    deadline: Option<Instant>,
    watchdog: Instant,
) -> Result<RunOutput, Collect> {
    let pid = child.id();
    let fail = |child: &mut Child, e: std::io::Error| {
        kill_group(pid);
        let _ = child.wait();
        Collect::Io(e)
    };
    let mut out = match Capture::new(child.stdout.take()) {
        Ok(c) => c,
        Err(e) => return Err(fail(&mut child, e)),
    };
    let mut err = match Capture::new(child.stderr.take()) {
        Ok(c) => c,
        Err(e) => return Err(fail(&mut child, e)),
    };
    let mut stdin = child.stdin.take();
    if let Some(s) = &stdin {
        if let Err(e) = set_nonblocking(s) {
            return Err(fail(&mut child, e));
        }
    }
    // Readable once the command has exited, so the loop below wakes at
    // once; without it (kernel < 5.3) the loop sleeps between checks.
    let pidfd = crate::pidfd::open(pid as i32);
    let mut pending = input;
    let mut status: Option<ExitStatus> = None;
    let mut ended: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if status.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    ended = Some(now);
                }
                Ok(None) => {}
                Err(e) => return Err(fail(&mut child, e)),
            }
        }
        if status.is_none() {
            if deadline.is_some_and(|d| now >= d) {
                // Signal the group before reaping its leader.
                kill_group(pid);
                status = child.wait().ok();
                timed_out = true;
                ended = Some(Instant::now());
            } else if now >= watchdog {
                kill_group(pid);
                let _ = child.wait();
                return Err(Collect::Hung);
            } else if let Some(sig) = crate::harness::interrupt::requested() {
                kill_group(pid);
                let _ = child.wait();
                return Err(Collect::Interrupted(sig));
            }
        }
        if let Some(t) = ended {
            // One last read of what the command wrote before it ended.
            out.drain(cap).map_err(Collect::Io)?;
            err.drain(cap).map_err(Collect::Io)?;
            if (out.src.is_none() && err.src.is_none()) || now.duration_since(t) >= DRAIN_GRACE {
                break;
            }
        }
        {
            let mut fds = Vec::with_capacity(3);
            if let Some(s) = &out.src {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &err.src {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &stdin {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
            }
            if let (None, Some(p)) = (status, &pidfd) {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                match poll(&mut fds, 20u8) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(fail(&mut child, e.into())),
                }
            }
        }
        if let Err(e) = out.drain(cap).and_then(|_| err.drain(cap)) {
            return Err(fail(&mut child, e));
        }
        if let Some(s) = &mut stdin {
            if pending.is_empty() {
                stdin = None; // EOF for the command
            } else {
                match s.write(pending) {
                    Ok(n) => pending = &pending[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // The command closed its stdin (or died): stop feeding.
                    Err(_) => stdin = None,
                }
                if pending.is_empty() {
                    stdin = None;
                }
            }
        }
    }
    let end = ended.unwrap_or_else(Instant::now);
    let outcome = match (timed_out, status) {
        (true, _) => Outcome::Timeout,
        (false, Some(s)) => match (s.code(), s.signal()) {
            (Some(code), _) => Outcome::Exited { code },
            (None, Some(signal)) => Outcome::Signaled { signal },
            (None, None) => {
                return Err(Collect::Io(std::io::Error::other(format!(
                    "wait returned neither an exit code nor a signal: {s}"
                ))))
            }
        },
        (false, None) => {
            return Err(Collect::Io(std::io::Error::other(
                "the command ended without an exit status",
            )))
        }
    };
    Ok(RunOutput {
        outcome,
        stdout: out.buf,
        stderr: err.buf,
        output_truncated: out.truncated || err.truncated,
        filtered_paths: Vec::new(),
        duration: end.duration_since(start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Command, Policy, Size, Timeout};

    fn run(policy: Policy, command: Command) -> RunOutput {
        let req = RunRequest {
            seq: 1,
            case: "none.test".into(),
            policy,
            command,
        };
        NoneDriver { simulate: None }
            .run(&req, Duration::from_secs(20))
            .unwrap()
    }

    fn sh(script: &str) -> Command {
        Command::argv(["sh", "-c", script])
    }

    #[test]
    fn the_environment_is_exactly_the_policy_s_plus_a_default_path() {
        let mut p = Policy::default();
        p.env.insert("ONLY".into(), "this".into());
        let out = run(p, Command::argv(["env"]));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["ONLY=this", &format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn cwd_and_stdin_reach_the_command() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy {
            cwd: Some(d.path().to_path_buf()),
            ..Default::default()
        };
        let out = run(p, sh("pwd; cat").with_stdin("from stdin"));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\nfrom stdin", d.path().display())
        );
        assert_eq!(out.outcome, Outcome::Exited { code: 0 });
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        let p = Policy::default;
        assert_eq!(run(p(), sh("exit 7")).outcome, Outcome::Exited { code: 7 });
        assert_eq!(
            run(p(), sh("kill -TERM $$")).outcome,
            Outcome::Signaled { signal: 15 }
        );
    }

    #[test]
    fn timeout_kills_the_whole_group_and_reports_timeout() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("bg");
        let p = Policy {
            timeout: Some(Timeout(Duration::from_millis(300))),
            ..Default::default()
        };
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let out = run(p, sh(&script));
        assert_eq!(out.outcome, Outcome::Timeout);
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the command's group: killed. It is
        // not our child, so it may linger as a zombie until init reaps it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let gone = loop {
            let alive = std::fs::read_to_string(format!("/proc/{bg}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false);
            if !alive || Instant::now() > deadline {
                break !alive;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(gone, "background process {bg} survived the timeout");
    }

    #[test]
    fn output_is_capped_and_marked_truncated() {
        let p = Policy {
            limits: crate::policy::Limits {
                output_bytes: Some(Size(1000)),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = run(p, sh("head -c 100000 /dev/zero"));
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.output_truncated);
        assert_eq!(out.outcome, Outcome::Exited { code: 0 });
    }

    #[test]
    fn a_script_body_larger_than_arg_max_runs_from_a_file() {
        // 4 MiB of comment lines (cheap to run, as under TCG in the kernel
        // matrix), then one command: it runs only if every byte arrived.
        let mut body = format!("#{}\n", "x".repeat(62)).repeat(1 << 16);
        body.push_str("echo last-line\n");
        let out = run(Policy::default(), Command::script("sh", body));
        assert_eq!(out.outcome, Outcome::Exited { code: 0 });
        assert_eq!(out.stdout, b"last-line\n");
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure() {
        let out = run(Policy::default(), Command::argv(["/nonexistent/prog"]));
        assert!(
            matches!(
                out.outcome,
                Outcome::SetupError {
                    kind: SetupErrorKind::SpawnFailed,
                    ..
                }
            ),
            "{:?}",
            out.outcome
        );
    }
}
