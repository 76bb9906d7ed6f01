//! The shared vocabulary: what a sandboxed command may do ([`Policy`]), what
//! it runs ([`Command`]) and what happened ([`Outcome`], [`RunOutput`]).
//!
//! Every part of sandspec speaks these types: the reference sandbox, the
//! corpus (YAML), the driver protocol (JSON) and the reports. Deserialisation
//! is strict (`deny_unknown_fields`), so a typo in a case file or a driver
//! message is an error, never a silently ignored rule.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the sandboxed command may do. Everything not granted is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Paths (files or directories, recursively) the command may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<PathBuf>,
    /// Paths the command may read, write, create and remove below.
    /// Write implies read: a writable file that cannot be read back is of no
    /// use to a program, and Landlock cannot express "write but not list".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<PathBuf>,
    /// Paths the command may execute (and read, since executing a script or
    /// mapping a binary needs it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<PathBuf>,
    /// Network access; denied unless stated.
    #[serde(default)]
    pub network: Network,
    /// IPC scoping (Landlock ABI 6+): signals to, and abstract unix sockets
    /// of, processes outside the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<ScopeKind>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// Wall-clock limit for the whole process tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// The environment of the command: cleared, then exactly these variables
    /// (plus a minimal `PATH`, see [`DEFAULT_PATH`], unless `PATH` is listed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the command (default: `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
}

/// The `PATH` a sandboxed command gets when the policy lists none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

// Deserialised by hand (not `untagged`) so that a typo in a port rule is
// named in the error instead of "no variant matched".
/// Network access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// No network at all: no TCP connect or bind, no UDP, no raw sockets.
    #[default]
    Deny,
    /// Everything.
    Allow,
    /// Only the listed TCP ports; UDP and raw sockets stay denied.
    #[serde(untagged)]
    Ports(PortRules),
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Network;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("deny, allow, or {tcp_connect: [ports], tcp_bind: [ports]}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Network, E> {
                match v {
                    "deny" => Ok(Network::Deny),
                    "allow" => Ok(Network::Allow),
                    other => Err(E::custom(format!(
                        "unknown network {other:?}: expected deny, allow, or {{tcp_connect: [ports], tcp_bind: [ports]}}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Network, A::Error> {
                PortRules::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Network::Ports)
            }
        }
        d.deserialize_any(V)
    }
}

/// TCP port allowlists (Landlock ABI 4+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRules {
    /// Ports the command may `connect()` to, on any address.
    #[serde(default)]
    pub tcp_connect: Vec<u16>,
    /// Ports the command may `bind()` to.
    #[serde(default)]
    pub tcp_bind: Vec<u16>,
}

/// An IPC scope (Landlock ABI 6+).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// No signals to processes outside the sandbox.
    Signal,
    /// No connecting to abstract unix sockets created outside the sandbox.
    AbstractUnixSocket,
}

/// Resource limits. `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Address space of each process, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Processes (and threads) the sandboxed tree may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
    /// Open file descriptors per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// CPU time per process, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<Size>,
}

impl Limits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Default cap on each of stdout and stderr when the policy sets none.
pub const DEFAULT_OUTPUT_BYTES: u64 = 16 << 20;

/// A size in bytes; parsed from `4096`, `"64K"`, `"64KiB"`, `"16M"`, `"1G"`
/// (powers of 1024; `kB`/`MB`/`GB` are powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// Splits `"1.5 MiB"` into `("1.5", "MiB")`; `None` when there is no number.
fn number_and_unit(s: &str) -> Option<(&str, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let dots = num.matches('.').count();
    if dots > 1 || !num.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((num, unit.trim()))
}

/// `num × mult / div`, exactly, for a decimal `num` ("1.5"); `None` when the
/// result does not fit in a u64. Exact integer arithmetic: through a float,
/// `16777216T` (2^64) rounds to `u64::MAX` and would pass for a number.
fn scaled(num: &str, mult: u128, div: u128) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    // Beyond 40 digits every value overflows anyway; keeps u128 safe.
    if int.trim_start_matches('0').len() > 30 {
        return None;
    }
    let frac = &frac[..frac.len().min(18)];
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let whole = int.checked_mul(scale)?.checked_add(f)?;
    let v = whole.checked_mul(mult)? / scale / div;
    u64::try_from(v).ok()
}

