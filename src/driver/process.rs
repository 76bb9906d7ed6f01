//! `process`: any external program speaking the JSON-lines protocol
//! ([`super::protocol`]) on its stdin and stdout. Its stderr is kept (the
//! last lines go into error messages).
//!
//! Every exchange has a deadline. A driver that crashes, hangs, exits
//! mid-run, prints garbage, answers the wrong seq or claims another protocol
//! version yields a [`DriverError`] naming the driver; the instance is then
//! marked broken and its whole process group killed, and the harness starts
//! a fresh one for the next case.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::child::{exited_within, kill_group, kill_pipe_holders, pipe_inode, terminate_and_reap};
use super::protocol::{self, Reply, ToDriver, MAX_LINE_BYTES, PROTOCOL_VERSION};
use super::{Driver, DriverError, DriverFactory, Hello, Ping, RunRequest};
use crate::corpus::case::SimulatedLandlock;
use crate::policy::RunOutput;
use crate::sandbox::simulate::NoLandlock;

/// Lines of the driver's stderr quoted in error messages.
const STDERR_LINES: usize = 12;

/// Bytes of the driver's stderr kept (the end of it): whatever a driver
/// writes, with or without line breaks, the harness holds at most this.
pub const STDERR_TAIL_BYTES: usize = 64 << 10;

/// How long a driver gets to exit after `bye` before its group is killed.
const BYE_GRACE: Duration = Duration::from_secs(2);

/// How long a driver that is stopped (a fault, an interrupt) gets between
/// SIGTERM and SIGKILL: time to tear down what it started.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// After the driver's own process has exited, how long lines it wrote
/// before exiting may still be on their way through the reader thread.
const EXIT_DRAIN: Duration = Duration::from_millis(200);

/// Makes [`ProcessDriver`]s: how to start the program.
#[derive(Debug, Clone)]
pub struct ProcessFactory {
    name: String,
    argv: Vec<OsString>,
    cwd: Option<PathBuf>,
    hello_timeout: Duration,
}

impl ProcessFactory {
    /// A driver started as `argv` (no shell).
    pub fn new(name: impl Into<String>, argv: Vec<OsString>) -> Self {
        ProcessFactory {
            name: name.into(),
            argv,
            cwd: None,
            hello_timeout: Duration::from_secs(30),
        }
    }

    /// A driver started by `sh -c CMD`, as typed on a command line.
    pub fn shell(name: impl Into<String>, cmd: &str) -> Self {
        Self::new(name, vec!["sh".into(), "-c".into(), cmd.into()])
    }

    /// Starts the driver in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// How long the handshake may take (default 30 s: a Python backend may
    /// import a lot).
    pub fn hello_timeout(mut self, t: Duration) -> Self {
        self.hello_timeout = t;
        self
    }

