//! `sandspec sandbox … -- CMD`: the reference sandbox as a command.
//!
//! Exit codes follow timeout(1) and env(1): the command's own code; 124 on
//! timeout; 128+N when killed by signal N; 125 when the sandbox could not
//! be set up (the command never ran); 128+N when sandspec itself got
//! SIGINT, SIGTERM or SIGHUP (forwarded to the command's tree, which is
//! killed [`INTERRUPT_GRACE`] later).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::harness::interrupt;
use crate::policy::{
    Command, Limits, Network, Outcome, Policy, PortRules, RunOutput, ScopeKind, Size, Timeout,
};
use crate::sandbox::{Canceller, RunOptions, Sandbox, Stdio};

/// Exit code when the command timed out (as timeout(1)).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the sandbox could not be set up (as timeout(1)/env(1)).
pub const EXIT_SETUP: i32 = 125;

/// How long the command's tree has, after an interrupt is forwarded to it,
/// before everything left is killed: enough to flush and clean up, well
/// inside the seconds CI systems wait between SIGINT/SIGTERM and SIGKILL.
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Network mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// No network (the default).
    Deny,
    /// All network.
    Allow,
}

/// IPC scope on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// No signals to processes outside the sandbox.
    Signal,
    /// No abstract unix sockets of processes outside the sandbox.
    AbstractUnixSocket,
}

/// Arguments of `sandspec sandbox`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the command's own; 124 on timeout; 128+N if killed by signal N; 125 if the sandbox could not be set up; 130/143/129 when sandspec gets SIGINT/SIGTERM/SIGHUP (forwarded to the command's tree, killed 2 s later)."
)]
pub struct SandboxArgs {
    /// Allow reading below PATH (file or directory). Repeatable.
    #[arg(long = "read", value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// Allow reading and writing below PATH. Repeatable.
    #[arg(long = "write", value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// Allow executing (and reading) below PATH. Repeatable.
    #[arg(long = "exec", value_name = "PATH")]
    pub exec: Vec<PathBuf>,
    /// Network access.
    #[arg(long = "net", value_enum, default_value = "deny")]
    pub net: NetArg,
    /// Allow TCP connect to PORT only (implies a port allowlist), 1-65535.
    /// Repeatable.
    #[arg(long = "tcp-connect", value_name = "PORT", value_parser = port)]
    pub tcp_connect: Vec<u16>,
    /// Allow TCP bind to PORT only (implies a port allowlist), 1-65535.
    /// Repeatable.
    #[arg(long = "tcp-bind", value_name = "PORT", value_parser = port)]
    pub tcp_bind: Vec<u16>,
    /// Scope IPC to the sandbox (Landlock ABI 6+). Repeatable.
    #[arg(long = "scope", value_enum)]
    pub scope: Vec<ScopeArg>,
    /// Kill the whole tree after this long (e.g. 5, 1.5s, 500ms), from 1ms
    /// to 365 days.
    #[arg(long, value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// Address-space limit per process (e.g. 512M), from 1M to 128P.
    #[arg(long, value_parser = memory)]
    pub memory: Option<Size>,
    /// Maximum number of processes in the sandbox, from 1 to 4194304.
    #[arg(long = "max-procs", value_name = "N", value_parser = max_procs)]
    pub max_procs: Option<u32>,
    /// Maximum open files per process, from 1 to the kernel's fs.nr_open.
    #[arg(long = "max-files", value_name = "N", value_parser = max_files)]
    pub max_files: Option<u64>,
    /// CPU seconds per process, from 1 to 4294967295.
    #[arg(long = "cpu-secs", value_name = "N", value_parser = cpu_secs)]
    pub cpu_secs: Option<u64>,
    /// Capture output and keep at most SIZE bytes of each stream, up to 4G.
    #[arg(long = "max-output", value_name = "SIZE", value_parser = max_output)]
    pub max_output: Option<Size>,
    /// Set an environment variable (the environment is otherwise cleared,
    /// but for a minimal PATH). Repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory of the command.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Print the run's result as JSON on stdout instead of passing output
    /// through.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments (passed as given, UTF-8 or not).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// Largest `--max-procs`: the kernel's PID_MAX_LIMIT (2^22).
pub const MAX_PROCS: u32 = 1 << 22;
/// Largest `--cpu-secs`: the kernel converts the limit to nanoseconds in a
/// u64, which overflows a little above 2^34 s; 2^32 - 1 s is 136 years.
pub const MAX_CPU_SECS: u64 = u32::MAX as u64;
/// `--memory` range: below 1 MiB nothing execs; above 128 PiB (a 57-bit
/// address space, the largest x86-64 and arm64 have) it limits nothing.
pub const MEMORY_RANGE: (u64, u64) = (1 << 20, 1 << 57);
/// Largest `--max-output`: captured output is held in memory.
pub const MAX_OUTPUT: u64 = 4 << 30;

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    v: T,
    lo: T,
    hi: T,
    shown: (&str, &str),
) -> Result<T, String> {
    if v < lo || v > hi {
        Err(format!(
            "out of range: must be from {} to {}",
            shown.0, shown.1
        ))
    } else {
        Ok(v)
    }
}