/// The largest [`Timeout`]: 365 days. Longer is a mistake (and the
/// kernel's timers take signed seconds: 18000000000000000000 wrapped to a
/// deadline in the past).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Deserialises a number (via `from_num`) or a string (via `FromStr`),
/// with `expected` as the message for anything else.
fn number_or_string<'de, D, T, N>(
    d: D,
    expected: &'static str,
    from_num: impl FnOnce(N) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
    N: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr<N> {
        N(N),
        S(String),
    }
    match Repr::<N>::deserialize(d).map_err(|_| serde::de::Error::custom(expected))? {
        Repr::N(n) => from_num(n).map_err(serde::de::Error::custom),
        Repr::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = number_and_unit(s)
            .ok_or_else(|| format!("invalid size {s:?}: expected a number and an optional unit"))?;
        let mult: u128 = match unit {
            "" | "B" => 1,
            "K" | "k" | "KiB" | "Ki" => 1 << 10,
            "M" | "MiB" | "Mi" => 1 << 20,
            "G" | "GiB" | "Gi" => 1 << 30,
            "T" | "TiB" | "Ti" => 1 << 40,
            "P" | "PiB" | "Pi" => 1 << 50,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, K, M, G, T, P, KiB…, kB, MB, GB)"
            ))
            }
        };
        scaled(n, mult, 1).map(Size).ok_or_else(|| {
            format!(
                "invalid size {s:?}: out of range (at most {} bytes)",
                u64::MAX
            )
        })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
            if b >= 1 << shift && b % (1 << shift) == 0 {
                return write!(f, "{}{}", b >> shift, unit);
            }
        }
        write!(f, "{b}")
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_string(
            d,
            "invalid size: expected bytes (4096) or a string (\"64M\")",
            |n: u64| Ok(Size(n)),
        )
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes: a number, or a string such as \"64K\", \"16MiB\", \"1G\" (powers of 1024) or \"2MB\" (powers of 1000).",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9.]+\\s*(B|K|k|KiB|Ki|M|MiB|Mi|G|GiB|Gi|T|TiB|Ti|P|PiB|Pi|kB|KB|MB|GB)?\\s*$"}
            ]
        })
    }
}

/// A wall-clock timeout; parsed from `"2s"`, `"500ms"`, `"1.5s"`, `"1m"` or a
/// number of seconds. Serialised as whole milliseconds (`"1500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = number_and_unit(s)
            .ok_or_else(|| format!("invalid duration {s:?}: expected e.g. \"2s\" or \"500ms\""))?;
        // In nanoseconds: (multiplier, divisor).
        let (mult, div): (u128, u128) = match unit {
            "" | "s" => (1_000_000_000, 1),
            "ms" => (1_000_000, 1),
            "us" => (1_000, 1),
            "m" | "min" => (60_000_000_000, 1),
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} (use ms, s, m)"
                ))
            }
        };
        let d = scaled(n, mult, div)
            .map(Duration::from_nanos)
            .filter(|d| *d <= MAX_TIMEOUT)
            .ok_or_else(|| format!("invalid duration {s:?}: out of range (at most 365 days)"))?;
        Timeout::whole_ms(d).map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

impl Timeout {
    /// A timeout is whole milliseconds: the protocol sends it as such, so a
    /// finer one would reach the driver cut to another value.
    fn whole_ms(d: Duration) -> Result<Timeout, String> {
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err("finer than a millisecond (timeouts are whole milliseconds)".into());
        }
        Ok(Timeout(d))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_string(
            d,
            "invalid duration: expected seconds (2) or a string (\"500ms\")",
            |n: f64| {
                Duration::try_from_secs_f64(n)
                    .ok()
                    .filter(|d| *d <= MAX_TIMEOUT)
                    .ok_or_else(|| format!("invalid duration {n}: out of range (0 to 365 days)"))?;
                // Seconds as a float: 1.5 is 1500 ms exactly, 0.001 only
                // nearly; whole milliseconds as Timeout::whole_ms wants.
                let ms = (n * 1000.0).round();
                if (n * 1000.0 - ms).abs() > 1e-6 {
                    return Err(format!(
                        "invalid duration {n}: finer than a millisecond (timeouts are whole milliseconds)"
                    ));
                }
                Ok(Timeout(Duration::from_millis(ms as u64)))
            },
        )
    }
}

