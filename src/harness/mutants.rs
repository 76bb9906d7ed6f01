//! The corpus's mutation score: the corpus run against the reference
//! sandbox with one enforcement mechanism switched off at a time (a
//! *mutant*, [`crate::sandbox::Mutant`]). A case *catches* a mutant when
//! it passes against the unmutated reference and does not pass against the
//! mutant. A mutant no case catches *survived*: nothing in the corpus
//! depends on that mechanism, so nothing would notice it broke.
//!
//! Which mutants exist and what each switches off is
//! [`crate::sandbox::Mutant`]'s business; [`reference_mutants`] makes a
//! reference driver for each, and [`Harness::mutation_score`] compares runs.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::status::{CaseResult, Status};
use super::Harness;
use crate::corpus::LoadedCase;
use crate::driver::reference::ReferenceFactory;
use crate::driver::DriverFactory;
use crate::sandbox::Mutant;

/// Every mutant of the reference sandbox, each with a reference driver
/// running it (`exe`: the `sandspec` binary, for simulated platforms,
/// which run unmutated), and why it cannot be caught on this host
/// (Landlock `abi`, `euid`) where it cannot.
pub fn reference_mutants(exe: Option<PathBuf>, abi: u32, euid: u32) -> Vec<MutantSpec> {
    Mutant::all()
        .iter()
        .map(|&m| MutantSpec {
            name: m.name().to_string(),
            not_applicable: m.not_applicable(abi, euid),
            factory: Box::new(ReferenceFactory::new(exe.clone()).with_mutant(m)),
        })
        .collect()
}

/// One mutant to run.
pub struct MutantSpec {
    /// The mechanism switched off (`landlock-net`).
    pub name: String,
    /// Why it cannot change anything on this host (a mechanism the
    /// kernel or the user does not use): not run, and never a survivor.
    pub not_applicable: Option<String>,
    /// Drivers running the mutant.
    pub factory: Box<dyn DriverFactory>,
}

/// What became of one mutant.
#[derive(Debug, Clone, PartialEq)]
pub struct MutantOutcome {
    /// The mechanism switched off.
    pub name: String,
    /// Why it was not run, if it was not.
    pub not_applicable: Option<String>,
    /// The cases that caught it, with their status against the mutant.
    pub caught_by: Vec<(String, Status)>,
}

impl MutantOutcome {
    /// Ran, and no case caught it.
    pub fn survived(&self) -> bool {
        self.not_applicable.is_none() && self.caught_by.is_empty()
    }
}

/// The whole score.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationScore {
    /// The cases that passed against the unmutated reference (only these
    /// can catch anything).
    pub baseline_passed: usize,
    /// Cases run.
    pub cases: usize,
    /// The cases that did not pass against the unmutated reference, with
    /// their status: the score is meaningless while there are any.
    pub baseline_not_passed: Vec<(String, Status)>,
    /// One per mutant, in the order given.
    pub mutants: Vec<MutantOutcome>,
}

impl MutationScore {
    /// The mutants no case caught.
    pub fn survivors(&self) -> Vec<&str> {
        self.mutants
            .iter()
            .filter(|m| m.survived())
            .map(|m| m.name.as_str())
            .collect()
    }