fn integer<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number", crate::escape::line(s)))
}

fn port(s: &str) -> Result<u16, String> {
    let n: u64 = integer(s)?;
    in_range(n, 1, 65535, ("1", "65535")).map(|n| n as u16)
}

fn timeout(s: &str) -> Result<Timeout, String> {
    let t: Timeout = s.parse()?;
    let max = crate::policy::MAX_TIMEOUT.as_nanos();
    in_range(t.0.as_nanos(), 1_000_000, max, ("1ms", "365 days")).map(|_| t)
}

fn memory(s: &str) -> Result<Size, String> {
    let m: Size = s.parse()?;
    in_range(
        m.0,
        MEMORY_RANGE.0,
        MEMORY_RANGE.1,
        ("1M", "128P (2^57 bytes)"),
    )
    .map(Size)
}

fn max_procs(s: &str) -> Result<u32, String> {
    let n: u64 = integer(s)?;
    in_range(n, 1, u64::from(MAX_PROCS), ("1", "4194304")).map(|n| n as u32)
}

/// The kernel's ceiling on RLIMIT_NOFILE (`fs.nr_open`, 1048576 by default).
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

fn max_files(s: &str) -> Result<u64, String> {
    let n: u64 = integer(s)?;
    let hi = nr_open();
    in_range(n, 1, hi, ("1", &format!("{hi} (fs.nr_open)")))
}

fn cpu_secs(s: &str) -> Result<u64, String> {
    let n: u64 = integer(s)?;
    in_range(n, 1, MAX_CPU_SECS, ("1", "4294967295"))
}

