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

use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};

use super::child::kill_group;
use super::keeper::{self, Keeper, Plan, Started};
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
        Ok(Box::new(NoneDriver {
            simulate,
            keeper: None,
        }))
    }
}

/// One `none` instance: the simulation filter, and the keeper of the last
/// run (released when the next run starts, or on drop: by then the harness
/// has swept what the run left).
#[derive(Debug)]
pub struct NoneDriver {
    simulate: Option<Arc<NoLandlock>>,
    keeper: Option<Keeper>,
}

impl NoneDriver {
    /// An instance without simulation (for tests and benchmarks).
    pub fn plain() -> NoneDriver {
        NoneDriver {
            simulate: None,
            keeper: None,
        }
    }
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
        self.run_attached(req, &Attach::default(), watchdog)
    }

    fn run_attached(
        &mut self,
        req: &RunRequest,
        attach: &Attach<'_>,
        watchdog: Duration,
    ) -> Result<RunOutput, DriverError> {
        if let Some(k) = self.keeper.take() {
            k.release();
        }
        run_plain(
            req,
            attach,
            watchdog,
            self.simulate.as_ref(),
            &mut self.keeper,
        )
    }
}

/// Where `program` is, searched in `path` (a `PATH` value) when it has no
/// slash, as execvp(3) does.
fn resolve(program: &std::ffi::OsStr, path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_encoded_bytes().contains(&b'/') {
        return Some(program.into());
    }
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| is_exe(p))
}

fn cstr(s: impl AsRef<std::ffi::OsStr>) -> Result<CString, String> {
    CString::new(s.as_ref().as_encoded_bytes())
        .map_err(|_| format!("{:?} contains a NUL byte", s.as_ref()))
}

