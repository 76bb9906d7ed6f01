//! The case format: one YAML document per conformance case.
//!
//! This file is the contract between the corpus, the harness and the
//! drivers. Every struct denies unknown fields; every vocabulary (tags,
//! capabilities, oracles) is a closed enum, so a typo is an error with a
//! `file:line:column`, never a silently ignored check.
//!
//! String values in `policy`, `run`, `setup` and `expect` may use templates,
//! expanded per case by the harness before anything runs:
//! `${SCRATCH}` (the case's scratch directory), `${PROBE}` (the probe
//! binary), `${ORACLE_TCP_PORT}`, `${ORACLE_UDP_PORT}`, `${ORACLE_DNS_PORT}`,
//! `${ORACLE_TCP_PORT_2}` (a second TCP listener, for port allowlists),
//! `${VICTIM_PID}` (a harness-owned process outside the sandbox),
//! `${ORACLE_UNIX_NAME}` (an abstract unix socket outside the sandbox).
//! Port lists hold numbers, so oracle ports go in `oracle_ports` instead.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{Limits, Network, Policy, ScopeKind, SetupErrorKind, Size, Timeout};

/// One conformance case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Stable forever: expectation files and reports key on it.
    /// Dotted lowercase, e.g. `net.deny.dns-udp`.
    pub id: String,
    /// One sentence: what a sandbox must do.
    pub summary: String,
    /// Grouping and selection (`--tag`).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// What the driver and host must offer; unmet means skip, with a reason.
    #[serde(default)]
    pub requires: Requires,
    /// Harness-owned listeners this case uses.
    #[serde(default)]
    pub oracles: Vec<OracleKind>,
    /// Files, directories and symlinks created in the scratch directory.
    #[serde(default)]
    pub setup: Setup,
    /// Run the backend on a simulated kernel (e.g. without Landlock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
    /// The policy under test.
    #[serde(default)]
    pub policy: Policy,
    /// Oracle ports added to `policy.network`'s TCP rules at run time.
    #[serde(default, skip_serializing_if = "OraclePorts::is_empty")]
    pub oracle_ports: OraclePorts,
    /// The command under test.
    pub run: Run,
    /// What must be observed.
    pub expect: Expect,
    /// The same case with the restriction lifted; must succeed. Required
    /// for every case tagged `isolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// Where the attack comes from: CVE ids (`CVE-2017-5226`), advisory
    /// ids (`GHSA-…`) or URLs of upstream issues. Shown by `sandspec list
    /// --verbose` and in the JSON report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
}

/// Closed tag vocabulary.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// One of the five cases that started the project.
    Seed,
    /// The case checks a restriction: it must fail under the `none` driver.
    Isolation,
    /// Filesystem access.
    Filesystem,
    /// Network access.
    Network,
    /// Process lifecycle: exit codes, signals, timeouts, trees.
    Process,
    /// Resource limits.
    Limits,
    /// Scripts and interpreters.
    Script,
    /// Kernel and platform behaviour (Landlock missing, ABI).
    Platform,
    /// Escape attempts.
    Escape,
    /// Environment, cwd, stdin.
    Environment,
    /// Output capture and caps.
    Output,
    /// The command's terminal: input injection (TIOCSTI), terminal ioctls.
    Terminal,
    /// File descriptors the command inherits from its caller.
    InheritedFds,
    /// Socket families, options and addresses (Fast Open, autobind,
    /// netlink, IPv6, v4-mapped, compat syscalls).
    Sockets,
    /// Unix sockets, pathname and abstract.
    UnixSockets,
    /// Hard links, renames and `/proc` detours around path rules.
    Links,
    /// File metadata: modes, owners, timestamps, device nodes.
    Metadata,
    /// IPC objects and keyrings: POSIX mqueues, SysV, keys.
    Ipc,
    /// Namespaces and mounts.
    Namespaces,
    /// ptrace and `process_vm_*`.
    Ptrace,
    /// Signals to the supervisor, the parent and outside processes.
    Signals,
    /// Outliving the run or its timeout: setsid, fork chasers, renamed
    /// processes.
    TimeoutEvasion,
    /// Running code the exec rules do not allow: memfd, loader, interpreter.
    ExecBypass,
    /// Kernel attack surface: bpf, perf, userfaultfd, io_uring.
    KernelSurface,
    /// Floods on stdout or stderr.
    Flood,
}