impl JsonSchema for Timeout {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timeout".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: seconds as a number, or a string such as \"500ms\", \"2s\", \"1.5s\", \"1m\".",
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9.]+\\s*(s|ms|us|m|min)?\\s*$"}
            ]
        })
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "CommandRepr")]
pub struct Command {
    /// The program and its arguments.
    pub program: Program,
    /// Bytes given to the command on stdin (then EOF). Empty: stdin is at
    /// EOF from the start.
    pub stdin: Vec<u8>,
}

/// The wire form of [`Command`]: `{argv: [...]}` or `{script: {...}}`, plus
/// an optional `stdin_b64`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    script: Option<Script>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64")]
    stdin_b64: Vec<u8>,
}

impl TryFrom<CommandRepr> for Command {
    type Error = String;
    fn try_from(r: CommandRepr) -> Result<Self, String> {
        let program = match (r.argv, r.script) {
            (Some(argv), None) if !argv.is_empty() => {
                Program::Argv(argv.into_iter().map(OsString::from).collect())
            }
            (Some(_), None) => return Err("argv must not be empty".into()),
            (None, Some(script)) => Program::Script(script),
            _ => return Err("a command has exactly one of `argv` and `script`".into()),
        };
        Ok(Command {
            program,
            stdin: r.stdin_b64,
        })
    }
}

/// JSON and YAML carry text: an argument that is not UTF-8 (possible on a
/// command line, see [`Program::Argv`]) cannot be serialised, and is an
/// error rather than a silently different argument.
impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Repr<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            argv: Option<Vec<&'a str>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            script: Option<&'a Script>,
            #[serde(skip_serializing_if = "<[u8]>::is_empty", with = "b64")]
            stdin_b64: &'a [u8],
        }
        let argv = match &self.program {
            Program::Argv(a) => Some(
                a.iter()
                    .map(|x| {
                        x.to_str().ok_or_else(|| {
                            serde::ser::Error::custom(format!(
                                "argument {:?} is not UTF-8",
                                x.to_string_lossy()
                            ))
                        })
                    })
                    .collect::<Result<Vec<&str>, S::Error>>()?,
            ),
            Program::Script(_) => None,
        };
        let script = match &self.program {
            Program::Script(sc) => Some(sc),
            Program::Argv(_) => None,
        };
        Repr {
            argv,
            script,
            stdin_b64: &self.stdin,
        }
        .serialize(s)
    }
}

impl Command {
    /// A command from an argv.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Command {
            program: Program::Argv(argv.into_iter().map(Into::into).collect()),
            stdin: Vec::new(),
        }
    }

    /// A script run by an interpreter, the body passed out of band.
    pub fn script(interpreter: impl Into<String>, body: impl Into<String>) -> Self {
        Command {
            program: Program::Script(Script {
                interpreter: vec![interpreter.into()],
                body: body.into(),
            }),
            stdin: Vec::new(),
        }
    }

    /// The same command with `stdin` as its input.
    pub fn with_stdin(mut self, stdin: impl Into<Vec<u8>>) -> Self {
        self.stdin = stdin.into();
        self
    }
}

/// The program part of a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `argv[0]` is looked up in the policy's `PATH` when it has no slash.
    /// Arguments are bytes, as the kernel takes them: a command line may
    /// carry a name that is not UTF-8 (JSON and YAML cannot, so a case or
    /// a protocol message always has UTF-8 arguments).
    Argv(Vec<OsString>),
    /// A script body run by an interpreter. The body may be megabytes: a
    /// backend must not pass it through argv (ARG_MAX). The reference
    /// sandbox streams it through a pipe the interpreter opens as
    /// `/dev/fd/3`.
    Script(Script),
}

