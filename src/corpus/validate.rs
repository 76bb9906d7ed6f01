//! Checks a case must pass beyond its YAML shape: the things serde cannot
//! see (a regex that does not compile, an isolation case without a control,
//! an oracle expected but never started, a template variable that does not
//! exist). Each problem carries the position of the offending field.

use std::collections::BTreeSet;

use super::case::{
    Case, Expect, IntMatcher, OracleKind, OracleMatcher, OutcomeMatcher, Run, Tag, TextMatcher,
};
use super::locate::{Index, Pos};
use super::matcher::AbiRequirement;
use super::setup::{check_relative, parse_mode};
use super::template;
use super::vocab::{oracle_name, tag_name};
use crate::policy::Network;

/// A problem found in one case: where, and what.
pub type Found = (Pos, String);

/// The top-level fields whose strings are templated.
const TEMPLATED: &[&str] = &["policy", "run", "setup", "expect", "control"];

/// Every problem of `case`, positioned with `ix`.
pub fn check(case: &Case, ix: &Index) -> Vec<Found> {
    let mut v = Checker {
        ix,
        out: Vec::new(),
    };
    v.identity(case);
    v.requires(case);
    v.setup(case);
    v.policy(case);
    v.run(&case.run);
    let listed: BTreeSet<OracleKind> = case.oracles.iter().copied().collect();
    v.expect(&case.expect, "expect", &listed);
    if let Some(control) = &case.control {
        v.expect(&control.expect, "control.expect", &listed);
    }
    v.oracle_ports(case, &listed);
    v.templates(&listed);
    v.out.sort_by_key(|(pos, _)| *pos);
    v.out
}

struct Checker<'a> {
    ix: &'a Index,
    out: Vec<Found>,
}

