//! Fuzzing that runs on stable `cargo test`: a small mutation fuzzer
//! (fastrand) over the three parsers that take outside input:
//!
//! - `yaml_case_loader`: case files, seeded with every shipped case;
//! - `protocol_reader`: driver protocol lines in both directions, seeded
//!   with real hello/result/error/pong/run messages;
//! - `cli_arguments`: `sandspec` command lines, mutated token by token
//!   (non-UTF-8 bytes included), plus the size and duration parsers.
//!
//! Each input is checked for more than "no panic": problems carry a real
//! `line:col` and stay on one line, a parsed protocol message survives a
//! round trip, a parsed `sandspec sandbox` command line describes a policy
//! inside the documented ranges.
//!
//! Budget (per target): `SANDSPEC_FUZZ_SECS` (default 4) and
//! `SANDSPEC_FUZZ_ITERS` (default 3000, 0 for no limit), whichever ends
//! first; `SANDSPEC_FUZZ_SEED` repeats a run. A long run:
//!
//!     SANDSPEC_FUZZ_SECS=3600 SANDSPEC_FUZZ_ITERS=0 cargo test --release --test fuzz -- --nocapture
//!
//! A failure saves its input and names the file; copy it to
//! `tests/fuzz_regressions/<target>/` and it is replayed on every run.
//! Before each input is checked it is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-<target>-current` (the system's temporary
//! directory where that does not exist), so an input that kills
//! the process outright (a stack overflow aborts) is not lost either.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use sandspec::cli::{Cli, Commands};
use sandspec::corpus::bounds::CaseLimits;
use sandspec::driver::protocol::{self, DriverInfo, FromDriver, Reply, ToDriver};
use sandspec::policy::{Command, Outcome, RunOutput, SetupErrorKind, Size, Timeout};

struct Budget {
    secs: f64,
    iters: u64,
    seed: u64,
}

fn budget() -> Budget {
    let env = |k: &str| std::env::var(k).ok();
    Budget {
        secs: env("SANDSPEC_FUZZ_SECS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(4.0),
        iters: env("SANDSPEC_FUZZ_ITERS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000),
        seed: env("SANDSPEC_FUZZ_SEED")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..)),
    }
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Byte-level mutations: flips, inserts, deletes, duplicates, splices
/// from another seed, tokens from `dict`; one to eight stacked.
fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let at = |rng: &mut fastrand::Rng, v: &Vec<u8>| rng.usize(..=v.len());
        match rng.u8(..8) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(..8);
            }
            1 => {
                let i = at(rng, &v);
                v.insert(i, rng.u8(..));
            }
            2 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                let n = rng.usize(1..=(v.len() - i).min(64));
                v.drain(i..i + n);
            }
            3 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                let n = rng.usize(1..=(v.len() - i).min(256));
                let piece = v[i..i + n].to_vec();
                let j = at(rng, &v);
                v.splice(j..j, piece);
            }
            4 => {
                let other = &seeds[rng.usize(..seeds.len())];
                if !other.is_empty() {
                    let i = rng.usize(..other.len());
                    let n = rng.usize(1..=(other.len() - i).min(512));
                    let j = at(rng, &v);
                    v.splice(j..j, other[i..i + n].iter().copied());
                }
            }
            5 if !v.is_empty() => {
                // Replace a run of bytes with a token.
                let i = rng.usize(..v.len());
                let n = rng.usize(0..=(v.len() - i).min(16));
                let t = dict[rng.usize(..dict.len())];
                v.splice(i..i + n, t.iter().copied());
            }
            _ => {
                let t = dict[rng.usize(..dict.len())];
                let j = at(rng, &v);
                v.splice(j..j, t.iter().copied());
            }
        }
    }
    v.truncate(1 << 20);
    v
}

