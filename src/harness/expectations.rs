//! Expectation files (`--expect FILE`): how a backend is known to fail,
//! case by case, typed so that a regression cannot hide behind an old
//! failure.
//!
//! ```yaml
//! driver: bwrap
//! cases:
//!   process.signal.kill:
//!     reason: "bwrap reports a command killed by SIGKILL as exit code 137"
//!     bug: https://github.com/containers/bubblewrap/issues/0000
//!     check: outcome
//!     observed: exited 137
//!   fs.filter.missing-allowlisted-paths:
//!     reason: "a missing bind source is an error"
//!     fails:
//!       - {check: outcome, observed: exited 1}
//!       - {check: filtered_paths, observed: none}
//!   limits.processes.fork-bomb:            # first entry whose `if` holds
//!     - if: {root: false}
//!       reason: "RLIMIT_NPROC counts every process of the uid"
//!       check: probe.errno
//!       observed: none
//! ```
//!
//! A listed case is `xfail` only when it fails in exactly the listed way:
//! the same checks, with the same observed fingerprints. Any other failure
//! is `fail` ("failed differently than expected"); a failure that shows a
//! leak (an oracle received traffic, a host file changed, the victim died,
//! survivors) is `fail` whatever the file says; a pass is `xpass` (the
//! entry is stale). Strict: unknown fields, ids not in the corpus, another
//! driver's file, an empty reason or an entry that does not say how the
//! case fails are errors; so is the untyped form of earlier versions
//! (`ID: "reason"`), with a message saying how to migrate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::CheckFailure;
use super::requirements::abi_matches;
use super::status::{CaseResult, Status};
use crate::kernel::{KernelFacts, LandlockSupport};

/// One failing check, as listed: which check and what was observed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// The check, e.g. `probe.errno`, `outcome`, `control.probe.errno`.
    pub check: String,
    /// The observed fingerprint, e.g. `ECONNREFUSED`, `exited 137`.
    pub observed: String,
}

impl Fingerprint {
    /// The fingerprint of a failure.
    pub fn of(f: &CheckFailure) -> Fingerprint {
        Fingerprint {
            check: f.check.clone(),
            observed: f.observed.clone(),
        }
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.observed)
    }
}