/// Requirements; an unmet one makes the case a skip with its reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Capabilities the driver must claim in its handshake.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Host Landlock ABI: `">=4"`, `"<4"`, `"==7"`, `"any"`, or `"none"`
    /// (no usable Landlock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_abi: Option<String>,
    /// Programs that must be on the host's PATH (e.g. `python3`).
    #[serde(default)]
    pub programs: Vec<String>,
    /// `true`: only as root; `false`: only as a non-root user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<bool>,
    /// `true`: only for backends built on Landlock, i.e. whose handshake
    /// declares `requires_landlock_abi` (a case about refusing to run
    /// without Landlock means nothing for a backend that does not use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_requires_landlock: Option<bool>,
    /// The host's architecture is one of these (`uname -m` names:
    /// `x86_64`, `aarch64`, …), e.g. for a case about a compat syscall.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    /// Sysctls that must read exactly this value (trimmed), e.g.
    /// `{dev.tty.legacy_tiocsti: "1"}`; a sysctl this kernel does not have
    /// is unmet too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// `true`: the filesystem that holds scratch directories (the
    /// harness's `TMPDIR`) takes `user.*` extended attributes (tmpfs
    /// before Linux 6.6 and ramfs do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_xattr: Option<bool>,
}

/// Closed capability vocabulary, claimed by drivers in `hello`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Capability {
    /// `policy.read`.
    #[serde(rename = "fs.read")]
    FsRead,
    /// `policy.write`.
    #[serde(rename = "fs.write")]
    FsWrite,
    /// `policy.exec`.
    #[serde(rename = "fs.exec")]
    FsExec,
    /// Missing allowlisted paths are filtered and reported.
    #[serde(rename = "fs.filter_missing")]
    FsFilterMissing,
    /// `network: deny`.
    #[serde(rename = "net.deny")]
    NetDeny,
    /// `network: allow`.
    #[serde(rename = "net.allow")]
    NetAllow,
    /// `network: {tcp_connect: […]}`.
    #[serde(rename = "net.tcp_connect")]
    NetTcpConnect,
    /// `network: {tcp_bind: […]}`.
    #[serde(rename = "net.tcp_bind")]
    NetTcpBind,
    /// `scope: [signal]`.
    #[serde(rename = "scope.signal")]
    ScopeSignal,
    /// `scope: [abstract_unix_socket]`.
    #[serde(rename = "scope.abstract_unix_socket")]
    ScopeAbstractUnixSocket,
    /// `limits.memory`.
    #[serde(rename = "limits.memory")]
    LimitsMemory,
    /// `limits.processes`.
    #[serde(rename = "limits.processes")]
    LimitsProcesses,
    /// `limits.open_files`.
    #[serde(rename = "limits.open_files")]
    LimitsOpenFiles,
    /// `limits.cpu_seconds`.
    #[serde(rename = "limits.cpu_seconds")]
    LimitsCpuSeconds,
    /// `limits.output_bytes`.
    #[serde(rename = "limits.output_bytes")]
    LimitsOutputBytes,
    /// `policy.timeout`, reported as `timeout`, whole tree killed.
    #[serde(rename = "timeout")]
    Timeout,
    /// `run.script` (body passed out of band, not via argv).
    #[serde(rename = "script")]
    Script,
    /// `run.stdin`.
    #[serde(rename = "stdin")]
    Stdin,
    /// `policy.env` (cleared environment).
    #[serde(rename = "env")]
    Env,
    /// `policy.cwd`.
    #[serde(rename = "cwd")]
    Cwd,
    /// The `terminal` oracle: a harness pty becomes the command's stdin
    /// and controlling terminal. Only in-process drivers can claim it (the
    /// protocol passes no file descriptors).
    #[serde(rename = "terminal")]
    Terminal,
    /// `run.fds`: the command is started while its caller holds these
    /// open and inheritable. Only in-process drivers can claim it.
    #[serde(rename = "fds.inherit")]
    FdsInherit,
}

