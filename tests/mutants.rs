//! The corpus's mutation score as a test: every mutant of the reference
//! sandbox (one enforcement mechanism switched off,
//! `sandspec::sandbox::Mutant`) must be caught by at least one case, i.e.
//! a case that passes against the reference must not pass against the
//! mutant. A survivor means no case depends on that mechanism: the test
//! fails and names it.
//!
//! To stay cheap, each mutant is tried against the cases most likely to
//! catch it first (a hint by case id; the order only saves time) and stops
//! at the first catch that reproduces (the case fails the mutant again and
//! passes the reference again). A survivor is only declared after every
//! case that passes unmutated was tried. `sandspec mutants` runs the whole
//! corpus against every mutant and prints the full table (README.md).
//!
//! Trials run one at a time (a survivor of one run seen in a concurrent
//! run could otherwise fake a catch).
//!
//! (libtest-mimic: one trial per mutant; a mutant that cannot change
//! anything on this host, and every mutant on a kernel without Landlock,
//! is reported as ignored with the reason.)

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};
use sandspec::corpus::{self, LoadedCase};
use sandspec::driver::reference::ReferenceFactory;
use sandspec::harness::mutants::reference_mutants;
use sandspec::harness::{Harness, HarnessConfig, Status};

/// Where to look first for the case that catches each mutant.
const HINTS: &[(&str, &[&str])] = &[
    ("landlock-fs", &["fs.write.outside", "fs.read.", "fs."]),
    ("landlock-net", &["net.ports.only-listed", "net.ports."]),
    (
        "landlock-scope",
        &["net.scope", "escape.kill-outside", "escape.signal"],
    ),
    ("seccomp-sockets", &["net.deny.udp-send", "net.deny."]),
    ("seccomp-io-uring", &["io-uring"]),
    (
        "seccomp-kernel-surface",
        &["bpf", "perf", "userfaultfd", "kernel"],
    ),
    ("seccomp-keyrings", &["key"]),
    ("seccomp-ipc", &["ipc", "mqueue", "shm", "sem"]),
    ("seccomp-namespaces", &["ns.", "unshare", "namespace"]),
    ("seccomp-memfd-exec", &["memfd"]),
    ("seccomp-signals", &["signal", "kill"]),
    ("seccomp-metadata", &["fs.metadata", "metadata"]),
    ("privileges", &["ns.mount", "mount", "cap", "cannot-raise"]),
    (
        "rlimits",
        &["limits.open-files", "limits.memory", "limits.cpu"],
    ),
    ("process-limit", &["limits.processes"]),
    ("tree-kill", &["escape.setsid", "fork-chaser"]),
    ("timeout", &["process.timeout"]),
    ("env-clear", &["process.env"]),
    ("output-cap", &["limits.output.capped", "limits.output"]),
    (
        "new-session",
        &["ctty", "tty", "terminal", "tiocsti", "session"],
    ),
    ("close-fds", &["fd", "inherit"]),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandspec"))
}

struct Setup {
    harness: Harness,
    cases: Vec<LoadedCase>,
    /// Cases that passed against the unmutated reference.
    passed: BTreeSet<String>,
}

/// The harness, the corpus and its unmutated run, once for every trial.
fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let harness = Harness::new(HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe")))
            .expect("failed to start the harness runtime");
        let cases = corpus::load(&root().join("conformance")).expect("the corpus loads");
        let base = harness.run_all(
            &cases,
            &ReferenceFactory::new(Some(exe())),
            2,
            None,
            &mut |_| {},
        );
        let passed = base
            .iter()
            .filter(|r| r.status == Status::Pass)
            .map(|r| r.id.clone())
            .collect();
        Setup {
            harness,
            cases,
            passed,
        }
    })
}

/// The corpus with the cases `hints` name first (in hint order), then the rest.
fn ordered(cases: &[LoadedCase], hints: &[&str]) -> Vec<LoadedCase> {
    let mut out: Vec<LoadedCase> = Vec::new();
    for h in hints {
        for c in cases {
            if c.case.id.contains(h) && !out.iter().any(|o| o.case.id == c.case.id) {
                out.push(c.clone());
            }
        }
    }
    for c in cases {
        if !out.iter().any(|o| o.case.id == c.case.id) {
            out.push(c.clone());
        }
    }
    out
}

fn catch(name: &str) -> Result<(), Failed> {
    let s = setup();
    let abi = sandspec::kernel::landlock().abi().unwrap_or(0);
    let euid = nix::unistd::geteuid().as_raw();
    let spec = reference_mutants(Some(exe()), abi, euid)
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("no mutant {name}"))?;
    let hints = HINTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or(&[]);
    let cases = ordered(&s.cases, hints);
    let baseline = ReferenceFactory::new(Some(exe()));
    match s
        .harness
        .first_catch(&cases, &s.passed, &baseline, spec.factory.as_ref(), 2)
    {
        Some((id, status)) => {
            eprintln!("{name}: caught by {id} ({status})");
            Ok(())
        }
        None => Err(format!(
            "mutant {name} SURVIVED: none of the {} cases that pass against the reference fails \
             with that mechanism switched off, so nothing in the corpus would notice it break \
             (add a case that depends on it)",
            s.passed.len()
        )
        .into()),
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // One mutant at a time: a process one run leaves behind must never be
    // seen in another's, or a mutant could look caught when it is not.
    args.test_threads = Some(1);
    let landlock = sandspec::kernel::landlock();
    let abi = landlock.abi();
    let euid = nix::unistd::geteuid().as_raw();
    let mutants = reference_mutants(Some(exe()), abi.unwrap_or(0), euid);
    let mut trials = Vec::new();
    for m in mutants {
        let why: Option<String> = match abi {
            None => Some(format!(
                "the reference needs Landlock, and this kernel's is {landlock}"
            )),
            Some(_) => m.not_applicable.clone(),
        };
        let name = Arc::new(m.name.clone());
        let ignored = why.is_some();
        if let Some(why) = &why {
            eprintln!("mutant {}: not applicable here: {why}", m.name);
        }
        trials.push(
            Trial::test(format!("mutant::{}", m.name), move || catch(&name))
                .with_ignored_flag(ignored),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
