//! Checks a case must pass beyond its YAML shape: the things serde cannot
//! see (a regex that does not compile, an isolation case without a control,
//! an oracle expected but never started, a template variable that does not
//! exist). Each problem carries the position of the offending field.

use std::collections::BTreeSet;

use super::case::{
    Capability, Case, ControlDriver, Expect, IntMatcher, OracleKind, OracleMatcher, OutcomeMatcher,
    Run, Tag, TextMatcher,
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
    let listed: BTreeSet<OracleKind> = case.oracles.iter().copied().collect();
    let caps = case.requires.capabilities.as_slice();
    v.run(&case.run, "run", &listed, Some(caps));
    if listed.contains(&OracleKind::Terminal) && !caps.contains(&Capability::Terminal) {
        v.at(
            "oracles",
            "the terminal oracle needs a driver that can hand the command a terminal: add `terminal` to requires.capabilities",
        );
    }
    v.expect(&case.expect, "expect", &listed);
    if let Some(control) = &case.control {
        v.expect(&control.expect, "control.expect", &listed);
        if let Some(run) = &control.run {
            // A control under `none` needs nothing of the case's driver.
            let caps = match control.driver {
                Some(ControlDriver::None) => None,
                None => Some(caps),
            };
            v.run(run, "control.run", &listed, caps);
        }
    }
    v.refs(case);
    v.oracle_ports(case, &listed);
    v.templates(case, &listed);
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
        for (i, a) in case.requires.arch.iter().enumerate() {
            if !ARCHES.contains(&a.as_str()) {
                self.at_value(
                    &format!("requires.arch[{i}]"),
                    format!(
                        "unknown architecture {a:?} (known, as `uname -m` names them: {})",
                        ARCHES.join(", ")
                    ),
                );
            }
        }
        for (name, value) in &case.requires.sysctl {
            let path = format!("requires.sysctl.{name}");
            if let Err(e) = check_sysctl_name(name) {
                self.at(&path, e);
            }
            if value.trim().is_empty() {
                self.at_value(
                    &path,
                    format!("sysctl {name} needs a value to compare with"),
                );
            }
        }
    }

    fn refs(&mut self, case: &Case) {
        let mut seen = BTreeSet::new();
        for (i, r) in case.refs.iter().enumerate() {
            let path = format!("refs[{i}]");
            if let Err(e) = check_ref(r) {
                self.at_value(&path, e);
            }
            if !seen.insert(r.as_str()) {
                self.at_value(&path, format!("reference {r:?} is listed twice"));
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

    fn run(
        &mut self,
        run: &Run,
        at: &str,
        listed: &BTreeSet<OracleKind>,
        caps: Option<&[Capability]>,
    ) {
        match (&run.argv, &run.script) {
            (Some(argv), None) => {
                if argv.is_empty() {
                    self.at_value(
                        &format!("{at}.argv"),
                        format!("{at}.argv must not be empty"),
                    );
                }
            }
            (None, Some(script)) => {
                if script.interpreter.is_empty() {
                    self.at_value(
                        &format!("{at}.script.interpreter"),
                        format!("{at}.script.interpreter must not be empty"),
                    );
                }
                match (&script.body, &script.generated) {
                    (Some(_), None) => {}
                    (None, Some(g)) => {
                        if g.filler.is_empty() {
                            self.at_value(
                                &format!("{at}.script.generated.filler"),
                                "generated.filler must not be empty",
                            );
                        }
                    }
                    _ => self.at(
                        &format!("{at}.script"),
                        format!("{at}.script needs exactly one of `body` and `generated`"),
                    ),
                }
            }
            _ => self.at(at, format!("{at} needs exactly one of `argv` and `script`")),
        }
        if listed.contains(&OracleKind::Terminal) && run.stdin.is_some() {
            self.at(
                &format!("{at}.stdin"),
                "with the terminal oracle the command's stdin is the terminal: drop `stdin`",
            );
        }
        for (i, fd) in run.fds.iter().enumerate() {
            let s = fd.path.as_str();
            if !(s.starts_with('/') || s.starts_with("${")) {
                self.at_value(
                    &format!("{at}.fds[{i}].path"),
                    format!("inherited fd path {s:?} must be absolute (or start with a template such as ${{SCRATCH}})"),
                );
            }
        }
        if !run.fds.is_empty() && caps.is_some_and(|c| !c.contains(&Capability::FdsInherit)) {
            self.at(
                &format!("{at}.fds"),
                "inherited fds need a driver that can hand them over: add `fds.inherit` to requires.capabilities",
            );
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
        if let Some(m) = &e.survivors {
            self.int(&format!("{at}.survivors"), m);
            if e.no_survivors {
                self.at(
                    &format!("{at}.survivors"),
                    "`no_survivors: true` already says `survivors: 0`: use one of them",
                );
            }
        }
        if let Some(h) = &e.host {
            for (p, mode) in &h.mode {
                if let Err(e) = parse_mode(mode) {
                    self.at_value(&format!("{at}.host.mode.{p}"), e);
                }
            }
            for (p, owner) in &h.owner {
                if owner.uid.is_none() && owner.gid.is_none() {
                    self.at(
                        &format!("{at}.host.owner.{p}"),
                        "an owner matcher needs `uid`, `gid` or both",
                    );
                }
            }
            if let Some(m) = &h.objects_left {
                self.int(&format!("{at}.host.objects_left"), m);
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
        if kind != OracleKind::Inbound && m.connected.is_some() {
            self.at(
                &format!("{path}.connected"),
                "`connected` is for the inbound oracle",
            );
        }
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
            OracleKind::Inbound => {
                for (field, set) in [
                    ("received", m.received.is_some()),
                    ("alive", m.alive.is_some()),
                ] {
                    if set {
                        self.at(
                            &format!("{path}.{field}"),
                            "the inbound oracle counts the connections it made: use `connected`",
                        );
                    }
                }
                match &m.connected {
                    Some(c) => self.int(&format!("{path}.connected"), c),
                    None => self.at(path, "the inbound oracle needs `connected`"),
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
    /// an oracle's variable needs that oracle listed, and `${FD_i}` an
    /// `i`-th entry in the `fds` of the run it is used with.
    fn templates(&mut self, case: &Case, listed: &BTreeSet<OracleKind>) {
        let mut found = Vec::new();
        let control_run = case.control.as_ref().and_then(|c| c.run.as_ref());
        for s in self.ix.scalars() {
            let top = s.path.split(['.', '[']).next().unwrap_or("");
            if !TEMPLATED.contains(&top) {
                continue;
            }
            let in_control = top == "control";
            let fds = match (in_control, control_run) {
                (true, Some(run)) => run.fds.len(),
                _ => case.run.fds.len(),
            };
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
                    Some(n) if template::fd_index(n).is_some_and(|i| i >= fds) => format!(
                        "${{{n}}} names an inherited fd the run does not have ({fds} in its `fds`)"
                    ),
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

/// Architectures `requires.arch` may name (`uname -m` spellings).
pub const ARCHES: &[&str] = &[
    "x86_64",
    "i686",
    "aarch64",
    "armv7l",
    "riscv64",
    "s390x",
    "ppc64le",
    "ppc64",
    "loongarch64",
    "mips64",
];

/// A sysctl name as `sysctl(8)` writes it: dotted, e.g.
/// `dev.tty.legacy_tiocsti` (read from /proc/sys/dev/tty/legacy_tiocsti).
pub fn check_sysctl_name(name: &str) -> Result<(), String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if name.split('.').count() >= 2 && name.split('.').all(ok_part) {
        Ok(())
    } else {
        Err(format!(
            "invalid sysctl name {name:?}: use dotted parts of letters, digits, '_' and '-' (e.g. dev.tty.legacy_tiocsti)"
        ))
    }
}

/// A reference: a CVE id, a GitHub advisory id or an http(s) URL.
pub fn check_ref(r: &str) -> Result<(), String> {
    let digits = |s: &str, min: usize| s.len() >= min && s.bytes().all(|b| b.is_ascii_digit());
    let cve = r
        .strip_prefix("CVE-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(year, n)| year.len() == 4 && digits(year, 4) && digits(n, 4));
    let ghsa = r.strip_prefix("GHSA-").is_some_and(|rest| {
        let parts: Vec<&str> = rest.split('-').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
    });
    let url = (r.starts_with("https://") || r.starts_with("http://"))
        && r.len() > "https://x".len()
        && !r.chars().any(|c| c.is_whitespace() || c.is_control());
    if cve || ghsa || url {
        Ok(())
    } else {
        Err(format!(
            "invalid reference {r:?}: use a CVE id (CVE-2017-5226), an advisory id (GHSA-xxxx-xxxx-xxxx) or an http(s) URL"
        ))
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