/// Harness-owned listeners on 127.0.0.1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OracleKind {
    /// TCP listener counting accepted connections: `${ORACLE_TCP_PORT}`.
    Tcp,
    /// A second TCP listener: `${ORACLE_TCP_PORT_2}`.
    Tcp2,
    /// UDP socket counting datagrams: `${ORACLE_UDP_PORT}`.
    Udp,
    /// DNS responder counting (and answering) queries: `${ORACLE_DNS_PORT}`.
    Dns,
    /// A harness-owned process (`${VICTIM_PID}`) that must survive.
    Victim,
    /// A listener on an abstract unix socket outside the sandbox, counting
    /// accepted connections; its name (without the leading NUL) in
    /// `${ORACLE_UNIX_NAME}`. For `scope: [abstract_unix_socket]`.
    Unix,
    /// Pathname unix sockets in a harness directory outside every
    /// allowlisted path (the docker.sock and D-Bus class): a stream
    /// listener at `${ORACLE_UNIX_PATH}` and a datagram socket at
    /// `${ORACLE_UNIX_DGRAM_PATH}`; `received` counts connections and
    /// datagrams together.
    UnixPath,
    /// While the command runs, the harness looks for TCP sockets in LISTEN
    /// state that belong to the run's processes and connects to each from
    /// the host over loopback; `connected` counts the connections made.
    Inbound,
    /// A pty the harness owns, given to the command as its stdin and
    /// controlling terminal; `received` counts the bytes found queued on
    /// its input side after the run (pushed with TIOCSTI, say): whoever
    /// read the terminal next would have got them as typed input.
    Terminal,
}

/// Oracle ports to add to the case's TCP port rules at run time, when
/// their numbers are known (a port list holds numbers, so it cannot hold a
/// `${ORACLE_TCP_PORT}` template). Applied by [`crate::corpus::template::expand`]
/// to `policy.network`, which must then be a port-rule map; a control that
/// replaces `network` replaces them too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OraclePorts {
    /// Oracles (`tcp`, `tcp2`) whose ports are added to `tcp_connect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_connect: Vec<OracleKind>,
    /// Oracles (`tcp`, `tcp2`) whose ports are added to `tcp_bind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_bind: Vec<OracleKind>,
}

impl OraclePorts {
    /// True when no oracle port is listed.
    pub fn is_empty(&self) -> bool {
        self.tcp_connect.is_empty() && self.tcp_bind.is_empty()
    }
}

/// What the harness creates in the scratch directory before the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Directories (relative to the scratch directory).
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Files.
    #[serde(default)]
    pub files: Vec<SetupFile>,
    /// Symlinks.
    #[serde(default)]
    pub symlinks: Vec<SetupSymlink>,
}

/// A file in the scratch directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupFile {
    /// Path relative to the scratch directory.
    pub path: String,
    /// Literal content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Generated content of this size (repeated `x`), instead of `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Octal mode, e.g. `"0755"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A symlink in the scratch directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupSymlink {
    /// Link path relative to the scratch directory.
    pub path: String,
    /// Where it points (templated; may be absolute).
    pub target: String,
}

/// A simulated platform, made real by a seccomp filter the harness installs
/// on the backend process before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Simulate {
    /// How the landlock syscalls fail.
    pub landlock: SimulatedLandlock,
}

/// How the simulated kernel lacks Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SimulatedLandlock {
    /// Syscalls 444–446 fail with ENOSYS (not built in).
    Enosys,
    /// Syscalls 444–446 fail with EOPNOTSUPP (disabled at boot).
    Eopnotsupp,
}

/// The command of a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The argv (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// A script, with a literal or generated body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<RunScript>,
    /// Text given on stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Files the command's caller holds open and inheritable when it
    /// starts the command, as a careless caller leaks them; the `i`-th
    /// one's number is `${FD_i}`. Needs the `fds.inherit` capability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<InheritedFd>,
}

/// A file the caller holds open when the command starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InheritedFd {
    /// The file or directory (templated, absolute).
    pub path: String,
    /// How it is opened.
    pub open: FdOpen,
}

/// How an inherited file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FdOpen {
    /// `O_RDONLY`.
    Read,
    /// `O_WRONLY` (no truncation, no creation: make it in `setup`).
    Write,
    /// `O_RDWR`.
    ReadWrite,
    /// `O_RDONLY | O_DIRECTORY`: a directory fd, for `openat`.
    Directory,
    /// `O_PATH`.
    Path,
}