    /// A Markdown table: mechanism switched off → the cases that caught it.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| mechanism switched off | caught by |\n|---|---|\n");
        for m in &self.mutants {
            let caught = match &m.not_applicable {
                Some(why) => format!("not applicable here: {why}"),
                None if m.caught_by.is_empty() => "**nothing: survived**".to_string(),
                None => {
                    let ids: Vec<String> = m
                        .caught_by
                        .iter()
                        .map(|(id, _)| format!("`{id}`"))
                        .collect();
                    format!("{} ({})", ids.len(), ids.join(", "))
                }
            };
            let _ = writeln!(s, "| `{}` | {} |", m.name, caught.replace('|', "\\|"));
        }
        s
    }

    /// One line per mutant, then the totals.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for m in &self.mutants {
            let _ = match &m.not_applicable {
                Some(why) => writeln!(s, "n/a       {}: {why}", m.name),
                None if m.caught_by.is_empty() => writeln!(s, "SURVIVED  {}", m.name),
                None => writeln!(
                    s,
                    "caught    {} by {}: {}",
                    m.name,
                    m.caught_by.len(),
                    m.caught_by
                        .iter()
                        .map(|(id, st)| format!("{id} ({st})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        let ran = self
            .mutants
            .iter()
            .filter(|m| m.not_applicable.is_none())
            .count();
        let _ = writeln!(
            s,
            "\n{} mutants run ({} not applicable here), {} caught, {} survived; {} of {} cases \
             passed unmutated",
            ran,
            self.mutants.len() - ran,
            ran - self.survivors().len(),
            self.survivors().len(),
            self.baseline_passed,
            self.cases
        );
        for (id, st) in &self.baseline_not_passed {
            let _ = writeln!(s, "  unmutated: {st} {id}");
        }
        s
    }
}

/// The cases that caught a mutant: passed in `baseline`, not in `mutated`
/// (both in the same case order).
pub fn caught(baseline: &[CaseResult], mutated: &[CaseResult]) -> Vec<(String, Status)> {
    baseline
        .iter()
        .zip(mutated)
        .filter(|(b, m)| b.status == Status::Pass && m.status != Status::Pass)
        .map(|(_, m)| (m.id.clone(), m.status))
        .collect()
}

impl Harness {
    /// Runs `cases` against `baseline`, then against every applicable
    /// mutant (`jobs` cases at a time), and says which cases caught which:
    /// a catch counts when the case, run again alone, still does not pass.
    /// `progress` hears of each mutant as it is done.
    pub fn mutation_score(
        &self,
        cases: &[LoadedCase],
        baseline: &dyn DriverFactory,
        mutants: &[MutantSpec],
        jobs: usize,
        progress: &mut dyn FnMut(&MutantOutcome),
    ) -> MutationScore {
        let base = self.run_all(cases, baseline, jobs, None, &mut |_| {});
        let mut out = MutationScore {
            baseline_passed: base.iter().filter(|r| r.status == Status::Pass).count(),
            cases: base.len(),
            baseline_not_passed: base
                .iter()
                .filter(|r| !matches!(r.status, Status::Pass | Status::Skip))
                .map(|r| (r.id.clone(), r.status))
                .collect(),
            mutants: Vec::new(),
        };
        for m in mutants {
            let caught_by = match &m.not_applicable {
                Some(_) => Vec::new(),
                None => {
                    let mutated = self.run_all(cases, m.factory.as_ref(), jobs, None, &mut |_| {});
                    // A catch must hold with the case run alone: cases run
                    // side by side can see each other's leftovers.
                    caught(&base, &mutated)
                        .into_iter()
                        .filter(|(id, _)| {
                            let Some(lc) = cases.iter().find(|c| &c.case.id == id) else {
                                return false;
                            };
                            let alone = self.run_all(
                                std::slice::from_ref(lc),
                                m.factory.as_ref(),
                                1,
                                None,
                                &mut |_| {},
                            );
                            alone[0].status != Status::Pass
                        })
                        .collect()
                }
            };
            let o = MutantOutcome {
                name: m.name.clone(),
                not_applicable: m.not_applicable.clone(),
                caught_by,
            };
            progress(&o);
            out.mutants.push(o);
        }
        out
    }
}

impl Harness {
    /// The first case, in the order given, that catches `mutant`, trying
    /// `jobs` cases at a time (only cases in `passed`, those that passed
    /// unmutated, can). A catch counts only when it reproduces: the case
    /// fails the mutant again and passes the unmutated reference again, so
    /// a case that fails now and then cannot hide a survivor. `None`: no
    /// case caught it.
    pub fn first_catch(
        &self,
        cases: &[LoadedCase],
        passed: &std::collections::BTreeSet<String>,
        baseline: &dyn DriverFactory,
        mutant: &dyn DriverFactory,
        jobs: usize,
    ) -> Option<(String, Status)> {
        let candidates: Vec<LoadedCase> = cases
            .iter()
            .filter(|c| passed.contains(&c.case.id))
            .cloned()
            .collect();
        for chunk in candidates.chunks(jobs.max(1)) {
            let results = self.run_all(chunk, mutant, jobs, None, &mut |_| {});
            for (lc, r) in chunk.iter().zip(&results) {
                if r.status == Status::Pass {
                    continue;
                }
                let one = std::slice::from_ref(lc);
                let again = self.run_all(one, mutant, 1, None, &mut |_| {});
                let base = self.run_all(one, baseline, 1, None, &mut |_| {});
                if again[0].status != Status::Pass && base[0].status == Status::Pass {
                    return Some((r.id.clone(), r.status));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn r(id: &str, status: Status) -> CaseResult {
        let lc = LoadedCase {
            case: serde_saphyr::from_str(&format!(
                "id: {id}\nsummary: s\nrun: {{argv: [x]}}\nexpect: {{}}"
            ))
            .unwrap(),
            path: PathBuf::new(),
        };
        let mut c = CaseResult::new(&lc);
        c.status = status;
        c
    }

    #[test]
    fn a_case_catches_a_mutant_when_it_passed_unmutated_and_not_against_it() {
        let base = [
            r("a", Status::Pass),
            r("b", Status::Pass),
            r("c", Status::Fail),
            r("d", Status::Skip),
        ];
        let mutated = [
            r("a", Status::Pass),
            r("b", Status::Fail),
            r("c", Status::Fail),
            r("d", Status::Error),
        ];
        assert_eq!(caught(&base, &mutated), [("b".to_string(), Status::Fail)]);
    }

    #[test]
    fn survivors_and_not_applicable_mutants_are_told_apart() {
        let score = MutationScore {
            baseline_passed: 2,
            cases: 2,
            baseline_not_passed: vec![],
            mutants: vec![
                MutantOutcome {
                    name: "landlock-net".into(),
                    not_applicable: None,
                    caught_by: vec![("net.deny.tcp-connect".into(), Status::Fail)],
                },
                MutantOutcome {
                    name: "tree-kill".into(),
                    not_applicable: None,
                    caught_by: vec![],
                },
                MutantOutcome {
                    name: "seccomp-signals".into(),
                    not_applicable: Some("Landlock scopes signals | here".into()),
                    caught_by: vec![],
                },
            ],
        };
        assert_eq!(score.survivors(), ["tree-kill"]);
        let md = score.markdown();
        assert!(
            md.contains("| `landlock-net` | 1 (`net.deny.tcp-connect`) |"),
            "{md}"
        );
        assert!(
            md.contains("| `tree-kill` | **nothing: survived** |"),
            "{md}"
        );
        assert!(md.contains("signals \\| here"), "{md}");
        assert!(score
            .text()
            .contains("2 mutants run (1 not applicable here), 1 caught, 1 survived"));
    }
}