    /// Starts the program (without the handshake).
    pub fn start(&self, simulate: Option<SimulatedLandlock>) -> Result<ProcessDriver, DriverError> {
        let start_err = |why: String| DriverError::Start {
            driver: self.name.clone(),
            why,
        };
        let Some((program, args)) = self.argv.split_first() else {
            return Err(start_err("empty command".into()));
        };
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // The driver is a child subreaper: what its runs orphan stays in
        // its process tree, where the harness tells one run's survivors
        // from another's (`crate::oracle::tracker`), instead of going to
        // the harness, where only a cgroup or a start time could.
        // SAFETY: one prctl with integer arguments, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        if let Some(how) = simulate {
            let filter = Arc::new(NoLandlock::new(how).map_err(|e| start_err(e.to_string()))?);
            // SAFETY: `install` is async-signal-safe (it loads a filter built
            // before the fork), as pre_exec requires.
            unsafe {
                cmd.pre_exec(move || filter.install());
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| start_err(format!("failed to run {}: {e}", program.to_string_lossy())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            terminate_and_reap(&mut child, Duration::ZERO);
            return Err(start_err("failed to open the driver's pipes".into()));
        };
        // The driver's stdio pipes, by inode: whatever still holds one after
        // the driver is gone was started by it (see `kill_pipe_holders`).
        let pipes: Vec<u64> = [pipe_inode(&stdin), pipe_inode(&stdout), pipe_inode(&stderr)]
            .into_iter()
            .flatten()
            .collect();
        let (to_tx, to_rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || writer(stdin, to_rx));
        let (from_tx, from_rx) = mpsc::channel();
        // The driver's exit is seen from its pid, not from EOF on its
        // stdout, which a process it started may hold open.
        if let Some(pidfd) = crate::pidfd::open(child.id() as i32) {
            let tx = from_tx.clone();
            std::thread::spawn(move || watch_exit(pidfd, tx));
        }
        let hook_tx = Mutex::new(from_tx.clone());
        let interrupt = crate::harness::interrupt::on_interrupt(move |sig, _| {
            if let Ok(tx) = hook_tx.lock() {
                let _ = tx.send(Line::Interrupted(sig));
            }
        });
        std::thread::spawn(move || reader(stdout, from_tx));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail2 = Arc::clone(&tail);
        // The keeper drops `done_tx` when it has read stderr to its end.
        let (done_tx, stderr_done) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            stderr_keeper(stderr, tail2);
            drop(done_tx);
        });
        Ok(ProcessDriver {
            name: self.name.clone(),
            child,
            to_driver: Some(to_tx),
            from_driver: from_rx,
            stderr_tail: tail,
            stderr_done,
            hello: None,
            broken: false,
            reaped: false,
            exited_at: None,
            pipes,
            _interrupt: interrupt,
            hello_timeout: self.hello_timeout,
        })
    }
}

impl DriverFactory for ProcessFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn spawn(&self, simulate: Option<SimulatedLandlock>) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(self.start(simulate)?))
    }
}

/// What the stdout reader thread (and the exit watcher, and the
/// interrupt hook) pass on.
enum Line {
    Data(Vec<u8>),
    TooLong,
    Eof,
    Failed(std::io::Error),
    /// The driver's own process has exited (its pidfd turned readable).
    Exited,
    /// The run was interrupted by this signal.
    Interrupted(i32),
}

/// Waits for the driver's pidfd to turn readable (its process exited).
fn watch_exit(pidfd: std::os::fd::OwnedFd, tx: Sender<Line>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(n) if n > 0 => {
                let _ = tx.send(Line::Exited);
                return;
            }
            Err(nix::errno::Errno::EINTR) | Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn writer(mut stdin: std::process::ChildStdin, rx: Receiver<Vec<u8>>) {
    for msg in rx {
        if stdin.write_all(&msg).and_then(|_| stdin.flush()).is_err() {
            // The driver is gone; the reader sees EOF and reports it.
            return;
        }
    }
}

fn reader(stdout: std::process::ChildStdout, tx: Sender<Line>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    loop {
        let mut line = Vec::new();
        match (&mut r)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => {
                let _ = tx.send(Line::Eof);
                return;
            }
            Ok(_) if line.len() > MAX_LINE_BYTES => {
                let _ = tx.send(Line::TooLong);
                return;
            }
            Ok(_) => {
                if tx.send(Line::Data(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Line::Failed(e));
                return;
            }
        }
    }
}

/// Reads the driver's stderr to its end, keeping the last
/// [`STDERR_TAIL_BYTES`] bytes in `tail`.
fn stderr_keeper(mut stderr: std::process::ChildStderr, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut t = match tail.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        keep_tail(&mut t, &buf[..n], STDERR_TAIL_BYTES);
    }
}

/// Appends `data` to `tail`, dropping from the front past `cap` bytes.
fn keep_tail(tail: &mut VecDeque<u8>, data: &[u8], cap: usize) {
    let data = &data[data.len().saturating_sub(cap)..];
    let over = (tail.len() + data.len()).saturating_sub(cap);
    tail.drain(..over.min(tail.len()));
    tail.extend(data);
}