impl Checker<'_> {
    fn at(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.ix.field(path).unwrap_or(Pos::START);
        self.out.push((pos, message.into()));
    }

    fn at_value(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.ix.value(path).unwrap_or(Pos::START);
        self.out.push((pos, message.into()));
    }

    fn identity(&mut self, case: &Case) {
        if let Err(e) = check_id(&case.id) {
            self.at_value("id", e);
        }
        if case.summary.trim().is_empty() {
            self.at_value(
                "summary",
                "summary must not be empty: say what a sandbox must do",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, tag) in case.tags.iter().enumerate() {
            if !seen.insert(*tag) {
                self.at_value(
                    &format!("tags[{i}]"),
                    format!("tag {} is listed twice", tag_name(*tag)),
                );
            }
        }
        if case.tags.contains(&Tag::Isolation) && case.control.is_none() {
            self.at(
                "tags",
                "a case tagged `isolation` needs a `control`: the same case with the restriction lifted, which must succeed",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, o) in case.oracles.iter().enumerate() {
            if !seen.insert(*o) {
                self.at_value(
                    &format!("oracles[{i}]"),
                    format!("oracle {} is listed twice", oracle_name(*o)),
                );
            }
        }
    }

    fn requires(&mut self, case: &Case) {
        if let Some(abi) = &case.requires.landlock_abi {
            if let Err(e) = AbiRequirement::parse(abi) {
                self.at_value("requires.landlock_abi", e);
            }
        }
        for (i, p) in case.requires.programs.iter().enumerate() {
            if p.trim().is_empty() {
                self.at_value(
                    &format!("requires.programs[{i}]"),
                    "program name must not be empty",
                );
            }
        }
    }

    fn setup(&mut self, case: &Case) {
        let s = &case.setup;
        for (i, d) in s.dirs.iter().enumerate() {
            if let Err(e) = check_relative(d) {
                self.at_value(&format!("setup.dirs[{i}]"), e);
            }
        }
        for (i, f) in s.files.iter().enumerate() {
            let path = format!("setup.files[{i}]");
            if let Err(e) = check_relative(&f.path) {
                self.at_value(&format!("{path}.path"), e);
            }
            if f.content.is_some() && f.size.is_some() {
                self.at(
                    &format!("{path}.size"),
                    "a setup file has `content` or `size`, not both",
                );
            }
            if let Some(mode) = &f.mode {
                if let Err(e) = parse_mode(mode) {
                    self.at_value(&format!("{path}.mode"), e);
                }
            }
        }
        for (i, l) in s.symlinks.iter().enumerate() {
            if let Err(e) = check_relative(&l.path) {
                self.at_value(&format!("setup.symlinks[{i}].path"), e);
            }
            if l.target.is_empty() {
                self.at_value(
                    &format!("setup.symlinks[{i}].target"),
                    "symlink target must not be empty",
                );
            }
        }
    }

    fn policy(&mut self, case: &Case) {
        let p = &case.policy;
        for (field, paths) in [("read", &p.read), ("write", &p.write), ("exec", &p.exec)] {
            for (i, path) in paths.iter().enumerate() {
                self.absolute(&format!("policy.{field}[{i}]"), path);
            }
        }
        if let Some(cwd) = &p.cwd {
            self.absolute("policy.cwd", cwd);
        }
        if let Some(c) = &case.control {
            for (field, paths) in [
                ("read", &c.policy.read),
                ("write", &c.policy.write),
                ("exec", &c.policy.exec),
            ] {
                for (i, path) in paths.iter().flatten().enumerate() {
                    self.absolute(&format!("control.policy.{field}[{i}]"), path);
                }
            }
            if let Some(cwd) = &c.policy.cwd {
                self.absolute("control.policy.cwd", cwd);
            }
        }
    }

    fn absolute(&mut self, path: &str, p: &std::path::Path) {
        let s = p.to_string_lossy();
        if !(s.starts_with('/') || s.starts_with("${")) {
            self.at_value(path, format!("policy path {s:?} must be absolute (or start with a template such as ${{SCRATCH}})"));
        }
    }

    fn run(&mut self, run: &Run) {
        match (&run.argv, &run.script) {
            (Some(argv), None) => {
                if argv.is_empty() {
                    self.at_value("run.argv", "run.argv must not be empty");
                }
            }
            (None, Some(script)) => {
                if script.interpreter.is_empty() {
                    self.at_value(
                        "run.script.interpreter",
                        "run.script.interpreter must not be empty",
                    );
                }
                match (&script.body, &script.generated) {
                    (Some(_), None) => {}
                    (None, Some(g)) => {
                        if g.filler.is_empty() {
                            self.at_value(
                                "run.script.generated.filler",
                                "generated.filler must not be empty",
                            );
                        }
                    }
                    _ => self.at(
                        "run.script",
                        "run.script needs exactly one of `body` and `generated`",
                    ),
                }
            }
            _ => self.at("run", "run needs exactly one of `argv` and `script`"),
        }
    }

    fn expect(&mut self, e: &Expect, at: &str, listed: &BTreeSet<OracleKind>) {
        if *e == Expect::default() {
            self.at(
                at,
                format!("`{at}` checks nothing: a case that cannot fail is a defect"),
            );
        }
        match &e.outcome {
            Some(OutcomeMatcher::Exited { code: Some(m) }) => {
                self.int(&format!("{at}.outcome.exited.code"), m)
            }
            Some(OutcomeMatcher::Signaled { signal: Some(m) }) => {
                self.int(&format!("{at}.outcome.signaled.signal"), m)
            }
            _ => {}
        }
        for (name, m) in [("stdout", &e.stdout), ("stderr", &e.stderr)] {
            if let Some(m) = m {
                self.text(&format!("{at}.{name}"), m);
            }
        }
        if let Some(p) = &e.probe {
            if let Some(m) = &p.value {
                self.int(&format!("{at}.probe.value"), m);
            }
            for (i, errno) in p.errno.iter().enumerate() {
                if !is_errno_name(errno) {
                    self.at_value(
                        &format!("{at}.probe.errno[{i}]"),
                        format!("{errno:?} is not an errno name (expected e.g. EACCES, EPERM)"),
                    );
                }
            }
        }
        for (kind, m) in &e.oracles {
            let path = format!("{at}.oracles.{}", oracle_name(*kind));
            if !listed.contains(kind) {
                self.at(
                    &path,
                    format!(
                        "oracle {} is expected but not listed in `oracles`, so it never runs",
                        oracle_name(*kind)
                    ),
                );
            }
            self.oracle(&path, *kind, m);
        }
    }

    fn oracle(&mut self, path: &str, kind: OracleKind, m: &OracleMatcher) {
        match kind {
            OracleKind::Victim => {
                if m.received.is_some() {
                    self.at(
                        &format!("{path}.received"),
                        "the victim oracle counts nothing: use `alive`",
                    );
                }
                if m.alive.is_none() {
                    self.at(path, "the victim oracle needs `alive: true|false`");
                }
            }
            _ => {
                if m.alive.is_some() {
                    self.at(
                        &format!("{path}.alive"),
                        "`alive` is for the victim oracle: use `received`",
                    );
                }
                match &m.received {
                    Some(r) => self.int(&format!("{path}.received"), r),
                    None => self.at(
                        path,
                        format!("oracle {} needs `received`", oracle_name(kind)),
                    ),
                }
            }
        }
    }

    fn oracle_ports(&mut self, case: &Case, listed: &BTreeSet<OracleKind>) {
        if case.oracle_ports.is_empty() {
            return;
        }
        if !matches!(case.policy.network, Network::Ports(_)) {
            self.at(
                "oracle_ports",
                "oracle_ports needs policy.network to be a port-rule map ({tcp_connect: [...], tcp_bind: [...]})",
            );
        }
        let lists = [
            ("tcp_connect", &case.oracle_ports.tcp_connect),
            ("tcp_bind", &case.oracle_ports.tcp_bind),
        ];
        for (field, kinds) in lists {
            for (i, kind) in kinds.iter().enumerate() {
                let path = format!("oracle_ports.{field}[{i}]");
                if !matches!(kind, OracleKind::Tcp | OracleKind::Tcp2) {
                    self.at_value(
                        &path,
                        format!(
                            "oracle {} has no TCP port: use tcp or tcp2",
                            oracle_name(*kind)
                        ),
                    );
                } else if !listed.contains(kind) {
                    self.at_value(
                        &path,
                        format!("oracle {} is not listed in `oracles`", oracle_name(*kind)),
                    );
                }
            }
        }
    }

    fn int(&mut self, path: &str, m: &IntMatcher) {
        if let Err(e) = m.check() {
            self.at_value(path, e);
        }
    }

    fn text(&mut self, path: &str, m: &TextMatcher) {
        if *m == TextMatcher::default() {
            self.at(path, "empty text matcher checks nothing");
        }
        if let Some(len) = &m.len {
            self.int(&format!("{path}.len"), len);
        }
        if let Some(re) = &m.regex {
            // Templates are expanded before the regex is compiled at run
            // time; any value will do to check the rest of it.
            let vars = template::VARIABLES
                .iter()
                .map(|(n, _)| (n.to_string(), "0".to_string()))
                .collect();
            let re = template::expand_str(re, &vars).unwrap_or_else(|_| re.clone());
            if let Err(e) = regex::Regex::new(&re) {
                self.at_value(
                    &format!("{path}.regex"),
                    format!("invalid regex {re:?}: {}", regex_reason(&e)),
                );
            }
        }
    }

    /// Template references in every templated string: the name must exist,
    /// and an oracle's variable needs that oracle listed.
    fn templates(&mut self, listed: &BTreeSet<OracleKind>) {
        let mut found = Vec::new();
        for s in self.ix.scalars() {
            let top = s.path.split(['.', '[']).next().unwrap_or("");
            if !TEMPLATED.contains(&top) {
                continue;
            }
            for r in template::references(&s.text) {
                let message = match r.name.as_deref() {
                    None => {
                        "unclosed template reference: write `$${` for a literal `${`".to_string()
                    }
                    Some(n) if !template::is_known(n) => {
                        format!(
                            "unknown template variable ${{{n}}} (known: {})",
                            template::known_list()
                        )
                    }
                    Some(n) => match template::oracle_of(n) {
                        Some(o) if !listed.contains(&o) => format!(
                            "${{{n}}} needs the {} oracle: add it to `oracles`",
                            oracle_name(o)
                        ),
                        _ => continue,
                    },
                };
                found.push((s.pos, message));
            }
        }
        self.out.extend(found);
    }
}

/// Case ids: dotted lowercase, at least two parts, e.g. `net.deny.dns-udp`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    let parts: Vec<&str> = id.split('.').collect();
    if parts.len() >= 2 && parts.iter().all(|p| ok_part(p)) {
        Ok(())
    } else {
        Err(format!(
            "invalid id {id:?}: use dotted lowercase parts of a-z, 0-9, '-', '_' (e.g. net.deny.dns-udp)"
        ))
    }
}

fn is_errno_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with('E')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The one-line reason of a regex error (the crate's message spans lines).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}