/// A script in a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunScript {
    /// Interpreter and leading arguments.
    pub interpreter: Vec<String>,
    /// Literal body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Generated body (for size tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedBody>,
}

/// A body of `size` bytes: `filler` repeated, then `tail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratedBody {
    /// Total size, at least.
    pub size: Size,
    /// A line repeated to fill (e.g. `"x = 1\n"`).
    pub filler: String,
    /// The last lines (e.g. `"print('done')\n"`).
    pub tail: String,
}

/// What must be observed. Every present field must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeMatcher>,
    /// Stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<TextMatcher>,
    /// Stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<TextMatcher>,
    /// The probe's JSON report (the last JSON line on stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeMatcher>,
    /// Oracle counts, e.g. `{dns: {received: 0}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oracles: BTreeMap<OracleKind, OracleMatcher>,
    /// Host side effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostMatcher>,
    /// Nothing the run started is alive after it, and the probe reported
    /// the `pids` it started (evidence there was something to look for).
    #[serde(default)]
    pub no_survivors: bool,
    /// How many processes the run left alive (found by the host's means:
    /// the run's cgroup, its process tree, orphans re-parented to the
    /// harness). Absent: any survivor fails the case. A control that
    /// proves a daemon really starts says `">=1"`. Survivors are killed
    /// after the verdict either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivors: Option<IntMatcher>,
    /// Exactly these paths were reported as filtered (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered_paths: Option<Vec<String>>,
    /// The output was (or was not) truncated at the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_truncated: Option<bool>,
}

/// Matches an [`crate::policy::Outcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OutcomeMatcher {
    /// `{exited: {code: 0}}`; `code` omitted: any.
    Exited {
        /// The exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<IntMatcher>,
    },
    /// `{signaled: {signal: 9}}`; `signal` omitted: any.
    Signaled {
        /// The signal number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<IntMatcher>,
    },
    /// `timeout`.
    Timeout,
    /// `{setup_error: {kind: [landlock_unavailable]}}`; `kind` omitted or
    /// empty: any kind.
    SetupError {
        /// Accepted kinds.
        #[serde(default)]
        kind: Vec<SetupErrorKind>,
    },
    /// Exited with a non-zero code, or was signaled: "the command failed".
    Failed,
}

// Deserialised by hand (not `untagged`) so that a bad value gets a message
// naming the accepted forms, and a bad comparison is an error at load.
/// Matches an integer: `0`, `{not: 0}`, `{in: [1, 2]}`, `">=1"`, `"<3"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IntMatcher {
    /// Exactly.
    Eq(i64),
    /// A comparison string: `">=1"`, `"<=3"`, `">0"`, `"<3"`, `"==2"`, `"!=0"`.
    Cmp(String),
    /// `{not: N}` or `{in: [..]}`.
    Set(IntSet),
}