fn max_output(s: &str) -> Result<Size, String> {
    let m: Size = s.parse()?;
    in_range(m.0, 0, MAX_OUTPUT, ("0", "4G")).map(Size)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected K=V, got {s:?}"))?;
    if k.is_empty() {
        return Err(format!("expected K=V, got {s:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

impl SandboxArgs {
    /// The policy these arguments describe.
    pub fn policy(&self) -> Policy {
        let network = if !self.tcp_connect.is_empty() || !self.tcp_bind.is_empty() {
            Network::Ports(PortRules {
                tcp_connect: self.tcp_connect.clone(),
                tcp_bind: self.tcp_bind.clone(),
            })
        } else {
            match self.net {
                NetArg::Deny => Network::Deny,
                NetArg::Allow => Network::Allow,
            }
        };
        Policy {
            read: self.read.clone(),
            write: self.write.clone(),
            exec: self.exec.clone(),
            network,
            scope: self
                .scope
                .iter()
                .map(|s| match s {
                    ScopeArg::Signal => ScopeKind::Signal,
                    ScopeArg::AbstractUnixSocket => ScopeKind::AbstractUnixSocket,
                })
                .collect(),
            limits: Limits {
                memory: self.memory,
                processes: self.max_procs,
                open_files: self.max_files,
                cpu_seconds: self.cpu_secs,
                output_bytes: self.max_output,
            },
            timeout: self.timeout,
            env: self.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            cwd: self.cwd.clone(),
        }
    }
}

/// The exit code for an outcome, following timeout(1)/env(1).
pub fn exit_code(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Exited { code } => *code,
        Outcome::Signaled { signal } => 128 + signal,
        Outcome::Timeout => EXIT_TIMEOUT,
        Outcome::SetupError { .. } => EXIT_SETUP,
    }
}

/// Runs `sandspec sandbox`.
pub fn exec(args: SandboxArgs) -> i32 {
    let policy = args.policy();
    let sandbox = match Sandbox::new(&policy) {
        Ok(s) => s,
        Err(e) => {
            say!("sandspec: {e}");
            if args.json {
                print_json(&RunOutput::setup_error(e.kind, e.message.clone()));
            }
            return EXIT_SETUP;
        }
    };
    if let (Some(n), true) = (args.max_procs, sandbox.process_limit_is_uid_wide()) {
        say!(
            "sandspec: note: {}",
            super::run::uid_wide_note(&format!("--max-procs {n}"))
        );
    }
    for p in sandbox.filtered_paths() {
        say!(
            "sandspec: warning: allowlisted path {} does not exist; left out of the rules",
            p.display()
        );
    }
    let command = Command::argv(args.command.clone());
    let capture = args.json || args.max_output.is_some();
    // SIGINT, SIGTERM and SIGHUP are forwarded to the command's whole tree,
    // which gets INTERRUPT_GRACE to exit before everything left is killed.
    let canceller = match interrupt::install().and_then(|()| Canceller::new()) {
        Ok(c) => c,
        Err(e) => {
            say!("sandspec: failed to set up interrupt forwarding: {e}");
            return EXIT_SETUP;
        }
    };
    let forward = canceller.clone();
    let _hook = interrupt::on_interrupt(move |sig, _| forward.cancel(sig));
    let out = sandbox.run_opts(
        &command,
        &RunOptions {
            stdio: if capture {
                Stdio::Capture
            } else {
                Stdio::Inherit
            },
            cancel: Some(canceller),
            grace: INTERRUPT_GRACE,
            stdin_fd: None,
        },
    );
    if args.json {
        print_json(&out);
    } else if !capture {
        // Nothing is captured when the streams are inherited, except what
        // the sandbox itself has to say (`sandspec: failed to execute …`).
        let _ = std::io::stderr().write_all(&out.stderr);
    } else if capture {
        let _ = std::io::stdout().write_all(&out.stdout);
        let _ = std::io::stderr().write_all(&out.stderr);
        if out.output_truncated {
            say!(
                "sandspec: output truncated at {} per stream",
                policy.limits.output_bytes.unwrap_or(Size(0))
            );
        }
    }
    match &out.outcome {
        Outcome::Timeout => say!(
            "sandspec: timed out after {}; killed the process tree",
            policy.timeout.map_or_else(String::new, |t| t.to_string())
        ),
        Outcome::SetupError { message, .. } => say!("sandspec: {message}"),
        _ => {}
    }
    // Interrupted: the exit status says so, as timeout(1)'s does when it is
    // killed, whatever the command made of the signal in its grace.
    if let Some(sig) = interrupt::requested() {
        say!(
            "sandspec: interrupted by {}; stopped the process tree",
            interrupt::name(sig)
        );
        return interrupt::exit_code(sig);
    }
    exit_code(&out.outcome)
}

fn print_json(out: &RunOutput) {
    match serde_json::to_string(out) {
        Ok(s) => println!("{s}"),
        Err(e) => say!("sandspec: failed to serialise the result: {e}"),
    }
}