/// Inputs of earlier failures, replayed first.
fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = manifest().join("tests/fuzz_regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Where inputs are written: `$CARGO_TARGET_TMPDIR` when it exists (a
/// `cargo test` run), else the system's temporary directory (a test binary
/// copied elsewhere, as in the kernel matrix's guests).
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Saves a failing input; on failure to save, says why instead, so the
/// failure being reported is never hidden behind this one.
fn save(target: &str, name: &str, input: &[u8]) -> String {
    let p = scratch().join(format!("fuzz-{target}-{name}"));
    match std::fs::write(&p, input) {
        Ok(()) => format!(
            "input saved to {}; copy it to tests/fuzz_regressions/{target}/ to keep it as a regression",
            p.display()
        ),
        Err(e) => format!("failed to save the input to {}: {e}", p.display()),
    }
}

/// The input itself, escaped and cut, for a log that is all there is (CI).
fn shown(input: &[u8]) -> String {
    const MAX: usize = 2048;
    let cut = &input[..input.len().min(MAX)];
    let more = if input.len() > MAX {
        format!(" ... ({} bytes in all)", input.len())
    } else {
        String::new()
    };
    format!("{}{more}", cut.escape_ascii())
}

/// Runs `check` on the regressions, then on mutants of `seeds` until the
/// budget is spent; fails with the saved input on the first panic or
/// broken property. Returns (inputs tried, inputs `check` accepted).
fn fuzz(
    target: &str,
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
    check: impl Fn(&[u8]) -> Result<bool, String>,
) -> (u64, u64) {
    let b = budget();
    let mut rng = fastrand::Rng::with_seed(b.seed);
    let current = scratch().join(format!("fuzz-{target}-current"));
    let run = |input: &[u8]| -> Result<bool, String> {
        let _ = std::fs::write(&current, input);
        match catch_unwind(AssertUnwindSafe(|| check(input))) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    };
    let fail = |what: &str, input: &[u8], why: String| -> ! {
        let saved = save(target, &format!("{:016x}", fastrand::u64(..)), input);
        panic!(
            "{target}: {what} (seed {}): {why}\ninput: b\"{}\"\n{saved}",
            b.seed,
            shown(input)
        );
    };
    for r in regressions(target) {
        if let Err(why) = run(&r) {
            fail("a regression input fails again", &r, why);
        }
    }
    let t0 = Instant::now();
    let (mut tried, mut accepted) = (0u64, 0u64);
    // The seeds themselves first: they must pass.
    for s in seeds {
        match run(s) {
            Ok(ok) => accepted += u64::from(ok),
            Err(why) => fail("a seed fails", s, why),
        }
        tried += 1;
    }
    while (b.iters == 0 || tried < b.iters) && t0.elapsed() < Duration::from_secs_f64(b.secs) {
        let input = mutate(&mut rng, seeds, dict);
        match run(&input) {
            Ok(ok) => accepted += u64::from(ok),
            Err(why) => fail("a mutant breaks a property", &input, why),
        }
        tried += 1;
    }
    eprintln!(
        "fuzz {target}: {tried} inputs in {:.1}s (seed {}), {accepted} accepted, {} rejected with an error, 0 failures",
        t0.elapsed().as_secs_f64(),
        b.seed,
        tried - accepted
    );
    (tried, accepted)
}

/// Every shipped case file.
fn case_seeds() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && !sandspec::corpus::NOT_CASES.contains(&name.as_str()) {
                walk(&p, out);
            } else if name.ends_with(".yaml") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Vec::new();
    walk(&manifest().join("conformance"), &mut out);
    assert!(out.len() > 40, "only {} seed cases", out.len());
    out
}

const YAML_DICT: &[&[u8]] = &[
    b"!custom ",
    b"!!binary ",
    b"!!str ",
    b"!<tag:yaml.org,2002:int> ",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"---\n",
    b"...\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b": ",
    b"\n- ",
    b"\"",
    b"'",
    b"\t",
    b"\\u0000",
    b"\x00",
    b"\x1b[2J",
    b"\xff",
    b"#",
    b"|\n  ",
    b">-\n  ",
    b"? ",
    b"${",
    b"${SCRATCH}",
    b"${PROBE}",
    b"$${",
    b"99999999999999999999",
    b"-1",
    b"1e999",
    b".nan",
    b"64G",
    b"1T",
    b"16777216T",
    b"0x10",
    b"yes",
    b"~",
    b"null",
    b"true",
    b"size: 18446744073709551616",
    b"timeout: 18000000000000000000",
    b"\n  generated: {size: 64G, filler: x, tail: y}",
    b"\nsetup: {files: [{path: a, size: 1T}]}",
    b"[[[[[[[[[[[[[[[[",
    b"{{{{{{{{{{{{{{{{",
    b"\xe2\x80\xa8",
    b"\r\n",
    b"%YAML 1.2\n",
    b"%TAG !e! tag:example.com,2000:\n",
];