/// `check: observed` of each, joined with `; `.
pub fn describe_fingerprints(v: &[Fingerprint]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Host facts an entry may depend on, as in web-platform-tests' `if`
/// conditions. Every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The host's Landlock ABI, as in a case's `requires.landlock_abi`
    /// (`">=6"`, `"<4"`, `"none"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_abi: Option<String>,
    /// `true`: only when run as root; `false`: only as another user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<bool>,
    /// The machine (`uname -m`), e.g. `x86_64`, `aarch64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

impl Condition {
    /// Does the condition hold on `host`? `Err` for a malformed ABI spec.
    pub fn holds(&self, host: &HostConditions) -> Result<bool, String> {
        if let Some(spec) = &self.landlock_abi {
            if !abi_matches(spec, host.landlock)? {
                return Ok(false);
            }
        }
        if let Some(root) = self.root {
            if root != host.root {
                return Ok(false);
            }
        }
        if let Some(arch) = &self.arch {
            if arch != &host.arch {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The host facts conditions are checked against: those of the live run,
/// or the `kernel` section of a JSON report (for `expectations update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConditions {
    /// Landlock.
    pub landlock: LandlockSupport,
    /// Running as root.
    pub root: bool,
    /// `uname -m`.
    pub arch: String,
}

impl HostConditions {
    /// The harness's host: its probed facts, and `uname -m`.
    pub fn from_host(h: &super::requirements::HostFacts) -> HostConditions {
        let arch = nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
        HostConditions {
            landlock: h.landlock,
            root: h.euid == 0,
            arch,
        }
    }

    /// From probed (or reported) kernel facts.
    pub fn of(k: &KernelFacts) -> HostConditions {
        HostConditions {
            landlock: k.landlock,
            root: k.euid == 0,
            arch: k.machine.clone(),
        }
    }
}

/// One entry: how a case fails (on hosts where `if` holds), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Why, in plain words: the behaviour observed.
    pub reason: String,
    /// Where the failure is reported upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<String>,
    /// The failing checks, each with its observed fingerprint.
    pub fails: Vec<Fingerprint>,
    /// Only on hosts where this holds.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Listed {
    /// Exactly these checks failed, with exactly these fingerprints (order
    /// and repeats do not matter).
    pub fn matches(&self, failures: &[CheckFailure]) -> bool {
        let got: BTreeSet<Fingerprint> = failures.iter().map(Fingerprint::of).collect();
        let want: BTreeSet<Fingerprint> = self.fails.iter().cloned().collect();
        got == want
    }
}

/// The form an entry is written in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    reason: String,
    #[serde(default)]
    bug: Option<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    observed: Option<String>,
    #[serde(default)]
    fails: Vec<Fingerprint>,
    #[serde(default, rename = "if")]
    condition: Option<Condition>,
}

/// A case's value: one entry, or alternatives tried in order (the first
/// whose `if` holds applies). A plain string is the untyped form of
/// earlier versions, refused with a message saying how to migrate.
#[derive(Debug, Clone)]
enum CaseDoc {
    One(EntryDoc),
    Alternatives(Vec<EntryDoc>),
}

/// The parse error for an untyped entry (`ID: "reason"`); [`Expectations::parse`]
/// replaces it with [`migration_message`].
const UNTYPED: &str = "an untyped entry (a reason alone)";

/// What to say about a file in the untyped form: where, and the two
/// commands that migrate it (keeping every reason).
pub fn migration_message(path: &Path, line: u64, col: u64, driver: &str) -> String {
    format!(
        "{}:{line}:{col}: failed to load the expectation file: this entry is in the untyped \
         form of earlier versions (a reason alone), but entries now record how the case \
         fails (`check:` and `observed:`). Migrate the file from a run, which keeps every \
         reason:\n  sandspec run --driver {driver} --json run.json\n  \
         sandspec expectations update --from run.json {}",
        path.display(),
        path.display()
    )
}

/// The untyped form, read only to name its driver in the migration message.
#[derive(Deserialize)]
struct UntypedDoc {
    driver: String,
}

impl<'de> Deserialize<'de> for CaseDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CaseDoc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an entry {reason, check, observed} or a list of entries with `if` conditions",
                )
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<CaseDoc, E> {
                Err(E::custom(UNTYPED))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CaseDoc, A::Error> {
                EntryDoc::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CaseDoc::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<CaseDoc, A::Error> {
                Vec::<EntryDoc>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(CaseDoc::Alternatives)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    driver: String,
    #[serde(default)]
    cases: BTreeMap<String, serde_saphyr::Spanned<CaseDoc>>,
}

/// A parsed expectation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The driver the file is for.
    pub driver: String,
    /// Case id → its entries, tried in order.
    pub cases: BTreeMap<String, Vec<Listed>>,
    /// The file, for messages.
    pub path: PathBuf,
}

impl Expectations {
    /// Reads and parses `path`; errors name `file:line:col`.
    pub fn load(path: &Path) -> Result<Expectations, String> {
        let text = crate::input::read_text(path).map_err(|e| e.to_string())?;
        Expectations::parse(&text, path)
    }

    /// Parses an expectation file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Expectations, String> {
        crate::corpus::reject_yaml_tags(text, path)?;
        let doc: FileDoc = serde_saphyr::from_str(text).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            if e.to_string().contains(UNTYPED) {
                let driver = serde_saphyr::from_str::<UntypedDoc>(text)
                    .map(|d| d.driver)
                    .unwrap_or_else(|_| "NAME".into());
                return migration_message(path, l, c, &driver);
            }
            format!("{}:{l}:{c}: {e}", path.display())
        })?;
        let mut cases = BTreeMap::new();
        for (id, spanned) in doc.cases {
            let at = format!(
                "{}:{}:{}: case {id}",
                path.display(),
                spanned.referenced.line(),
                spanned.referenced.column()
            );
            let docs = match spanned.value {
                CaseDoc::One(e) => vec![e],
                CaseDoc::Alternatives(v) => v,
            };
            if docs.is_empty() {
                return Err(format!("{at}: an empty list of entries: remove the case"));
            }
            let last = docs.len() - 1;
            let mut entries = Vec::new();
            for (i, e) in docs.into_iter().enumerate() {
                if e.condition.is_none() && i != last {
                    return Err(format!(
                        "{at}: entry {} has no `if` but is not the last: the entries after it \
                         could never apply",
                        i + 1
                    ));
                }
                entries.push(entry(e).map_err(|why| format!("{at}: {why}"))?);
            }
            cases.insert(id, entries);
        }
        Ok(Expectations {
            driver: doc.driver,
            cases,
            path: path.to_path_buf(),
        })
    }

    /// Checks the file against the corpus and the driver in use: unknown
    /// ids and another driver's file are errors.
    pub fn validate<'a>(
        &self,
        known_ids: impl IntoIterator<Item = &'a str>,
        driver_names: &[&str],
    ) -> Result<(), String> {
        let known: BTreeSet<&str> = known_ids.into_iter().collect();
        let unknown: Vec<&str> = self
            .cases
            .keys()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "{}: unknown case ids (not in the corpus): {}",
                self.path.display(),
                unknown.join(", ")
            ));
        }
        if !driver_names.contains(&self.driver.as_str()) {
            return Err(format!(
                "{}: this file is for driver {:?}, but the run uses {}",
                self.path.display(),
                self.driver,
                driver_names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        Ok(())
    }

    /// The entry for `id` that applies on `host`, if any.
    pub fn lookup(&self, id: &str, host: &HostConditions) -> Option<&Listed> {
        self.cases.get(id)?.iter().find(|e| {
            e.condition
                .as_ref()
                .is_none_or(|c| c.holds(host).unwrap_or(false))
        })
    }

    /// Holds a result to its entry: a failure exactly as listed is xfail;
    /// any other failure stays fail and says how it differs; a failure
    /// that leaked stays fail whatever the entry says; a pass of a listed
    /// case is xpass (the entry is stale). Errors and skips stay what they
    /// are: a broken driver or an unmet requirement is not the known
    /// failure.
    pub fn apply(&self, r: &mut CaseResult, host: &HostConditions) {
        let Some(listed) = self.lookup(&r.id, host) else {
            return;
        };
        r.expected_failure = Some(listed.reason.clone());
        r.expected = Some(listed.clone());
        let got =
            || describe_fingerprints(&r.failures.iter().map(Fingerprint::of).collect::<Vec<_>>());
        match r.status {
            Status::Fail if r.failures.iter().any(|f| f.leak) => {
                let why = r.reason.clone().unwrap_or_default();
                r.reason = Some(format!(
                    "{why} [the harness saw a leak, which no expectation excuses; {} lists: {}]",
                    self.path.display(),
                    describe_fingerprints(&listed.fails)
                ));
            }
            Status::Fail if listed.matches(&r.failures) => r.status = Status::Xfail,
            Status::Fail => {
                let why = r.reason.clone().unwrap_or_default();
                r.reason = Some(format!(
                    "failed differently than expected: {} lists {}, the run failed {}: {why}",
                    self.path.display(),
                    describe_fingerprints(&listed.fails),
                    got()
                ));
            }
            Status::Pass => {
                r.status = Status::Xpass;
                let how = if r.mechanism_differs.is_empty() {
                    "passed".to_string()
                } else {
                    "passed (every property held; mechanism differs)".to_string()
                };
                r.reason = Some(format!(
                    "{how}, but {} lists it as failing ({}): remove the entry",
                    self.path.display(),
                    listed.reason
                ));
            }
            Status::Error | Status::Skip | Status::Xfail | Status::Xpass => {}
        }
    }
}

/// Checks one written entry and makes it a [`Listed`].
fn entry(e: EntryDoc) -> Result<Listed, String> {
    if e.reason.trim().is_empty() {
        return Err("an empty reason: say what was observed".into());
    }
    if let Some(b) = &e.bug {
        if !(b.starts_with("https://") || b.starts_with("http://")) {
            return Err(format!("bug {b:?} is not a URL (http:// or https://)"));
        }
    }
    if let Some(c) = &e.condition {
        if let Some(spec) = &c.landlock_abi {
            crate::corpus::matcher::AbiRequirement::parse(spec)
                .map_err(|why| format!("if.landlock_abi: {why}"))?;
        }
    }
    let mut fails = e.fails;
    match (e.check, e.observed) {
        (Some(check), Some(observed)) if fails.is_empty() => {
            fails.push(Fingerprint { check, observed })
        }
        (None, None) => {}
        (Some(_), Some(_)) => {
            return Err("both `check:`/`observed:` and `fails:`: use one form".into())
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("`check:` and `observed:` go together".into())
        }
    }
    if fails.is_empty() {
        return Err(
            "the entry says why the case fails but not how: add `check:` and \
             `observed:` (or `fails:`); `sandspec expectations update --from RUN.json FILE` \
             writes them from a run"
                .into(),
        );
    }
    if let Some(f) = fails
        .iter()
        .find(|f| f.check.trim().is_empty() || f.observed.trim().is_empty())
    {
        return Err(format!("an empty check or observed value in {f}"));
    }
    Ok(Listed {
        reason: e.reason,
        bug: e.bug,
        fails,
        condition: e.condition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::check::CheckKind;
    use crate::kernel::LandlockSupport;

    fn result(id: &str, status: Status, failures: Vec<CheckFailure>) -> CaseResult {
        CaseResult {
            id: id.into(),
            path: PathBuf::new(),
            tags: vec![],
            status,
            reason: Some("the run's reason".into()),
            duration: std::time::Duration::ZERO,
            outcome: None,
            control_outcome: None,
            expected_failure: None,
            expected: None,
            failures,
            mechanism_differs: vec![],
            evidence: Default::default(),
            unobserved: vec![],
            kept: vec![],
            survivors: vec![],
            control_survivors: vec![],
            refs: vec![],
        }
    }

    fn failure(check: &str, observed: &str, leak: bool) -> CheckFailure {
        CheckFailure {
            check: check.into(),
            kind: if check.starts_with("oracle") {
                CheckKind::Property
            } else {
                CheckKind::Mechanism
            },
            observed: observed.into(),
            message: format!("{check} was {observed}"),
            leak,
        }
    }

    fn file(text: &str) -> Result<Expectations, String> {
        Expectations::parse(text, Path::new("x.yaml"))
    }

    fn host(abi: u32, root: bool) -> HostConditions {
        HostConditions {
            landlock: LandlockSupport::Abi(abi),
            root,
            arch: "x86_64".into(),
        }
    }

    const BWRAP: &str = "driver: bwrap\ncases:\n  \
        a:\n    reason: exit code, not a signal\n    check: outcome\n    observed: exited 137\n  \
        b:\n    reason: two checks\n    bug: https://example.org/1\n    fails:\n      \
        - {check: outcome, observed: exited 0}\n      - {check: probe.errno, observed: none}\n";

    #[test]
    fn a_failure_exactly_as_listed_is_xfail_and_any_other_is_fail() {
        let x = file(BWRAP).unwrap();
        let h = host(7, true);
        let mut a = result(
            "a",
            Status::Fail,
            vec![failure("outcome", "exited 137", false)],
        );
        x.apply(&mut a, &h);
        assert_eq!(a.status, Status::Xfail);
        assert_eq!(
            a.expected_failure.as_deref(),
            Some("exit code, not a signal")
        );

        let mut other = result(
            "a",
            Status::Fail,
            vec![failure("outcome", "exited 1", false)],
        );
        x.apply(&mut other, &h);
        assert_eq!(other.status, Status::Fail);
        let why = other.reason.unwrap();
        assert!(
            why.starts_with("failed differently than expected")
                && why.contains("outcome: exited 137")
                && why.contains("outcome: exited 1"),
            "{why}"
        );

        // One more failing check than listed is another way to fail.
        let mut more = result(
            "a",
            Status::Fail,
            vec![
                failure("outcome", "exited 137", false),
                failure("stdout.contains", "empty", false),
            ],
        );
        x.apply(&mut more, &h);
        assert_eq!(more.status, Status::Fail);

        // Order does not matter.
        let mut b = result(
            "b",
            Status::Fail,
            vec![
                failure("probe.errno", "none", false),
                failure("outcome", "exited 0", false),
            ],
        );
        x.apply(&mut b, &h);
        assert_eq!(b.status, Status::Xfail);
        assert_eq!(
            b.expected.unwrap().bug.as_deref(),
            Some("https://example.org/1")
        );
    }

    #[test]
    fn a_leak_fails_whatever_the_file_says() {
        let x = file(
            "driver: d\ncases:\n  a:\n    reason: listed with the leak itself\n    fails:\n      \
             - {check: oracle.tcp.received, observed: '>0'}\n",
        )
        .unwrap();
        let mut a = result(
            "a",
            Status::Fail,
            vec![failure("oracle.tcp.received", ">0", true)],
        );
        x.apply(&mut a, &host(7, true));
        assert_eq!(a.status, Status::Fail);
        assert!(a.reason.unwrap().contains("leak"));
    }

    #[test]
    fn listed_passes_are_xpass_and_errors_and_skips_stay() {
        let x = file(BWRAP).unwrap();
        let h = host(7, true);
        let mut p = result("a", Status::Pass, vec![]);
        x.apply(&mut p, &h);
        assert_eq!(p.status, Status::Xpass);
        assert!(p.reason.unwrap().contains("remove the entry"));
        for s in [Status::Error, Status::Skip] {
            let mut r = result("a", s, vec![]);
            x.apply(&mut r, &h);
            assert_eq!(r.status, s);
        }
        let mut unlisted = result("c", Status::Fail, vec![failure("outcome", "x", false)]);
        x.apply(&mut unlisted, &h);
        assert_eq!(unlisted.status, Status::Fail);
        assert!(!Status::Xpass.is_ok());
    }

    #[test]
    fn conditions_pick_the_first_entry_that_holds_on_the_host() {
        let x = file(
            "driver: d\ncases:\n  a:\n    \
             - if: {root: false}\n      reason: as a user\n      check: probe.errno\n      observed: none\n    \
             - if: {landlock_abi: '<6', arch: x86_64}\n      reason: old kernel\n      check: outcome\n      observed: exited 0\n",
        )
        .unwrap();
        let e = |h: &HostConditions| x.lookup("a", h).map(|l| l.reason.as_str());
        assert_eq!(e(&host(7, false)), Some("as a user"));
        assert_eq!(e(&host(5, true)), Some("old kernel"));
        assert_eq!(e(&host(7, true)), None);
        let mut arm = host(5, true);
        arm.arch = "aarch64".into();
        assert_eq!(e(&arm), None);
        // No entry applies: the case is expected to pass, and a failure fails.
        let mut r = result(
            "a",
            Status::Fail,
            vec![failure("outcome", "exited 0", false)],
        );
        x.apply(&mut r, &host(7, true));
        assert_eq!(r.status, Status::Fail);
    }

    #[test]
    fn the_untyped_form_gets_a_migration_message_with_its_position() {
        let e = file(
            "driver: sandlock\ncases:\n  b: {reason: r, check: c, observed: o}\n  a: \"known\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("x.yaml:4:6: failed to load"), "{e}");
        assert!(
            e.contains("untyped form")
                && e.contains("sandspec run --driver sandlock --json run.json")
                && e.contains("sandspec expectations update --from run.json x.yaml"),
            "{e}"
        );
    }

    #[test]
    fn malformed_entries_are_errors_naming_the_case() {
        for (text, needle) in [
            ("driver: x\ncase:\n  a: {}\n", "x.yaml:2:"),
            ("driver: x\ncases:\n  a: {reason: '', check: c, observed: o}\n", "empty reason"),
            ("driver: x\ncases:\n  a: {reason: r}\n", "not how"),
            ("driver: x\ncases:\n  a: {reason: r, check: c}\n", "go together"),
            ("driver: x\ncases:\n  a: {reason: r, check: c, observed: o, bug: nope}\n", "not a URL"),
            ("driver: x\ncases:\n  a: {reason: r, check: c, observed: o, if: {landlock_abi: '>>1'}}\n", "landlock_abi"),
            ("driver: x\ncases:\n  a: {reason: r, check: c, observed: o, colour: red}\n", "colour"),
            ("driver: x\ncases:\n  a:\n    - {reason: r, check: c, observed: o}\n    - {reason: r, check: c, observed: o}\n", "not the last"),
        ] {
            let e = file(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_ids_and_drivers_are_errors() {
        let x =
            file("driver: sandlock\ncases:\n  nope: {reason: r, check: c, observed: o}\n").unwrap();
        let e = x.validate(["a"], &["sandlock"]).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = x.validate(["nope"], &["bwrap"]).unwrap_err();
        assert!(e.contains("bwrap"), "{e}");
        assert!(x.validate(["nope"], &["sandlock"]).is_ok());
    }
}
