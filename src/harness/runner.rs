//! Running one case: scratch directory, oracles, templating, setup, the run
//! through the driver under a watchdog, survivors, host checks, the
//! expectations; then the control run, which must succeed too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::check::{CheckFailure, Evaluation};
use super::evaluate::{evaluate, Observation, ProbeReport};
use super::observe::{InheritedFds, Observers};
use super::observed::list_survivors;
use super::requirements::{self, HostFacts};
use super::slot::DriverSlot;
use super::status::{CaseResult, Status};
use crate::corpus::case::{Case, ControlDriver, Expect, Tag};
use crate::corpus::setup::{command, materialize};
use crate::corpus::template::{expand, fd_variable};
use crate::corpus::LoadedCase;
use crate::driver::none::NoneFactory;
use crate::driver::{Driver, DriverError, DriverFactory, RunRequest};
use crate::oracle::tracker::{own_child, Survivor, Tracking};
use crate::oracle::{Oracles, DYING_GRACE};
use crate::policy::{Outcome, Policy, RunOutput};

/// How the harness runs cases.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The `sandspec-probe` binary (`${PROBE}`); added to every policy's
    /// `exec` list (with its ELF interpreter, which the kernel also opens
    /// for execution), since cases do not list it.
    pub probe: PathBuf,
    /// Keep scratch directories (their paths are in the results).
    pub keep: bool,
    /// The watchdog is the policy's timeout plus this.
    pub watchdog_margin: Duration,
    /// The watchdog for a policy without a timeout.
    pub default_watchdog: Duration,
    /// Hold the backend to the case's mechanisms too (errno, exit code,
    /// the probe's word), as the reference is. Off: a case whose
    /// properties all held while only mechanisms differed passes, with
    /// [`CaseResult::mechanism_differs`] saying how.
    pub hold_mechanism: bool,
}

impl HarnessConfig {
    /// Defaults: scratch removed, watchdog = timeout + 10 s, or 30 s.
    pub fn new(probe: impl Into<PathBuf>) -> Self {
        HarnessConfig {
            probe: probe.into(),
            keep: false,
            watchdog_margin: Duration::from_secs(10),
            default_watchdog: Duration::from_secs(30),
            hold_mechanism: true,
        }
    }

    /// The watchdog for `policy`: its timeout plus the margin; without a
    /// timeout the default, plus, when the policy bounds CPU time, that
    /// CPU time stretched by the CPU contention now (see
    /// [`super::watchdog`]).
    pub fn watchdog(&self, policy: &Policy) -> Duration {
        match (policy.timeout, policy.limits.cpu_seconds) {
            (Some(t), _) => t.0 + self.watchdog_margin,
            (None, Some(cpu)) => super::watchdog::for_cpu_limit(
                self.default_watchdog,
                cpu,
                super::watchdog::contention(),
            ),
            (None, None) => self.default_watchdog,
        }
    }

    /// In the CLI: `sandspec-probe` next to the running executable.
    pub fn probe_beside_current_exe() -> std::io::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .ok_or_else(|| std::io::Error::other("the executable has no directory"))?;
        Ok(dir.join("sandspec-probe"))
    }

    /// Builds the probe when it is missing beside a sandspec that cargo
    /// built from this source tree: `cargo run -- run` builds only the
    /// `sandspec` binary, and a fresh clone has no probe yet. Says what it
    /// does on stderr. Anything else missing is an error naming the path.
    pub fn build_missing_probe(probe: &std::path::Path) -> Result<(), String> {
        if probe.is_file() {
            return Ok(());
        }
        let missing = || {
            format!(
                "failed to find the probe binary at {}: it is built with sandspec \
                 (cargo build --bins)",
                probe.display()
            )
        };
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        // <target>/<profile>/sandspec-probe, built from this manifest.
        let (Some(profile_dir), true) = (probe.parent(), manifest.is_file()) else {
            return Err(missing());
        };
        let Some(target_dir) = profile_dir.parent() else {
            return Err(missing());
        };
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .unwrap_or_default();
        let mut cmd =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        cmd.args(["build", "--bin", "sandspec-probe", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            _ => return Err(missing()),
        }
        eprintln!(
            "sandspec: the probe binary is missing; building it: cargo build --bin sandspec-probe{}",
            if profile == "release" { " --release" } else { "" }
        );
        let status = cmd
            .status()
            .map_err(|e| format!("{}; running cargo failed: {e}", missing()))?;
        if !status.success() || !probe.is_file() {
            return Err(format!("{}; cargo build failed ({status})", missing()));
        }
        Ok(())
    }
}