#[test]
fn yaml_case_loader() {
    use sandspec::corpus::{load_text, setup, template};
    let limits = CaseLimits {
        script_bytes: 1 << 20,
        setup_bytes: 1 << 20,
    };
    let seeds = case_seeds();
    let vars: std::collections::BTreeMap<String, String> = template::VARIABLES
        .iter()
        .map(|(k, _)| (k.to_string(), "/tmp/x".to_string()))
        .collect();
    let (tried, _) = fuzz("yaml", &seeds, YAML_DICT, |input| {
        let text = String::from_utf8_lossy(input);
        let lines = text.lines().count() as u64 + 1;
        match load_text(Path::new("fuzz.yaml"), &text, &limits) {
            Ok(cases) => {
                for lc in &cases {
                    if lc.case.id.is_empty() {
                        return Err("a case without an id loaded".into());
                    }
                    // What the harness does next with a loaded case.
                    if let Ok(x) = template::expand(&lc.case, &vars) {
                        let _ = setup::command(&x.run);
                    }
                }
                Ok(true)
            }
            Err(e) => {
                for p in &e.problems {
                    if p.line == 0 || p.col == 0 || p.line > lines {
                        return Err(format!(
                            "problem at {}:{} outside the text ({lines} lines): {}",
                            p.line, p.col, p.message
                        ));
                    }
                    let shown = p.to_string();
                    if shown.chars().any(|c| c.is_control()) {
                        return Err(format!("a problem is not one clean line: {shown:?}"));
                    }
                }
                if e.problems.is_empty() {
                    return Err("an error without a problem".into());
                }
                Ok(false)
            }
        }
    });
    assert!(tried >= seeds.len() as u64);
}

/// Real protocol lines, both directions.
fn protocol_seeds() -> Vec<Vec<u8>> {
    let hello = FromDriver::Hello {
        protocol: 1,
        driver: DriverInfo {
            name: "x".into(),
            version: "1".into(),
        },
        capabilities: sandspec::driver::reference::all_capabilities(),
        requires_landlock_abi: Some(1),
    };
    let out = RunOutput {
        outcome: Outcome::Exited { code: 3 },
        stdout: b"hello".to_vec(),
        stderr: b"\x00\xff".to_vec(),
        output_truncated: true,
        filtered_paths: vec!["/nope".into()],
        duration: Duration::from_micros(1234),
    };
    let mut seeds = vec![
        protocol::line(&hello),
        protocol::line(&FromDriver::Result {
            seq: 7,
            output: out,
        }),
        protocol::line(&FromDriver::Result {
            seq: 8,
            output: RunOutput::setup_error(SetupErrorKind::AbiTooLow, "old"),
        }),
        protocol::line(&FromDriver::Error {
            seq: 9,
            message: "no".into(),
        }),
        protocol::line(&FromDriver::Pong { seq: 10 }),
        protocol::line(&ToDriver::Bye),
        protocol::line(&ToDriver::Ping { seq: 3 }),
    ];
    let cases = sandspec::corpus::load(&manifest().join("conformance")).unwrap();
    for (i, lc) in cases.iter().enumerate().step_by(7) {
        if let Ok(cmd) = sandspec::corpus::setup::command(&lc.case.run) {
            seeds.push(protocol::run_line(&sandspec::driver::RunRequest {
                seq: i as u64,
                case: lc.case.id.clone(),
                policy: lc.case.policy.clone(),
                command: cmd,
            }));
        }
    }
    seeds
}

const JSON_DICT: &[&[u8]] = &[
    b"\"seq\":1,",
    b"\"seq\":",
    b"\"type\":\"result\",",
    b"\"type\":\"hello\",",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.5",
    b"\"exited\"",
    b"\"timeout\"",
    b"\"signaled\":{\"signal\":-1}",
    b"\"code\":99999999999",
    b"\"stdout_b64\":\"!!\"",
    b"\"env\":{\"A\":\"1\",\"A\":\"2\"}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"\xff",
    b"\n",
    b"\x1b",
];

