//! TEMPORARY stand-ins for APIs other helpers are writing (corpus loading,
//! templating, setup, oracles, no-Landlock simulation), with their agreed
//! signatures. Deleted as soon as the real modules are merged; nothing here
//! pretends to observe anything: the oracle stand-in refuses to start.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::corpus::case::{Case, OracleKind, Run, Setup, SimulatedLandlock};
use crate::policy::Command;

/// Stand-in for `corpus::LoadedCase`.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// The case.
    pub case: Case,
    /// Its file.
    pub path: PathBuf,
}

/// Stand-in for `corpus::load`: one case per `.yaml` file, recursively.
pub fn load(path: &Path) -> Result<Vec<LoadedCase>, String> {
    let mut files = Vec::new();
    collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let case: Case = serde_saphyr::from_str(&text).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            format!("{}:{l}:{c}: {e}", f.display())
        })?;
        out.push(LoadedCase { case, path: f });
    }
    Ok(out)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if p.is_dir() {
        for e in std::fs::read_dir(p)? {
            collect(&e?.path(), out)?;
        }
    } else if p.extension().is_some_and(|e| e == "yaml") {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Stand-in for `corpus::template::expand`: `${NAME}` in every string.
pub fn expand(case: &Case, vars: &BTreeMap<String, String>) -> Result<Case, String> {
    fn walk(v: &mut serde_json::Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
        match v {
            serde_json::Value::String(s) => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let end = rest[i..].find('}').ok_or("unclosed ${")?;
                    let name = &rest[i + 2..i + end];
                    out.push_str(vars.get(name).ok_or(format!("unknown variable {name}"))?);
                    rest = &rest[i + end + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            serde_json::Value::Array(a) => a.iter_mut().try_for_each(|x| walk(x, vars))?,
            serde_json::Value::Object(o) => o.values_mut().try_for_each(|x| walk(x, vars))?,
            _ => {}
        }
        Ok(())
    }
    let mut v = serde_json::to_value(case).map_err(|e| e.to_string())?;
    walk(&mut v, vars)?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Stand-in for `corpus::setup::materialize`.
pub fn materialize(setup: &Setup, scratch: &Path) -> io::Result<()> {
    for d in &setup.dirs {
        std::fs::create_dir_all(scratch.join(d))?;
    }
    for f in &setup.files {
        let p = scratch.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body = match (&f.content, f.size) {
            (Some(c), _) => c.clone().into_bytes(),
            (None, Some(s)) => vec![b'x'; s.0 as usize],
            (None, None) => Vec::new(),
        };
        std::fs::write(&p, body)?;
        if let Some(m) = &f.mode {
            use std::os::unix::fs::PermissionsExt;
            let mode = u32::from_str_radix(m, 8).map_err(io::Error::other)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    for s in &setup.symlinks {
        std::os::unix::fs::symlink(&s.target, scratch.join(&s.path))?;
    }
    Ok(())
}

/// Stand-in for `corpus::setup::command`.
pub fn command(run: &Run) -> Result<Command, String> {
    let cmd = match (&run.argv, &run.script) {
        (Some(a), None) => Command::argv(a.clone()),
        (None, Some(s)) => {
            let body = match (&s.body, &s.generated) {
                (Some(b), None) => b.clone(),
                (None, Some(g)) => {
                    let mut b = String::new();
                    while b.len() + g.tail.len() < g.size.0 as usize {
                        b.push_str(&g.filler);
                    }
                    b.push_str(&g.tail);
                    b
                }
                _ => return Err("a script has exactly one of body and generated".into()),
            };
            let mut c = Command::script("sh", body);
            if let crate::policy::Program::Script(sc) = &mut c.program {
                sc.interpreter = s.interpreter.clone();
            }
            c
        }
        _ => return Err("a run has exactly one of argv and script".into()),
    };
    Ok(match &run.stdin {
        Some(s) => cmd.with_stdin(s.clone()),
        None => cmd,
    })
}

/// Stand-in for `oracle::Observations`.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Counts per listener.
    pub received: BTreeMap<OracleKind, u64>,
    /// Whether the victim survived.
    pub victim_alive: Option<bool>,
}

/// Stand-in for `oracle::Oracles`: starts nothing, and refuses any oracle.
pub struct Oracles;

impl Oracles {
    /// Fails for any non-empty list: the real listeners are not merged yet.
    pub fn start(kinds: &[OracleKind], _rt: &tokio::runtime::Handle) -> io::Result<Oracles> {
        if kinds.is_empty() {
            Ok(Oracles)
        } else {
            Err(io::Error::other(
                "oracles are not available in this build yet",
            ))
        }
    }
    /// No variables.
    pub fn vars(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Nothing observed.
    pub fn finish(self) -> Observations {
        Observations::default()
    }
}

/// Stand-in for `oracle::survivors`: pids that exist and are not zombies.
pub fn survivors(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Stand-in for `sandbox::simulate::NoLandlock`: cannot be built yet.
#[derive(Debug)]
pub struct NoLandlock;

impl NoLandlock {
    /// Always fails: the real filter is not merged yet.
    pub fn new(_how: SimulatedLandlock) -> Result<NoLandlock, crate::sandbox::SetupError> {
        Err(crate::sandbox::SetupError {
            kind: crate::policy::SetupErrorKind::Other,
            message:
                "failed to simulate a kernel without Landlock: not available in this build yet"
                    .into(),
        })
    }
    /// Never reached.
    ///
    /// # Safety
    /// Async-signal-safe.
    pub unsafe fn install(&self) -> io::Result<()> {
        Ok(())
    }
}