/// The last [`STDERR_LINES`] non-blank lines of `tail`, each cut to 300
/// characters, control characters escaped.
fn tail_lines(tail: &VecDeque<u8>) -> Vec<String> {
    let bytes: Vec<u8> = tail.iter().copied().collect();
    let mut lines: Vec<String> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .rev()
        .take(STDERR_LINES)
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let mut s = crate::escape::bytes(&l[..l.len().min(300)]);
            if l.len() > 300 {
                s.push('…');
            }
            s
        })
        .collect();
    lines.reverse();
    lines
}

/// A running external driver.
pub struct ProcessDriver {
    name: String,
    child: Child,
    to_driver: Option<Sender<Vec<u8>>>,
    from_driver: Receiver<Line>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    /// Disconnected once the stderr keeper has read everything.
    stderr_done: Receiver<()>,
    hello: Option<Hello>,
    broken: bool,
    reaped: bool,
    /// When the driver's process was seen to exit.
    exited_at: Option<Instant>,
    /// Inodes of the driver's stdio pipes.
    pipes: Vec<u64>,
    /// Wakes `next_line` on an interrupt; removed with the instance.
    _interrupt: crate::harness::interrupt::HookGuard,
    hello_timeout: Duration,
}

impl std::fmt::Debug for ProcessDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessDriver")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("broken", &self.broken)
            .finish()
    }
}

impl ProcessDriver {
    /// The last lines the driver wrote on stderr, formatted for a message
    /// (empty when it wrote none). Call it once the driver's process group
    /// is dead: it waits (at most 2 s, for a stray holder of the pipe) until
    /// everything the driver wrote has been read.
    pub fn stderr_tail(&self) -> String {
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        let t = match self.stderr_tail.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let lines = tail_lines(&t);
        if lines.is_empty() {
            String::new()
        } else {
            format!("; its last stderr lines: {}", lines.join(" | "))
        }
    }

    /// Marks the instance broken and kills its whole process group.
    fn fault(&mut self, e: DriverError) -> DriverError {
        self.kill();
        e
    }

    /// Stops the driver: SIGTERM to its group, [`STOP_GRACE`] (none when an
    /// interrupt is repeated), SIGKILL, reap; then kills whatever still
    /// holds its pipes.
    fn kill(&mut self) {
        self.broken = true;
        self.to_driver = None;
        if !self.reaped {
            let grace = match crate::harness::interrupt::escalation() {
                Some(crate::harness::interrupt::Escalation::Now) => Duration::ZERO,
                _ if self.exited_at.is_some() => Duration::ZERO,
                _ => STOP_GRACE,
            };
            terminate_and_reap(&mut self.child, grace);
            self.reaped = true;
        }
        kill_pipe_holders(&self.pipes);
    }

    fn protocol_error(&mut self, why: String) -> DriverError {
        // Dead first, so its stderr is complete when we quote it.
        self.kill();
        let why = format!("{why}{}", self.stderr_tail());
        let e = DriverError::Protocol {
            driver: self.name.clone(),
            why,
        };
        self.fault(e)
    }