impl<'de> Deserialize<'de> for IntMatcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = IntMatcher;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an integer, a comparison such as \">=1\", or {not: N} or {in: [N, ...]}",
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntMatcher, E> {
                Ok(IntMatcher::Eq(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntMatcher, E> {
                i64::try_from(v)
                    .map(IntMatcher::Eq)
                    .map_err(|_| E::custom(format!("integer {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntMatcher, E> {
                let m = IntMatcher::Cmp(v.to_string());
                m.check().map_err(E::custom)?;
                Ok(m)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<IntMatcher, A::Error> {
                let set = IntSet::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let m = IntMatcher::Set(set);
                m.check().map_err(serde::de::Error::custom)?;
                Ok(m)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for IntMatcher {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntMatcher".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let set = generator.subschema_for::<IntSet>();
        schemars::json_schema!({
            "description": "Matches an integer: exactly (0), a comparison (\">=1\", \"<3\", \"==2\", \"!=0\"), {not: N} or {in: [N, ...]}.",
            "oneOf": [
                {"type": "integer"},
                {"type": "string", "pattern": "^\\s*(>=|<=|==|!=|>|<)\\s*-?[0-9]+\\s*$"},
                set
            ]
        })
    }
}

/// Set forms of [`IntMatcher`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IntSet {
    /// Anything but this.
    Not(i64),
    /// One of these.
    In(Vec<i64>),
}

/// Matches stdout or stderr (as UTF-8, lossily).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextMatcher {
    /// Exactly this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Contains each of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// Contains none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_contains: Vec<String>,
    /// Matches this regex (validated at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Is (or is not) empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<bool>,
    /// Byte length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<IntMatcher>,
}

/// Matches the probe's JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeMatcher {
    /// The probe's `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// The probe's `errno` is one of these (e.g. `[EACCES, EPERM]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errno: Vec<String>,
    /// The probe's `value` (op-specific, e.g. bytes read) as an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<IntMatcher>,
}

/// Matches what an oracle saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OracleMatcher {
    /// Connections accepted, datagrams or queries received. For `victim`:
    /// not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<IntMatcher>,
    /// For `victim`: the process is still alive after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive: Option<bool>,
    /// For `inbound`: connections the harness made to the run's listening
    /// sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<IntMatcher>,
}

/// Host side effects, checked outside the sandbox after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostMatcher {
    /// Paths that must not exist (templated).
    #[serde(default)]
    pub absent: Vec<String>,
    /// Paths that must exist.
    #[serde(default)]
    pub present: Vec<String>,
    /// Files whose content must be exactly this (path → content).
    #[serde(default)]
    pub content: BTreeMap<String, String>,
    /// Permission bits (octal string, e.g. `"0644"`, compared with the
    /// file type masked off) of these paths, not following a final symlink.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mode: BTreeMap<String, String>,
    /// Owner of these paths, not following a final symlink.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owner: BTreeMap<String, Owner>,
    /// How many kernel objects the run created and left behind: POSIX
    /// message queues, SysV shared memory, message queues and semaphore
    /// sets, keys. The harness lists them before and after the run,
    /// removes what the run left, and names each in the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_left: Option<IntMatcher>,
    /// Canaries the command must not have read (or, for a directory,
    /// listed): paths under `${SCRATCH}`. Before the run the harness sets
    /// each one's access time far into the past; a read moves it (the
    /// kernel updates an access time older than a day even under
    /// `relatime`), so an unchanged one shows it was not read. The control
    /// should list the same paths under `read`, which shows the host can
    /// see reads at all (a read-only mount never updates access times).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    /// Canaries (as in `unread`) that must have been read during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
}

/// A file's owner; each field present must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owning uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The owning gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// The control run: the case again with the restriction lifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Run the control through another driver: `none` runs it without
    /// any sandbox, for escapes no policy field can grant, or a backend
    /// that refuses a whole class of syscalls whatever the policy says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<ControlDriver>,
    /// Replaces the case's `run` (argv or script, stdin, fds) for the
    /// control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// Fields replacing the case's policy fields (each present field
    /// replaces the whole field).
    #[serde(default)]
    pub policy: PolicyPatch,
    /// Run without the case's `simulate` (default `true` when the case
    /// simulates a platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsimulated: Option<bool>,
    /// What the control must observe.
    pub expect: Expect,
}

/// The driver of a control run, when it is not the case's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlDriver {
    /// The `none` driver: no sandbox at all.
    None,
}

/// A partial [`Policy`] for controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// Replaces `read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<std::path::PathBuf>>,
    /// Replaces `write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<std::path::PathBuf>>,
    /// Replaces `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<std::path::PathBuf>>,
    /// Replaces `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Replaces `scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<ScopeKind>>,
    /// Replaces `limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Replaces `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Replaces `env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Replaces `cwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<std::path::PathBuf>,
}

impl PolicyPatch {
    /// `base` with this patch applied.
    pub fn apply(&self, base: &Policy) -> Policy {
        let mut p = base.clone();
        if let Some(v) = &self.read {
            p.read = v.clone();
        }
        if let Some(v) = &self.write {
            p.write = v.clone();
        }
        if let Some(v) = &self.exec {
            p.exec = v.clone();
        }
        if let Some(v) = &self.network {
            p.network = v.clone();
        }
        if let Some(v) = &self.scope {
            p.scope = v.clone();
        }
        if let Some(v) = &self.limits {
            p.limits = v.clone();
        }
        if let Some(v) = &self.timeout {
            p.timeout = Some(*v);
        }
        if let Some(v) = &self.env {
            p.env = v.clone();
        }
        if let Some(v) = &self.cwd {
            p.cwd = Some(v.clone());
        }
        p
    }
}