/// Spawns the request's command with no restriction and collects its output.
fn run_plain(
    req: &RunRequest,
    attach: &Attach<'_>,
    watchdog: Duration,
    simulate: Option<&Arc<NoLandlock>>,
    keeper_slot: &mut Option<Keeper>,
) -> Result<RunOutput, DriverError> {
    let policy = &req.policy;
    let spawn_failed = |why: String| Ok(RunOutput::setup_error(SetupErrorKind::SpawnFailed, why));
    // A script body goes into a file, never into argv (ARG_MAX).
    let mut _script_file = None;
    let argv: Vec<std::ffi::OsString> = match &req.command.program {
        Program::Argv(a) => a.clone(),
        Program::Script(s) => {
            let file = match write_script(&s.body) {
                Ok(f) => f,
                Err(e) => {
                    return spawn_failed(format!(
                        "failed to write the script to a temporary file: {e}"
                    ))
                }
            };
            let mut a: Vec<std::ffi::OsString> = s.interpreter.iter().map(Into::into).collect();
            a.push(file.path().into());
            _script_file = Some(file);
            a
        }
    };
    let Some(program) = argv.first() else {
        return Ok(RunOutput::setup_error(
            SetupErrorKind::InvalidPolicy,
            "failed to start the command: empty argv",
        ));
    };
    let mut env = policy.env.clone();
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    let Some(path) = resolve(program, env["PATH"].as_ref()) else {
        return spawn_failed(format!(
            "failed to start {}: No such file or directory (os error 2)",
            program.to_string_lossy()
        ));
    };
    let cwd = policy.cwd.clone().unwrap_or_else(|| "/".into());
    let strings = (|| {
        Ok::<_, String>((
            cstr(&path)?,
            argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?,
            env.iter()
                .map(|(k, v)| cstr(format!("{k}={v}")))
                .collect::<Result<Vec<_>, _>>()?,
            cstr(&cwd)?,
        ))
    })();
    let (path_c, argv_c, envp_c, cwd_c) = match strings {
        Ok(s) => s,
        Err(e) => {
            return Ok(RunOutput::setup_error(
                SetupErrorKind::InvalidPolicy,
                format!("failed to start the command: {e}"),
            ))
        }
    };
    let pipes = (|| {
        let out = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let err = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let stdin = if req.command.stdin.is_empty() || attach.terminal.is_some() {
            None
        } else {
            Some(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
        };
        let null = std::fs::File::open("/dev/null")
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok::<_, nix::errno::Errno>((out, err, stdin, null))
    })();
    let ((out_r, out_w), (err_r, err_w), stdin_pipe, null) = match pipes {
        Ok(p) => p,
        Err(e) => return spawn_failed(format!("failed to create the command's pipes: {e}")),
    };
    let stdin_fd = match (&attach.terminal, &stdin_pipe) {
        (Some(tty), _) => tty.as_raw_fd(),
        (None, Some((r, _))) => r.as_raw_fd(),
        (None, None) => null.as_raw_fd(),
    };
    if let Some(t) = attach.spawner {
        t.store(super::gettid(), std::sync::atomic::Ordering::Release);
    }
    let plan = Plan {
        path: path_c,
        argv: argv_c,
        envp: envp_c,
        cwd: cwd_c,
        stdio: [stdin_fd, out_w.as_raw_fd(), err_w.as_raw_fd()],
        terminal: attach.terminal.is_some(),
        inherit: attach.fds.to_vec(),
        cgroup: attach.cgroup_procs,
        filter: simulate.cloned(),
    };
    let start = Instant::now();
    let started = match keeper::spawn(&plan) {
        Ok(s) => s,
        Err(e) => {
            return spawn_failed(format!(
                "failed to start {}: {e}",
                program.to_string_lossy()
            ))
        }
    };
    // Only the command holds the write ends now.
    drop((out_w, err_w, null));
    let stdin_w = stdin_pipe.map(|(_, w)| w);
    let cap = policy
        .limits
        .output_bytes
        .map(|s| s.0)
        .unwrap_or(DEFAULT_OUTPUT_BYTES) as usize;
    let deadline = policy.timeout.map(|t| start + t.0);
    let Started { keeper, status } = started;
    let result = collect(
        Streams {
            out: std::fs::File::from(out_r),
            err: std::fs::File::from(err_r),
            stdin: stdin_w.map(std::fs::File::from),
            status: std::fs::File::from(status),
        },
        &req.command.stdin,
        cap,
        start,
        deadline,
        start + watchdog,
    );
    let fail = |why: Collect| match why {
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
    };
    match result {
        Ok(Ended::Ran(out)) => {
            *keeper_slot = Some(keeper);
            Ok(out)
        }
        Ok(Ended::Failed(errno)) => {
            keeper.release();
            spawn_failed(format!(
                "failed to start {}: {}",
                program.to_string_lossy(),
                std::io::Error::from_raw_os_error(errno)
            ))
        }
        Err(e) => {
            keeper.release();
            Err(fail(e))
        }
    }
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

/// The harness's ends of the command's pipes, and the keeper's status.
struct Streams {
    out: std::fs::File,
    err: std::fs::File,
    stdin: Option<std::fs::File>,
    status: std::fs::File,
}

/// How a collected run ended.
enum Ended {
    /// The command ran: its output.
    Ran(RunOutput),
    /// It never started: the errno of the failing step.
    Failed(i32),
}

/// The keeper's messages, as they arrive.
#[derive(Default)]
struct Status {
    buf: Vec<u8>,
    pid: Option<i32>,
    status: Option<ExitStatus>,
    failed: Option<i32>,
    eof: bool,
}

impl Status {
    fn read(&mut self, f: &mut std::fs::File) -> std::io::Result<()> {
        let mut chunk = [0u8; 64];
        loop {
            match f.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while self.buf.len() >= 8 {
            let word = |b: &[u8]| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            let (tag, value) = (word(&self.buf[..4]), word(&self.buf[4..8]));
            self.buf.drain(..8);
            match tag {
                keeper::TAG_PID => self.pid = Some(value),
                keeper::TAG_STATUS => self.status = Some(ExitStatus::from_raw(value)),
                keeper::TAG_FAILED => self.failed = Some(value),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Feeds stdin, reads both pipes, enforces the deadline (the command's
/// whole group killed, outcome `timeout`) and the watchdog, all on this
/// thread; the keeper says when the command has exited, and how.
fn collect(
    mut s: Streams,
    input: &[u8],
    cap: usize,
    start: Instant,
    deadline: Option<Instant>,
    watchdog: Instant,
) -> Result<Ended, Collect> {
    let mut out = Capture::new(Some(s.out)).map_err(Collect::Io)?;
    let mut err = Capture::new(Some(s.err)).map_err(Collect::Io)?;
    if let Some(i) = &s.stdin {
        set_nonblocking(i).map_err(Collect::Io)?;
    }
    set_nonblocking(&s.status).map_err(Collect::Io)?;
    let mut st = Status::default();
    let mut pending = input;
    let mut ended: Option<Instant> = None;
    let mut timed_out = false;
    let kill = |st: &Status| {
        if let Some(pid) = st.pid {
            kill_group(pid as u32);
        }
    };
    loop {
        let now = Instant::now();
        st.read(&mut s.status).map_err(Collect::Io)?;
        if let Some(errno) = st.failed {
            return Ok(Ended::Failed(errno));
        }
        if st.status.is_none() && st.eof {
            kill(&st);
            return Err(Collect::Io(std::io::Error::other(
                "the keeper process ended without reporting the command's exit",
            )));
        }
        if ended.is_none() && st.status.is_some() {
            ended = Some(now);
        }
        if ended.is_none() {
            if !timed_out && deadline.is_some_and(|d| now >= d) {
                // The keeper reports the exit once the kill lands.
                kill(&st);
                timed_out = true;
            } else if now >= watchdog {
                kill(&st);
                return Err(Collect::Hung);
            } else if let Some(sig) = crate::harness::interrupt::requested() {
                kill(&st);
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
            let mut fds = Vec::with_capacity(4);
            if let Some(f) = &out.src {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = &err.src {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = &s.stdin {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
            }
            if ended.is_none() {
                fds.push(PollFd::new(s.status.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, 20u8) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    kill(&st);
                    return Err(Collect::Io(e.into()));
                }
            }
        }
        if let Err(e) = out.drain(cap).and_then(|_| err.drain(cap)) {
            kill(&st);
            return Err(Collect::Io(e));
        }
        if let Some(f) = &mut s.stdin {
            if pending.is_empty() {
                s.stdin = None; // EOF for the command
            } else {
                match f.write(pending) {
                    Ok(n) => pending = &pending[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // The command closed its stdin (or died): stop feeding.
                    Err(_) => s.stdin = None,
                }
                if pending.is_empty() {
                    s.stdin = None;
                }
            }
        }
    }
    let end = ended.unwrap_or_else(Instant::now);
    let outcome = match (timed_out, st.status) {
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
    Ok(Ended::Ran(RunOutput {
        outcome,
        stdout: out.buf,
        stderr: err.buf,
        output_truncated: out.truncated || err.truncated,
        filtered_paths: Vec::new(),
        duration: end.duration_since(start),
    }))
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
        NoneDriver::plain()
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
    fn a_terminal_is_the_command_s_stdin_and_controlling_terminal() {
        let t = crate::oracle::terminal::Terminal::open().unwrap();
        let attach = Attach {
            terminal: Some(t.slave()),
            ..Default::default()
        };
        let req = RunRequest {
            seq: 1,
            case: "none.tty".into(),
            policy: Policy::default(),
            command: sh("readlink /proc/self/fd/0; cut -d' ' -f6,7 /proc/$$/stat; echo $$"),
        };
        let out = NoneDriver::plain()
            .run_attached(&req, &attach, Duration::from_secs(20))
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], t.path(), "{text}");
        // Session leader (session id = its pid) with a controlling tty.
        let (session, tty) = lines[1].split_once(' ').unwrap();
        assert_eq!(session, lines[2], "{text}");
        assert_ne!(tty, "0", "{text}");
    }

    #[test]
    fn inherited_fds_stay_open_across_exec_and_others_do_not() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let other = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        let fd = f.as_file().as_raw_fd();
        let fds = [fd];
        let attach = Attach {
            fds: &fds,
            ..Default::default()
        };
        let req = RunRequest {
            seq: 1,
            case: "none.fds".into(),
            policy: Policy::default(),
            command: sh(&format!(
                "readlink /proc/self/fd/{fd}; readlink /proc/self/fd/{} || echo closed",
                other.as_raw_fd()
            )),
        };
        let out = NoneDriver::plain()
            .run_attached(&req, &attach, Duration::from_secs(20))
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, format!("{}\nclosed\n", f.path().display()));
    }

    #[test]
    fn a_daemon_stays_below_the_keeper_until_the_next_run() {
        let mut d = NoneDriver::plain();
        let req = RunRequest {
            seq: 1,
            case: "none.daemon".into(),
            policy: Policy::default(),
            command: sh("setsid sleep 30 >/dev/null 2>&1 & echo $!"),
        };
        let out = d.run(&req, Duration::from_secs(20)).unwrap();
        let pid: i32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Orphaned by the shell, it went to the keeper, not to the harness.
        let keeper = d.keeper.as_ref().unwrap().pid;
        let stat = crate::oracle::procs::stat(pid).unwrap();
        assert_eq!(stat.ppid, keeper);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // The keeper reaps it (it looks every 100 ms once the command is
        // done)...
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::oracle::procs::stat(pid).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(crate::oracle::procs::stat(pid).is_none(), "not reaped");
        // ...and the next run lets it go: it exits, and is reaped.
        d.run(&RunRequest { seq: 2, ..req }, Duration::from_secs(20))
            .unwrap();
        assert!(crate::oracle::procs::stat(keeper).is_none());
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