    /// The driver exited, or closed its stdout: say how it ended, and
    /// what of it was left behind.
    fn died(&mut self, during: &str) -> DriverError {
        let pid = self.child.id();
        let exited = exited_within(pid, Duration::from_secs(1));
        kill_group(pid);
        let status = self.child.wait();
        self.reaped = true;
        let holders = kill_pipe_holders(&self.pipes);
        let how = match status {
            Ok(s) if exited => format!("{s}"),
            Ok(_) => "closed its stdout and was killed".into(),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let left = if holders.is_empty() {
            String::new()
        } else {
            format!("; process(es) it started still held its pipes and were killed: {holders:?}")
        };
        let why = format!("{during}: {how}{left}{}", self.stderr_tail());
        let e = DriverError::Died {
            driver: self.name.clone(),
            why,
        };
        self.fault(e)
    }

    fn send(&mut self, line: Vec<u8>) {
        if let Some(tx) = &self.to_driver {
            // A closed channel means the writer saw the driver go away; the
            // reader reports that as EOF.
            let _ = tx.send(line);
        }
    }

    /// The next non-blank line, before `deadline`.
    fn next_line(
        &mut self,
        deadline: Instant,
        waited: Duration,
        during: &str,
    ) -> Result<Vec<u8>, DriverError> {
        loop {
            // Once the driver has exited, only lines already on their way
            // are waited for.
            let until = match self.exited_at {
                Some(t) => deadline.min(t + EXIT_DRAIN),
                None => deadline,
            };
            let left = until.saturating_duration_since(Instant::now());
            match self.from_driver.recv_timeout(left) {
                Ok(Line::Data(l)) => {
                    if l.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(l);
                }
                Ok(Line::Exited) => {
                    self.exited_at.get_or_insert_with(Instant::now);
                }
                Err(RecvTimeoutError::Timeout) if self.exited_at.is_some() => {
                    return Err(self.died(&format!("exited {during}")))
                }
                Ok(Line::Interrupted(sig)) => {
                    let e = DriverError::Interrupted {
                        driver: self.name.clone(),
                        signal: crate::harness::interrupt::name(sig),
                    };
                    return Err(self.fault(e));
                }
                Ok(Line::TooLong) => {
                    return Err(self.protocol_error(format!(
                        "printed a line longer than {MAX_LINE_BYTES} bytes {during}"
                    )))
                }
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.died(&format!("exited {during}")))
                }
                Ok(Line::Failed(e)) => {
                    let e = DriverError::Died {
                        driver: self.name.clone(),
                        why: format!("failed to read its stdout {during}: {e}"),
                    };
                    return Err(self.fault(e));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let e = DriverError::Hung {
                        driver: self.name.clone(),
                        after: waited,
                    };
                    return Err(self.fault(e));
                }
            }
        }
    }

    fn check_usable(&self) -> Result<(), DriverError> {
        if self.broken {
            return Err(DriverError::Died {
                driver: self.name.clone(),
                why: "this instance failed earlier and was stopped".into(),
            });
        }
        Ok(())
    }
}

impl Driver for ProcessDriver {
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    fn hello(&mut self) -> Result<Hello, DriverError> {
        if let Some(h) = &self.hello {
            return Ok(h.clone());
        }
        self.check_usable()?;
        self.send(protocol::line(&ToDriver::Hello {
            protocol: PROTOCOL_VERSION,
            suite: env!("CARGO_PKG_VERSION").into(),
        }));
        let wait = self.hello_timeout;
        let line = self.next_line(Instant::now() + wait, wait, "during the handshake")?;
        match protocol::parse_reply(&line) {
            Ok(Reply::Hello(h)) => {
                self.hello = Some(h.clone());
                Ok(h)
            }
            Ok(other) => {
                Err(self
                    .protocol_error(format!("answered the handshake with {}", describe(&other))))
            }
            Err(why) => Err(self.protocol_error(format!("{why} (during the handshake)"))),
        }
    }

    fn run(&mut self, req: &RunRequest, watchdog: Duration) -> Result<RunOutput, DriverError> {
        if self.hello.is_none() {
            self.hello()?;
        }
        self.check_usable()?;
        let deadline = Instant::now() + watchdog;
        self.send(protocol::run_line(req));
        let during = format!("while running seq {}", req.seq);
        let line = self.next_line(deadline, watchdog, &during)?;
        match protocol::parse_reply(&line) {
            Ok(Reply::Result { seq, output }) if seq == req.seq => Ok(output),
            Ok(Reply::Error { seq, message }) if seq == req.seq => Err(DriverError::Reported {
                driver: self.name.clone(),
                message,
            }),
            Ok(Reply::Result { seq, .. } | Reply::Error { seq, .. }) => {
                Err(self.protocol_error(format!("answered seq {seq} to run seq {}", req.seq)))
            }
            Ok(other @ (Reply::Hello(_) | Reply::Pong { .. })) => Err(self.protocol_error(
                format!("answered run seq {} with {}", req.seq, describe(&other)),
            )),
            Err(why) => Err(self.protocol_error(format!("{why} ({during})"))),
        }
    }