/// A script and the interpreter that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The interpreter and its leading arguments, e.g. `["python3"]` or
    /// `["sh", "-e"]`; a single string is accepted too.
    #[serde(deserialize_with = "one_or_many")]
    pub interpreter: Vec<String>,
    /// The script's text.
    pub body: String,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        match Repr::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a string or a list of strings"))?
        {
            Repr::One(s) => vec![s],
            Repr::Many(v) => v,
        },
    )
}

/// Base64 for byte fields in JSON and YAML.
pub mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialise bytes as standard base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    /// Deserialise standard base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// How a run ended: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command exited by itself with this code.
    Exited {
        /// The exit status (0–255).
        code: i32,
    },
    /// The command was killed by this signal (not by the sandbox's timeout).
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The deadline fired and the sandbox killed the whole process tree.
    Timeout,
    /// The sandbox refused to start; the command never ran.
    SetupError {
        /// What went wrong, for machines.
        kind: SetupErrorKind,
        /// What went wrong, for people.
        message: String,
    },
}

/// Why a sandbox could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SetupErrorKind {
    /// The kernel has no Landlock (ENOSYS: not built in).
    LandlockUnavailable,
    /// Landlock is built in but disabled at boot (EOPNOTSUPP).
    LandlockDisabled,
    /// The kernel's Landlock ABI is too old for what the policy asks.
    AbiTooLow,
    /// The policy itself is wrong (e.g. a relative path, an empty argv).
    InvalidPolicy,
    /// An allowlisted path exists but could not be opened.
    PathError,
    /// `landlock_restrict_self`, the seccomp filter or a limit failed.
    RestrictFailed,
    /// The command could not be started (fork, exec, pipes).
    SpawnFailed,
    /// The backend reported a setup failure it did not classify.
    Other,
}

impl SetupErrorKind {
    /// The snake_case name used in YAML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupErrorKind::LandlockUnavailable => "landlock_unavailable",
            SetupErrorKind::LandlockDisabled => "landlock_disabled",
            SetupErrorKind::AbiTooLow => "abi_too_low",
            SetupErrorKind::InvalidPolicy => "invalid_policy",
            SetupErrorKind::PathError => "path_error",
            SetupErrorKind::RestrictFailed => "restrict_failed",
            SetupErrorKind::SpawnFailed => "spawn_failed",
            SetupErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for SetupErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    /// How it ended.
    pub outcome: Outcome,
    /// Captured stdout, at most the policy's `output_bytes`.
    #[serde(with = "b64", rename = "stdout_b64")]
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the policy's `output_bytes`.
    #[serde(with = "b64", rename = "stderr_b64")]
    pub stderr: Vec<u8>,
    /// True when stdout or stderr went past the cap and was cut.
    #[serde(default)]
    pub output_truncated: bool,
    /// Allowlisted paths that did not exist and were left out of the rules.
    #[serde(default)]
    pub filtered_paths: Vec<PathBuf>,
    /// Wall time from spawn to the end of the tree.
    #[serde(rename = "duration_us", with = "micros")]
    pub duration: Duration,
}

impl RunOutput {
    /// A run that never started.
    pub fn setup_error(kind: SetupErrorKind, message: impl Into<String>) -> Self {
        RunOutput {
            outcome: Outcome::SetupError {
                kind,
                message: message.into(),
            },
            stdout: Vec::new(),
            stderr: Vec::new(),
            output_truncated: false,
            filtered_paths: Vec::new(),
            duration: Duration::ZERO,
        }
    }
}

mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!("4096".parse::<Size>().unwrap(), Size(4096));
        assert_eq!("64K".parse::<Size>().unwrap(), Size(64 << 10));
        assert_eq!("16MiB".parse::<Size>().unwrap(), Size(16 << 20));
        assert_eq!("1G".parse::<Size>().unwrap(), Size(1 << 30));
        assert_eq!("2MB".parse::<Size>().unwrap(), Size(2_000_000));
        assert!("12 parsecs".parse::<Size>().is_err());
        assert!("".parse::<Size>().is_err());
        assert_eq!("1.5K".parse::<Size>().unwrap(), Size(1536));
        assert_eq!(".5M".parse::<Size>().unwrap(), Size(512 << 10));
        assert!("1.2.3".parse::<Size>().is_err());
        assert!(".".parse::<Size>().is_err());
    }

    #[test]
    fn sizes_past_u64_are_refused_not_rounded_to_no_limit() {
        // 2^64 bytes: through an f64 it became u64::MAX, i.e. RLIM_INFINITY.
        let e = "16777216T".parse::<Size>().unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert_eq!(
            "16777215T".parse::<Size>().unwrap(),
            Size(16_777_215u64 << 40)
        );
        assert_eq!(
            "18446744073709551615".parse::<Size>().unwrap(),
            Size(u64::MAX)
        );
        assert!("18446744073709551616".parse::<Size>().is_err());
        assert!("99999999999999999999999999999999999999999999"
            .parse::<Size>()
            .is_err());
    }

    #[test]
    fn timeouts_past_a_year_are_refused() {
        for bad in ["18000000000000000000", "366d", "527041m", "31536001"] {
            assert!(bad.parse::<Timeout>().is_err(), "{bad}");
        }
        assert_eq!("31536000".parse::<Timeout>().unwrap().0, MAX_TIMEOUT);
        assert!(serde_json::from_str::<Timeout>("1e19").is_err());
        assert!(serde_json::from_str::<Timeout>("-1").is_err());
    }

    #[test]
    fn timeouts_parse_and_print() {
        assert_eq!(
            "500ms".parse::<Timeout>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!("2".parse::<Timeout>().unwrap().0, Duration::from_secs(2));
        assert_eq!(
            "1.5s".parse::<Timeout>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert!("soon".parse::<Timeout>().is_err());
        assert_eq!(Timeout(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn timeouts_are_whole_milliseconds_as_the_protocol_sends_them() {
        // Found by the fuzzer: "0.51ms" went to the driver as "0ms", and
        // "10000.5ms" as "10000ms".
        for bad in ["1.5ms", "0.51ms", "10000.50ms", "1500us", "0.0001"] {
            let e = bad.parse::<Timeout>().unwrap_err();
            assert!(e.contains("whole milliseconds"), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<Timeout>("0.0005").is_err());
        assert_eq!(
            serde_json::from_str::<Timeout>("0.001").unwrap().0,
            Duration::from_millis(1)
        );
        assert_eq!(
            "2000us".parse::<Timeout>().unwrap().0,
            Duration::from_millis(2)
        );
        for t in ["1ms", "1.5s", "10000ms", "0.001", "2000us"] {
            let t: Timeout = t.parse().unwrap();
            let wire = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Timeout>(&wire).unwrap(), t, "{wire}");
        }
    }

    #[test]
    fn policy_json_round_trips_and_rejects_unknown_fields() {
        let p: Policy = serde_json::from_str(
            r#"{"read":["/usr"],"network":{"tcp_connect":[80]},"limits":{"memory":"64M"},"timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(
            p.network,
            Network::Ports(PortRules {
                tcp_connect: vec![80],
                tcp_bind: vec![]
            })
        );
        assert_eq!(p.limits.memory, Some(Size(64 << 20)));
        let back: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<Policy>(r#"{"raed":["/usr"]}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"network":"maybe"}"#).is_err());
        let deny: Policy = serde_json::from_str(r#"{"network":"deny"}"#).unwrap();
        assert_eq!(deny.network, Network::Deny);
    }

    #[test]
    fn outcome_json_shape_matches_the_protocol() {
        let o = Outcome::Exited { code: 1 };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"exited":{"code":1}}"#
        );
        assert_eq!(
            serde_json::to_string(&Outcome::Timeout).unwrap(),
            r#""timeout""#
        );
        let c: Command =
            serde_json::from_str(r#"{"script":{"interpreter":"python3","body":"print(1)"}}"#)
                .unwrap();
        assert!(matches!(c.program, Program::Script(_)));
    }
}
