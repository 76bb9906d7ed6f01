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

use super::child::{exited_within, kill_and_reap, kill_group};
use super::protocol::{self, Reply, ToDriver, MAX_LINE_BYTES, PROTOCOL_VERSION};
use super::{Driver, DriverError, DriverFactory, Hello, Ping, RunRequest};
use crate::corpus::case::SimulatedLandlock;
use crate::policy::RunOutput;
use crate::sandbox::simulate::NoLandlock;

/// Lines of the driver's stderr kept for error messages.
const STDERR_LINES: usize = 12;

/// How long a driver gets to exit after `bye` before its group is killed.
const BYE_GRACE: Duration = Duration::from_secs(2);

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
            kill_and_reap(&mut child);
            return Err(start_err("failed to open the driver's pipes".into()));
        };
        let (to_tx, to_rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || writer(stdin, to_rx));
        let (from_tx, from_rx) = mpsc::channel();
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

/// What the stdout reader thread passes on.
enum Line {
    Data(Vec<u8>),
    TooLong,
    Eof,
    Failed(std::io::Error),
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

fn stderr_keeper(stderr: std::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let r = BufReader::new(stderr);
    for line in r.split(b'\n') {
        let Ok(line) = line else { return };
        let mut s = String::from_utf8_lossy(&line).into_owned();
        if s.len() > 300 {
            let mut cut = 300;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_LINES {
                t.pop_front();
            }
            t.push_back(s);
        }
    }
}

/// A running external driver.
pub struct ProcessDriver {
    name: String,
    child: Child,
    to_driver: Option<Sender<Vec<u8>>>,
    from_driver: Receiver<Line>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Disconnected once the stderr keeper has read everything.
    stderr_done: Receiver<()>,
    hello: Option<Hello>,
    broken: bool,
    reaped: bool,
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
        if t.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = t.iter().map(String::as_str).collect();
            format!("; its last stderr lines: {}", lines.join(" | "))
        }
    }

    /// Marks the instance broken and kills its whole process group.
    fn fault(&mut self, e: DriverError) -> DriverError {
        self.kill();
        e
    }

    fn kill(&mut self) {
        self.broken = true;
        self.to_driver = None;
        if !self.reaped {
            kill_and_reap(&mut self.child);
            self.reaped = true;
        }
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

    /// The driver closed stdout: say how it ended.
    fn died(&mut self, during: &str) -> DriverError {
        let pid = self.child.id();
        let exited = exited_within(pid, Duration::from_secs(1));
        kill_group(pid);
        let status = self.child.wait();
        self.reaped = true;
        let how = match status {
            Ok(s) if exited => format!("{s}"),
            Ok(_) => "closed its stdout and was killed".into(),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let why = format!("{during}: {how}{}", self.stderr_tail());
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
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_driver.recv_timeout(left) {
                Ok(Line::Data(l)) => {
                    if l.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(l);
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
        kill_and_reap(&mut self.child);
    }
}