    /// Sends `ping`; a driver that does not implement it answers `error`
    /// ([`Ping::Unsupported`]). One that stays silent is a fault like any
    /// hang: the instance is killed, so callers use a short `watchdog`.
    fn ping(&mut self, seq: u64, watchdog: Duration) -> Result<Ping, DriverError> {
        if self.hello.is_none() {
            self.hello()?;
        }
        self.check_usable()?;
        let deadline = Instant::now() + watchdog;
        self.send(protocol::line(&ToDriver::Ping { seq }));
        let during = format!("while answering ping seq {seq}");
        let line = self.next_line(deadline, watchdog, &during)?;
        match protocol::parse_reply(&line) {
            Ok(Reply::Pong { seq: s }) if s == seq => Ok(Ping::Pong),
            Ok(Reply::Error { seq: s, message }) if s == seq => Ok(Ping::Unsupported(message)),
            Ok(
                Reply::Pong { seq: s } | Reply::Error { seq: s, .. } | Reply::Result { seq: s, .. },
            ) => Err(self.protocol_error(format!("answered seq {s} to ping seq {seq}"))),
            Ok(other @ Reply::Hello(_)) => {
                Err(self
                    .protocol_error(format!("answered ping seq {seq} with {}", describe(&other))))
            }
            Err(why) => Err(self.protocol_error(format!("{why} ({during})"))),
        }
    }
}

fn describe(r: &Reply) -> &'static str {
    match r {
        Reply::Hello(_) => "a hello",
        Reply::Result { .. } => "a result",
        Reply::Error { .. } => "an error",
        Reply::Pong { .. } => "a pong",
    }
}

impl Drop for ProcessDriver {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if !self.broken {
            self.send(protocol::line(&ToDriver::Bye));
            self.to_driver = None; // EOF on the driver's stdin
            exited_within(self.child.id(), BYE_GRACE);
        }
        terminate_and_reap(&mut self.child, Duration::ZERO);
        kill_pipe_holders(&self.pipes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_is_bounded_whatever_is_written() {
        let mut t = VecDeque::new();
        // One huge line without a break, in chunks.
        for _ in 0..100 {
            keep_tail(&mut t, &[b'a'; 10_000], 4096);
            assert!(t.len() <= 4096);
        }
        keep_tail(&mut t, b"\nlast words\n", 4096);
        assert_eq!(t.len(), 4096);
        let lines = tail_lines(&t);
        assert_eq!(lines.last().map(String::as_str), Some("last words"));
        assert!(lines[0].ends_with('…') && lines[0].chars().count() == 301);
        // A chunk larger than the cap keeps its end.
        let mut t = VecDeque::new();
        keep_tail(&mut t, b"0123456789", 4);
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), b"6789");
    }

    #[test]
    fn stderr_lines_quote_the_last_ones_escaped() {
        let mut t = VecDeque::new();
        let text: String = (0..20).map(|i| format!("line {i}\r\n\n")).collect();
        keep_tail(&mut t, text.as_bytes(), STDERR_TAIL_BYTES);
        keep_tail(&mut t, b"\x1b[2J\xff", STDERR_TAIL_BYTES);
        let lines = tail_lines(&t);
        assert_eq!(lines.len(), STDERR_LINES);
        assert_eq!(lines[0], "line 9");
        assert_eq!(lines[STDERR_LINES - 1], "\\x1b[2J\\xff");
    }
}