#[test]
fn protocol_reader() {
    let seeds = protocol_seeds();
    fuzz("protocol", &seeds, JSON_DICT, |line| {
        let mut accepted = false;
        match protocol::parse_reply(line) {
            Ok(Reply::Result { seq, output }) => {
                accepted = true;
                let again = protocol::line(&FromDriver::Result {
                    seq,
                    output: output.clone(),
                });
                match protocol::parse_reply(&again) {
                    Ok(Reply::Result { seq: s, output: o }) if s == seq && o == output => {}
                    other => return Err(format!("a result does not round-trip: {other:?}")),
                }
            }
            Ok(_) => accepted = true,
            Err(why) => {
                if why.contains('\n') {
                    return Err(format!("a protocol error is not one line: {why:?}"));
                }
            }
        }
        // The other direction, as `sandspec driver` reads it.
        if let Ok(ToDriver::Run {
            seq,
            case,
            policy,
            command,
        }) = protocol::strict_json(line).and_then(serde_json::from_value::<ToDriver>)
        {
            accepted = true;
            let req = sandspec::driver::RunRequest {
                seq,
                case,
                policy: *policy,
                command,
            };
            let back = protocol::strict_json(&protocol::run_line(&req))
                .and_then(serde_json::from_value::<ToDriver>)
                .map_err(|e| format!("a run request does not re-parse: {e}"))?;
            match back {
                ToDriver::Run {
                    policy, command, ..
                } if *policy == req.policy && command == req.command => {}
                other => return Err(format!("a run request does not round-trip: {other:?}")),
            }
        }
        Ok(accepted)
    });
}

/// Command lines, as argv words.
fn argv_seeds() -> Vec<Vec<&'static str>> {
    vec![
        vec![
            "sandspec", "sandbox", "--read", "/usr", "--exec", "/usr/bin", "--net", "deny", "--",
            "true",
        ],
        vec![
            "sandspec",
            "sandbox",
            "--tcp-connect",
            "80",
            "--tcp-bind",
            "8080",
            "--timeout",
            "1.5s",
            "--memory",
            "64M",
            "--max-procs",
            "8",
            "--max-files",
            "64",
            "--cpu-secs",
            "2",
            "--max-output",
            "1K",
            "--env",
            "A=b",
            "--cwd",
            "/tmp",
            "--json",
            "--scope",
            "signal",
            "--",
            "sh",
            "-c",
            "echo",
        ],
        vec![
            "sandspec",
            "run",
            "--driver",
            "none",
            "--filter",
            "^fs\\.",
            "--tag",
            "isolation",
            "-j",
            "4",
            "--max-script-size",
            "1M",
            "--max-setup-size",
            "2G",
            "--keep",
        ],
        vec![
            "sandspec",
            "list",
            "--tag",
            "network",
            "-v",
            "--max-setup-size",
            "1T",
        ],
        vec!["sandspec", "report", "a.json", "b.json", "--diff"],
        vec![
            "sandspec", "bench", "-n", "3", "--warmup", "0", "--driver", "none", "--seed", "5",
        ],
        vec!["sandspec", "probe", "--json"],
        vec![
            "sandspec",
            "expectations",
            "update",
            "--from",
            "r.json",
            "x.yaml",
        ],
        vec!["sandspec", "driver-check", "--driver", "none"],
    ]
}

const ARG_DICT: &[&str] = &[
    "--",
    "-",
    "--timeout",
    "--memory",
    "--max-procs",
    "--max-files",
    "--cpu-secs",
    "--max-output",
    "--tcp-connect",
    "--tcp-bind",
    "--read",
    "--write",
    "--exec",
    "--env",
    "--cwd",
    "--net",
    "--scope",
    "--json",
    "-j",
    "--jobs",
    "--driver",
    "--driver-cmd",
    "--cases",
    "--expect",
    "--max-script-size",
    "--max-setup-size",
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "18000000000000000000",
    "16777216T",
    "16777215T",
    "128P",
    "1.5",
    ".5",
    "1.2.3",
    "1e3",
    "0.0001",
    "365d",
    "31536000",
    "31536001",
    "1ms",
    "1us",
    "5G",
    "4G",
    "=",
    "A=",
    "=B",
    "K=V",
    "allow",
    "deny",
    "signal",
    "abstract-unix-socket",
    "sandbox",
    "run",
    "list",
    "\u{1b}[2J",
    "",
];