/// Runs cases; shared by every worker.
pub struct Harness {
    config: HarnessConfig,
    host: HostFacts,
    rt: tokio::runtime::Runtime,
    /// The probe and its dynamic loader: added to every policy's `exec`.
    probe_exec: Vec<PathBuf>,
    /// Where every scratch directory of this harness goes.
    run_dir: super::scratch::RunDir,
}

/// Which run of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Main,
    Control,
}

/// What one run produced.
struct PhaseRun {
    outcome: Outcome,
    evaluation: Evaluation,
    kept: Option<PathBuf>,
    survivors: Vec<Survivor>,
}

enum PhaseError {
    /// The driver broke: ERROR, and the instance is restarted. What the
    /// run left alive was still found and killed.
    Driver(DriverError, Vec<Survivor>),
    /// The run was interrupted (by this signal) before the phase started.
    Interrupted(i32),
    /// The harness could not prepare or check the run: ERROR.
    Harness(String),
}

impl Harness {
    /// Probes the host and starts the runtime the oracles live on.
    pub fn new(config: HarnessConfig) -> std::io::Result<Harness> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandspec-oracle")
            .enable_all()
            .build()?;
        let mut probe_exec = vec![config.probe.clone()];
        probe_exec.extend(crate::sandbox::elf_interpreter(&config.probe));
        // A child subreaper from here on, with a cgroup per run where one
        // can be made (see `crate::oracle::tracker`).
        Tracking::get();
        let run_dir = super::scratch::RunDir::create(config.keep)?;
        Ok(Harness {
            config,
            host: HostFacts::probe(),
            rt,
            probe_exec,
            run_dir,
        })
    }

    /// The host facts requirements are checked against.
    pub fn host(&self) -> &HostFacts {
        &self.host
    }

    /// The configuration.
    pub fn config(&self) -> &HarnessConfig {
        &self.config
    }

    /// Runs one case (and its control) through `slot`.
    pub fn run_case(&self, lc: &LoadedCase, slot: &mut DriverSlot<'_>) -> CaseResult {
        self.run_phases(lc, slot, false)
    }

    /// Runs only the case's control (a case without one is an error): a
    /// control must pass wherever it runs, and under the `none` driver the
    /// case itself fails before its control is reached.
    pub fn run_control(&self, lc: &LoadedCase, slot: &mut DriverSlot<'_>) -> CaseResult {
        self.run_phases(lc, slot, true)
    }

    fn run_phases(
        &self,
        lc: &LoadedCase,
        slot: &mut DriverSlot<'_>,
        control_only: bool,
    ) -> CaseResult {
        let case = &lc.case;
        let t0 = Instant::now();
        let mut r = CaseResult::new(lc);
        let done = |mut r: CaseResult, status: Status, reason: Option<String>| {
            r.status = status;
            r.reason = reason;
            r.duration = t0.elapsed();
            r
        };
        if let Some(sig) = super::interrupt::requested() {
            return done(r, Status::Error, Some(super::interrupt::not_run(sig)));
        }
        let hello = match slot.hello() {
            Ok(h) => h.clone(),
            Err(e) => {
                slot.discard();
                return done(r, Status::Error, Some(format!("{e} (case {})", case.id)));
            }
        };
        if let Err(why) = requirements::check(&case.requires, &hello, &self.host) {
            return done(r, Status::Skip, Some(why));
        }
        let mut phases = vec![Phase::Main];
        if case.control.is_some() || control_only {
            phases.push(Phase::Control);
        }
        if control_only {
            phases.remove(0);
        }
        for phase in phases {
            let label = match phase {
                Phase::Main => "",
                Phase::Control => "control run: ",
            };
            match self.run_phase(case, phase, slot) {
                Err(PhaseError::Driver(e, survivors)) => {
                    let left = if survivors.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; the run left {} process(es) alive (killed now): {}",
                            survivors.len(),
                            list_survivors(&survivors)
                        )
                    };
                    match phase {
                        Phase::Main => r.survivors = survivors,
                        Phase::Control => r.control_survivors = survivors,
                    }
                    return done(
                        r,
                        Status::Error,
                        Some(format!("{label}{e} (case {}){left}", case.id)),
                    );
                }
                Err(PhaseError::Interrupted(sig)) => {
                    return done(
                        r,
                        Status::Error,
                        Some(format!(
                            "{label}not run: the run was interrupted by {} (case {})",
                            super::interrupt::name(sig),
                            case.id
                        )),
                    )
                }
                Err(PhaseError::Harness(why)) => {
                    return done(
                        r,
                        Status::Error,
                        Some(format!("{label}failed to run case {}: {why}", case.id)),
                    )
                }
                Ok(run) => {
                    match phase {
                        Phase::Main => {
                            r.outcome = Some(run.outcome);
                            r.survivors = run.survivors;
                        }
                        Phase::Control => {
                            r.control_outcome = Some(run.outcome);
                            r.control_survivors = run.survivors;
                        }
                    }
                    r.kept.extend(run.kept);
                    match phase {
                        Phase::Main => {
                            match judge_main(run.evaluation, &r, self.config.hold_mechanism) {
                                Ok(differs) => r.mechanism_differs = differs,
                                Err(failures) => {
                                    let why = super::check::describe(&failures);
                                    r.failures = failures;
                                    return done(r, Status::Fail, why);
                                }
                            }
                        }
                        Phase::Control if canary_blind(&run.evaluation, case) => {
                            // The control shows reads leave no trace here
                            // (a read-only or noatime mount): the case's
                            // read canaries observed nothing, so the verdict
                            // falls back to the driver's word, and says so.
                            r.unobserved = vec!["host.unread".into()];
                            if !r.mechanism_differs.is_empty() {
                                let mut failures = std::mem::take(&mut r.mechanism_differs);
                                let why = super::check::describe(&failures).unwrap_or_default();
                                failures.extend(
                                    run.evaluation
                                        .failures
                                        .into_iter()
                                        .map(CheckFailure::in_control),
                                );
                                r.failures = failures;
                                return done(
                                    r,
                                    Status::Fail,
                                    Some(format!(
                                        "the control shows this host cannot see the command's \
                                         reads (its read canary did not move), so the case rests \
                                         on the driver's word, which differs: {why}"
                                    )),
                                );
                            }
                        }
                        Phase::Control if !run.evaluation.passed() => {
                            let why = run.evaluation.reason().unwrap_or_default();
                            // How the run under test differed belongs to
                            // how the case failed, too.
                            r.failures = std::mem::take(&mut r.mechanism_differs);
                            r.failures.extend(
                                run.evaluation
                                    .failures
                                    .into_iter()
                                    .map(CheckFailure::in_control),
                            );
                            return done(
                                r,
                                Status::Fail,
                                Some(format!(
                                    "control run (restriction lifted) did not succeed, so the \
                                     case proves nothing here: {why}"
                                )),
                            );
                        }
                        Phase::Control => {}
                    }
                }
            }
        }
        if !r.unobserved.is_empty() {
            return done(
                r,
                Status::Pass,
                Some(
                    "passed on the driver's word: the control shows this host cannot see the \
                     command's reads (its read canary did not move: a read-only or noatime \
                     mount)"
                        .into(),
                ),
            );
        }
        let note = (!r.mechanism_differs.is_empty()).then(|| {
            let how: Vec<String> = r
                .mechanism_differs
                .iter()
                .map(|f| f.fingerprint())
                .collect();
            format!(
                "mechanism differs ({}); every property held ({})",
                how.join("; "),
                r.evidence.property.join(", ")
            )
        });
        done(r, Status::Pass, note)
    }

    fn run_phase(
        &self,
        case: &Case,
        phase: Phase,
        slot: &mut DriverSlot<'_>,
    ) -> Result<PhaseRun, PhaseError> {
        if let Some(sig) = super::interrupt::requested() {
            return Err(PhaseError::Interrupted(sig));
        }
        let h = |what: &str| {
            let what = what.to_string();
            move |e: String| PhaseError::Harness(format!("failed to {what}: {e}"))
        };
        let scratch = self
            .run_dir
            .make(&case.id)
            .map_err(|e| h("create the scratch directory")(e.to_string()))?;
        let oracles = Oracles::start(&case.oracles, self.rt.handle())
            .map_err(|e| h("start the oracles")(e.to_string()))?;
        // `${PROBE}` is a link to the probe in a directory of this run's
        // own: everything the command starts from it carries that path in
        // its argv, which is how survivors are found by the host's pids
        // (see `processes_naming`), pid namespaces or not.
        let probe_dir = self
            .run_dir
            .make("probe")
            .map_err(|e| h("create the probe's directory")(e.to_string()))?;
        let probe_link = probe_dir.path().join("sandspec-probe");
        std::os::unix::fs::symlink(&self.config.probe, &probe_link)
            .map_err(|e| h("link the probe into its directory")(e.to_string()))?;
        let mut vars: BTreeMap<String, String> = oracles.vars();
        vars.insert(
            "SCRATCH".into(),
            scratch.path().to_string_lossy().into_owned(),
        );
        vars.insert("PROBE".into(), probe_link.to_string_lossy().into_owned());
        let control = match (phase, &case.control) {
            (Phase::Main, _) => None,
            (Phase::Control, Some(c)) => Some(c),
            (Phase::Control, None) => {
                oracles.finish();
                return Err(PhaseError::Harness("the case has no control".into()));
            }
        };
        // The run of this phase: the control's own, or the case's.
        let run_spec = control.and_then(|c| c.run.as_ref()).unwrap_or(&case.run);
        let prepared = (|| {
            let mut fds = InheritedFds::reserve(run_spec.fds.len())
                .map_err(h("reserve the inherited fds"))?;
            for (i, n) in fds.numbers().into_iter().enumerate() {
                vars.insert(fd_variable(i), n.to_string());
            }
            let x = expand(case, &vars).map_err(h("expand the case's templates"))?;
            materialize(&x.setup, scratch.path())
                .map_err(|e| h("create the case's files")(e.to_string()))?;
            let run = match &x.control {
                Some(c) if phase == Phase::Control => c.run.as_ref().unwrap_or(&x.run),
                _ => &x.run,
            };
            let cmd = command(run).map_err(h("build the command"))?;
            fds.open(&run.fds).map_err(h("open the inherited fds"))?;
            Ok::<_, PhaseError>((x, cmd, fds))
        })();
        let (x, cmd, fds) = match prepared {
            Ok(p) => p,
            Err(e) => {
                oracles.finish();
                return Err(e);
            }
        };
        let (mut policy, expect, simulate): (Policy, &Expect, _) = match (phase, &x.control) {
            (Phase::Control, Some(c)) => (
                c.policy.apply(&x.policy),
                &c.expect,
                if c.unsimulated.unwrap_or(true) {
                    None
                } else {
                    case.simulate.clone()
                },
            ),
            _ => (x.policy.clone(), &x.expect, case.simulate.clone()),
        };
        // Read canaries, armed just before the run they judge.
        if let Some(hm) = &expect.host {
            for p in hm.unread.iter().chain(&hm.read) {
                if let Err(e) = super::canary::arm(p, scratch.path()) {
                    oracles.finish();
                    return Err(PhaseError::Harness(e));
                }
            }
        }
        // The link's directory too, for backends that build a filesystem
        // view from the policy's paths (Landlock checks the probe itself).
        for p in self
            .probe_exec
            .iter()
            .chain([&probe_dir.path().to_path_buf()])
        {
            if !policy.exec.contains(p) {
                policy.exec.push(p.clone());
            }
        }
        let watchdog = self.config.watchdog(&policy);
        let req = RunRequest {
            seq: slot.next_seq(),
            case: case.id.clone(),
            policy,
            command: cmd,
        };
        let mut observers = Observers::start(probe_dir.path(), expect);
        let fd_numbers = fds.numbers();
        let unsandboxed = control.and_then(|c| c.driver) == Some(ControlDriver::None);
        // A driver of its own for this run: `none` for an unsandboxed
        // control, a fresh backend on a simulated kernel; else the slot's.
        let own_driver: Option<Result<Box<dyn Driver>, DriverError>> = if unsandboxed {
            Some(NoneFactory.spawn(simulate.as_ref().map(|s| s.landlock)))
        } else {
            simulate
                .as_ref()
                .map(|sim| slot.factory().spawn(Some(sim.landlock)))
        };
        // Kept until the sweep is done: a `none` driver's keeper holds what
        // the run orphaned until it is let go.
        let mut kept_driver: Option<(Box<dyn Driver>, _)> = None;
        let result: Result<RunOutput, DriverError> = match own_driver {
            None => match slot.pid() {
                Err(e) => Err(e),
                Ok(pid) => {
                    observers.attach_driver(pid);
                    match observers.start_inbound(&case.oracles) {
                        Err(e) => Err(DriverError::Reported {
                            driver: "harness".into(),
                            message: e,
                        }),
                        Ok(()) => {
                            let attach = observers.attach(&oracles, &fd_numbers);
                            slot.run_attached(&req, &attach, watchdog)
                        }
                    }
                }
            },
            Some(Err(e)) => Err(e),
            Some(Ok(d)) => {
                let own = d.pid().map(own_child);
                let d = &mut kept_driver.insert((d, own)).0;
                (|| {
                    d.hello()?;
                    observers.attach_driver(d.pid());
                    observers
                        .start_inbound(&case.oracles)
                        .map_err(|e| DriverError::Reported {
                            driver: "harness".into(),
                            message: e,
                        })?;
                    let attach = observers.attach(&oracles, &fd_numbers);
                    d.run_attached(&req, &attach, watchdog)
                })()
            }
        };
        drop(fds);
        let mut seen = oracles.finish();
        // A process the backend is still killing is given a moment to go;
        // every other survivor is listed, killed and reaped.
        let observed = observers.finish(&mut seen, DYING_GRACE);
        drop(kept_driver);
        let output = match result {
            Ok(o) => o,
            Err(e) => return Err(PhaseError::Driver(e, observed.survivors)),
        };
        let probe = ProbeReport::find(&output);
        let evaluation = evaluate(
            expect,
            &Observation {
                output: &output,
                oracles: &seen,
                probe: probe.as_ref(),
                survivors: &observed.survivors,
                objects_left: observed.objects_left.as_ref(),
                isolation: phase == Phase::Main && case.tags.contains(&Tag::Isolation),
            },
        );
        let kept = if self.config.keep {
            Some(scratch.keep())
        } else {
            None
        };
        Ok(PhaseRun {
            outcome: output.outcome,
            evaluation,
            kept,
            survivors: observed.survivors,
        })
    }
}

/// The run under test's verdict: `Ok` to go on to the control, with the
/// mechanism checks that failed while every property held (empty when
/// everything held); `Err` with the failures that decide a `fail`. A
/// backend held to the mechanisms (the reference), or a case with no
/// property to keep, fails on any mismatch.
fn judge_main(
    ev: Evaluation,
    r: &CaseResult,
    hold_mechanism: bool,
) -> Result<Vec<CheckFailure>, Vec<CheckFailure>> {
    if ev.passed() {
        Ok(Vec::new())
    } else if !hold_mechanism && ev.mechanism_only() && !r.evidence.property.is_empty() {
        Ok(ev.failures)
    } else {
        Err(ev.failures)
    }
}

/// The control failed only because its read canaries did not move, while
/// the run under test relied on canaries staying unmoved: on this backend
/// or host, reads leave no trace.
fn canary_blind(control: &Evaluation, case: &Case) -> bool {
    let main_uses_canaries = case
        .expect
        .host
        .as_ref()
        .is_some_and(|h| !h.unread.is_empty());
    main_uses_canaries
        && !control.passed()
        && control
            .failures
            .iter()
            .all(|f| f.check == "host.read" && f.observed == "unread")
}
