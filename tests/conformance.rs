//! The conformance corpus as `cargo test` tests (libtest-mimic, no libtest
//! harness):
//!
//! - `case::<id>`: every case against the reference sandbox; it must PASS.
//!   An unmet requirement (kernel ABI, program, root) makes the test
//!   ignored, with the reason; a failure or error fails it with the reason.
//! - `isolation_fails_under_none::<id>`: every case tagged `isolation` run
//!   under the `none` driver (no sandbox) must FAIL: a case that passes
//!   without a sandbox cannot detect a broken one. Together with `case::` this
//!   checks each isolation case fails under `none` and passes under
//!   `reference`.
//! - `control_under_none::<id>`: a case whose control runs unsandboxed
//!   (`control: {driver: none}`) has that control run alone under `none`,
//!   where it must pass: under `none` the case itself fails before its
//!   control is reached, and a backend that skips the case (say, one
//!   without a terminal to give) never runs it either.
//! - `kernel_limit::<id>`: on a kernel where the reference has a written
//!   kernel limit for the case (`KERNEL_LIMITS`), the reference must fail
//!   it with exactly that leak instead (never counted as a pass).
//! - `landlock_abi_matches_expectation`: with SANDSPEC_EXPECT_LANDLOCK_ABI=N
//!   (or `none`), the probed ABI must be that, so a CI row cannot quietly
//!   turn into skips on the wrong kernel. Ignored when the variable is unset.
//!
//! SANDSPEC_CASES=PATH runs another corpus (e.g. tests/fixtures/cases/basic).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sandspec::corpus::case::{ControlDriver, Tag};
use sandspec::corpus::{self, LoadedCase};
use sandspec::driver::none::NoneFactory;
use sandspec::driver::reference::ReferenceFactory;
use sandspec::driver::DriverFactory;
use sandspec::harness::{DriverSlot, Harness, HarnessConfig, Status};
use sandspec::kernel::{self, LandlockSupport};

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        Harness::new(HarnessConfig::new(env!("CARGO_BIN_EXE_sandspec-probe")))
            .expect("failed to start the harness runtime")
    })
}

fn reference() -> ReferenceFactory {
    ReferenceFactory::new(Some(PathBuf::from(env!("CARGO_BIN_EXE_sandspec"))))
}

/// Runs `case` through a fresh instance of `factory`.
fn run(case: &LoadedCase, factory: &dyn DriverFactory) -> sandspec::harness::CaseResult {
    let mut slot = DriverSlot::new(factory);
    harness().run_case(case, &mut slot)
}

fn reason(r: &sandspec::harness::CaseResult) -> String {
    r.reason.clone().unwrap_or_default()
}

/// Promises the reference cannot keep on some kernels, each written down
/// in docs/threat-model.md with its kernel reason: (case id, the highest
/// Landlock ABI the limit holds on, the reason). On such a kernel the case
/// is not a `case::` trial (it would have to pass) but a `kernel_limit::`
/// one, which checks that the reference fails it *with the leak* the
/// document describes: a limit that no longer holds (fixed in the
/// reference, or a different failure) fails the test, so the table cannot
/// go stale quietly. Anywhere else the case must pass as usual.
const KERNEL_LIMITS: &[(&str, u32, &str)] = &[(
    "escape.signal.victim-unscoped",
    5,
    "no signal scoping before Landlock ABI 6: the seccomp fallback guards the \
     supervisor and the caller, not every process of the uid \
     (docs/threat-model.md, \"The process tree\")",
)];

/// The kernel limit of `id` on this kernel, if one holds here.
fn kernel_limit(id: &str) -> Option<&'static str> {
    let LandlockSupport::Abi(abi) = kernel::landlock() else {
        return None;
    };
    KERNEL_LIMITS
        .iter()
        .find(|(case, up_to, _)| *case == id && abi <= *up_to)
        .map(|(_, _, why)| *why)
}

fn kernel_limit_trial(case: Arc<LoadedCase>, why: &'static str) -> Trial {
    Trial::test(format!("kernel_limit::{}", case.case.id), move || {
        let r = run(&case, &reference());
        let leaked = r.status == Status::Fail && r.failures.iter().any(|f| f.leak);
        if leaked {
            eprintln!("{}: fails with a leak, as documented: {why}", case.case.id);
            Ok(())
        } else {
            Err(Failed::from(format!(
                "{} is listed as a kernel limit on this kernel ({why}), so the reference \
                 must fail it with a leak; it ended {}: {} (update KERNEL_LIMITS in \
                 tests/conformance.rs and docs/threat-model.md)",
                case.case.id,
                r.status.label(),
                reason(&r)
            )))
        }
    })
}