#[test]
fn cli_arguments() {
    use sandspec::cli::sandbox::{MAX_CPU_SECS, MAX_OUTPUT, MAX_PROCS, MEMORY_RANGE};
    let seeds: Vec<Vec<u8>> = argv_seeds()
        .iter()
        .map(|a| a.join("\0").into_bytes())
        .collect();
    let dict: Vec<Vec<u8>> = ARG_DICT
        .iter()
        .map(|t| format!("\0{t}").into_bytes())
        .collect();
    let dict: Vec<&[u8]> = dict
        .iter()
        .map(Vec::as_slice)
        .chain([&b"\xff\xfe"[..], b"\x00"])
        .collect();
    fuzz("cli", &seeds, &dict, |input| {
        // Words are NUL-separated; whatever bytes they hold (not UTF-8
        // included) reach the parser as OsStrings, as from a shell.
        let argv: Vec<OsString> = std::iter::once(OsString::from("sandspec"))
            .chain(
                input
                    .split(|&b| b == 0)
                    .skip(1)
                    .map(|w| OsString::from_vec(w.to_vec())),
            )
            .collect();
        match Cli::try_parse_from(&argv) {
            Err(e) => {
                let _ = e.render().to_string();
                Ok(false)
            }
            Ok(cli) => {
                if let Commands::Sandbox(a) = &cli.command {
                    let p = a.policy();
                    let l = &p.limits;
                    let bad = l
                        .memory
                        .is_some_and(|m| m.0 < MEMORY_RANGE.0 || m.0 > MEMORY_RANGE.1)
                        || l.processes.is_some_and(|n| n == 0 || n > MAX_PROCS)
                        || l.cpu_seconds.is_some_and(|n| n == 0 || n > MAX_CPU_SECS)
                        || l.open_files == Some(0)
                        || l.output_bytes.is_some_and(|n| n.0 > MAX_OUTPUT)
                        || p.timeout.is_some_and(|t| {
                            t.0 < Duration::from_millis(1) || t.0 > sandspec::policy::MAX_TIMEOUT
                        })
                        || a.tcp_connect.iter().chain(&a.tcp_bind).any(|&p| p == 0);
                    if bad {
                        return Err(format!(
                            "a policy outside the documented ranges was accepted: {p:?}"
                        ));
                    }
                    if a.command.is_empty() {
                        return Err("sandbox parsed without a command".into());
                    }
                    let _ = Command::argv(a.command.clone());
                }
                if let Commands::Run(a) = &cli.command {
                    let _ = a.limits.limits();
                }
                Ok(true)
            }
        }
    });
    // The value parsers on their own: what parses prints back to itself.
    let seeds: Vec<Vec<u8>> = [
        "64M",
        "1.5G",
        "4096",
        "1500ms",
        "2s",
        "0.25m",
        "16777215T",
        "1us",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let dict: &[&[u8]] = &[
        b"0", b"9", b".", b"K", b"M", b"G", b"T", b"P", b"B", b"i", b"ms", b"s", b"m", b" ", b"-",
        b"e",
    ];
    fuzz("values", &seeds, dict, |input| {
        let s = String::from_utf8_lossy(input);
        let mut ok = false;
        if let Ok(size) = s.parse::<Size>() {
            ok = true;
            let back: Size = size
                .to_string()
                .parse()
                .map_err(|e| format!("{size:?} prints as something it cannot parse: {e}"))?;
            if back != size {
                return Err(format!("{s:?} → {size:?} → {back:?}"));
            }
        }
        if let Ok(t) = s.parse::<Timeout>() {
            ok = true;
            if t.0 > sandspec::policy::MAX_TIMEOUT {
                return Err(format!("{s:?} → {t:?} is past the maximum"));
            }
            if t.0.subsec_nanos() % 1_000_000 == 0 {
                let back: Timeout = t
                    .to_string()
                    .parse()
                    .map_err(|e| format!("{t:?} prints as something it cannot parse: {e}"))?;
                if back != t {
                    return Err(format!("{s:?} → {t:?} → {back:?}"));
                }
            }
        }
        Ok(ok)
    });
}