fn case_trial(case: Arc<LoadedCase>) -> Trial {
    if let Some(why) = kernel_limit(&case.case.id) {
        return kernel_limit_trial(case, why);
    }
    Trial::ignorable_test(format!("case::{}", case.case.id), move || {
        let r = run(&case, &reference());
        match r.status {
            Status::Pass => Ok(Completion::Completed),
            Status::Skip => Ok(Completion::ignored_with(reason(&r))),
            other => Err(Failed::from(format!(
                "{} under reference ({}): {}",
                other.label(),
                case.path.display(),
                reason(&r)
            ))),
        }
    })
}

fn control_trial(case: Arc<LoadedCase>) -> Trial {
    Trial::ignorable_test(format!("control_under_none::{}", case.case.id), move || {
        let mut slot = DriverSlot::new(&NoneFactory);
        let r = harness().run_control(&case, &mut slot);
        match r.status {
            Status::Pass => Ok(Completion::Completed),
            Status::Skip => Ok(Completion::ignored_with(reason(&r))),
            other => Err(Failed::from(format!(
                "the control of {} {} under none ({}): {}",
                case.case.id,
                other.label(),
                case.path.display(),
                reason(&r)
            ))),
        }
    })
}

fn isolation_trial(case: Arc<LoadedCase>) -> Trial {
    Trial::ignorable_test(
        format!("isolation_fails_under_none::{}", case.case.id),
        move || {
            let r = run(&case, &NoneFactory);
            match r.status {
                Status::Fail => Ok(Completion::Completed),
                Status::Skip => Ok(Completion::ignored_with(reason(&r))),
                Status::Pass => Err(Failed::from(format!(
                    "{} passed without any sandbox: this isolation case cannot fail ({})",
                    case.case.id,
                    case.path.display()
                ))),
                other => Err(Failed::from(format!(
                    "{} under none: {} (an isolation case must FAIL under none)",
                    other.label(),
                    reason(&r)
                ))),
            }
        },
    )
}

fn abi_trial() -> Trial {
    Trial::ignorable_test("landlock_abi_matches_expectation", || {
        let Ok(want) = std::env::var("SANDSPEC_EXPECT_LANDLOCK_ABI") else {
            return Ok(Completion::ignored_with(
                "SANDSPEC_EXPECT_LANDLOCK_ABI is not set",
            ));
        };
        let got = kernel::landlock();
        let ok = match want.trim() {
            "none" => got.abi().is_none(),
            n => match n.parse::<u32>() {
                Ok(n) => got == LandlockSupport::Abi(n),
                Err(_) => {
                    return Err(Failed::from(format!(
                        "SANDSPEC_EXPECT_LANDLOCK_ABI={want:?}: expected a number or \"none\""
                    )))
                }
            },
        };
        if ok {
            Ok(Completion::Completed)
        } else {
            Err(Failed::from(format!(
                "SANDSPEC_EXPECT_LANDLOCK_ABI={want} but this kernel's Landlock is {got}"
            )))
        }
    })
}

/// True when `dir` holds a `*.yaml`/`*.yml` file somewhere below it.
fn has_case_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_case_files(&p)
        } else {
            matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
        }
    })
}

fn main() {
    let args = Arguments::from_args();
    let dir = match std::env::var_os("SANDSPEC_CASES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance"),
    };
    let mut trials = vec![abi_trial()];
    if !has_case_files(&dir) {
        let why = format!("no case files under {}", dir.display());
        trials.push(Trial::ignorable_test("corpus_loads", move || {
            Ok(Completion::ignored_with(why))
        }));
    } else {
        match corpus::load(&dir) {
            Err(e) => {
                let msg = e.to_string();
                trials.push(Trial::test("corpus_loads", move || Err(Failed::from(msg))));
            }
            Ok(cases) => {
                trials.push(Trial::test("corpus_loads", || Ok(())));
                for c in cases {
                    let c = Arc::new(c);
                    if c.case.tags.contains(&Tag::Isolation) {
                        trials.push(isolation_trial(Arc::clone(&c)));
                    }
                    let unsandboxed =
                        c.case.control.as_ref().and_then(|c| c.driver) == Some(ControlDriver::None);
                    if unsandboxed {
                        trials.push(control_trial(Arc::clone(&c)));
                    }
                    trials.push(case_trial(c));
                }
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
