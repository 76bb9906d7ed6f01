//! Driver names: `reference`, `none` and `reference-proto` are built in;
//! any other name is a directory `conformance/drivers/NAME/` holding a
//! `driver.yaml`:
//!
//! ```yaml
//! command: [python3, driver.py]   # run in that directory
//! ```
//!
//! A relative program path containing a slash (`./driver.sh`) is relative
//! to that directory; a bare name (`python3`) is looked up on `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::none::NoneFactory;
use super::process::ProcessFactory;
use super::reference::ReferenceFactory;
use super::DriverFactory;

/// The built-in driver names.
pub const BUILT_IN: &[&str] = &["reference", "none", "reference-proto"];

/// A resolved driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSpec {
    /// The in-process reference sandbox.
    Reference,
    /// Plain spawn, the negative control.
    None,
    /// The reference sandbox behind the protocol (`sandspec driver`).
    ReferenceProto,
    /// An external program.
    Process {
        /// The registry name (or the command line, for `--driver-cmd`).
        name: String,
        /// Program and arguments.
        argv: Vec<OsString>,
        /// Working directory.
        cwd: Option<PathBuf>,
    },
    /// An external program given as a shell command (`--driver-cmd`).
    Shell {
        /// The command line, run with `sh -c`.
        cmd: String,
    },
}

/// The contents of `driver.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverFile {
    /// Program and arguments, run in the driver's directory.
    pub command: Vec<String>,
    /// What the driver runs and how to set it up, for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// Resolves `name` against the default `conformance/drivers/`.
pub fn resolve(name: &str) -> Result<DriverSpec, String> {
    resolve_in(&crate::corpus::default_cases_dir().join("drivers"), name)
}

/// Resolves `name` against `drivers_dir`.
pub fn resolve_in(drivers_dir: &Path, name: &str) -> Result<DriverSpec, String> {
    match name {
        "reference" => return Ok(DriverSpec::Reference),
        "none" => return Ok(DriverSpec::None),
        "reference-proto" => return Ok(DriverSpec::ReferenceProto),
        _ => {}
    }
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "invalid driver name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    // Absolute: the driver is started in `dir`, so a relative program path
    // joined to a relative `dir` would be looked up a second time below it.
    let dir = std::path::absolute(drivers_dir.join(name))
        .map_err(|e| format!("failed to resolve driver {name:?}: {e}"))?;
    let file = dir.join("driver.yaml");
    let text = crate::input::read_text(&file).map_err(|e| {
        let known = known_names(drivers_dir).join(", ");
        format!("unknown driver {name:?}: {e} (known drivers: {known})")
    })?;
    crate::corpus::reject_yaml_tags(&text, &file)?;
    let parsed: DriverFile = serde_saphyr::from_str(&text).map_err(|e| {
        let (l, c) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        format!("{}:{l}:{c}: {e}", file.display())
    })?;
    let Some((program, args)) = parsed.command.split_first() else {
        return Err(format!("{}: `command` must not be empty", file.display()));
    };
    let program = if program.contains('/') && !program.starts_with('/') {
        dir.join(program).into_os_string()
    } else {
        program.into()
    };
    let mut argv = vec![program];
    argv.extend(args.iter().map(OsString::from));
    Ok(DriverSpec::Process {
        name: name.to_string(),
        argv,
        cwd: Some(dir),
    })
}

/// Built-in names plus the directories under `drivers_dir` with a
/// `driver.yaml`.
pub fn known_names(drivers_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(drivers_dir) {
        let mut more: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("driver.yaml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        more.sort();
        names.extend(more);
    }
    names
}

impl DriverSpec {
    /// A `--driver-cmd` command line.
    pub fn command(cmd: &str) -> DriverSpec {
        DriverSpec::Shell {
            cmd: cmd.to_string(),
        }
    }

    /// The name reports use.
    pub fn name(&self) -> String {
        match self {
            DriverSpec::Reference => "reference".into(),
            DriverSpec::None => "none".into(),
            DriverSpec::ReferenceProto => "reference-proto".into(),
            DriverSpec::Process { name, .. } => name.clone(),
            DriverSpec::Shell { cmd } => cmd.clone(),
        }
    }

    /// A factory; `sandspec_exe` is the `sandspec` binary (needed by
    /// `reference-proto`, and by `reference` for simulated platforms).
    pub fn factory(&self, sandspec_exe: Option<&Path>) -> Result<Box<dyn DriverFactory>, String> {
        Ok(match self {
            DriverSpec::Reference => {
                Box::new(ReferenceFactory::new(sandspec_exe.map(Path::to_path_buf)))
            }
            DriverSpec::None => Box::new(NoneFactory),
            DriverSpec::ReferenceProto => {
                let exe = sandspec_exe.ok_or(
                    "failed to set up driver reference-proto: the sandspec executable is unknown",
                )?;
                Box::new(ProcessFactory::new(
                    "reference-proto",
                    vec![exe.into(), "driver".into()],
                ))
            }
            DriverSpec::Process { name, argv, cwd } => {
                let f = ProcessFactory::new(name.clone(), argv.clone());
                Box::new(match cwd {
                    Some(d) => f.cwd(d),
                    None => f,
                })
            }
            DriverSpec::Shell { cmd } => Box::new(ProcessFactory::shell(cmd.clone(), cmd)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_resolve_without_files() {
        let none = Path::new("/nonexistent");
        assert_eq!(
            resolve_in(none, "reference").unwrap(),
            DriverSpec::Reference
        );
        assert_eq!(resolve_in(none, "none").unwrap(), DriverSpec::None);
    }

    #[test]
    fn a_registry_entry_runs_relative_programs_from_its_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("mine")).unwrap();
        std::fs::write(
            d.path().join("mine/driver.yaml"),
            "command: [./driver.sh, --fast]\n",
        )
        .unwrap();
        match resolve_in(d.path(), "mine").unwrap() {
            DriverSpec::Process { name, argv, cwd } => {
                assert_eq!(name, "mine");
                assert_eq!(argv[0], d.path().join("mine/./driver.sh").into_os_string());
                assert_eq!(argv[1], "--fast");
                assert_eq!(cwd.unwrap(), d.path().join("mine"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_relative_drivers_dir_gives_an_absolute_program_and_cwd() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("drivers/mine")).unwrap();
        std::fs::write(
            d.path().join("drivers/mine/driver.yaml"),
            "description: a driver with a description\ncommand: [./driver.sh]\n",
        )
        .unwrap();
        let relative = pathdiff(d.path().join("drivers"));
        match resolve_in(&relative, "mine").unwrap() {
            DriverSpec::Process { argv, cwd, .. } => {
                let program = std::path::PathBuf::from(&argv[0]);
                assert!(program.is_absolute(), "{program:?}");
                assert!(cwd.unwrap().is_absolute());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// `path` relative to the current directory (through `..` as needed).
    fn pathdiff(path: std::path::PathBuf) -> std::path::PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let mut up = std::path::PathBuf::new();
        for _ in cwd.components().skip(1) {
            up.push("..");
        }
        up.join(path.strip_prefix("/").unwrap())
    }

    #[test]
    fn unknown_names_and_fields_are_errors_that_say_where() {
        let d = tempfile::tempdir().unwrap();
        let e = resolve_in(d.path(), "nosuch").unwrap_err();
        assert!(
            e.contains("unknown driver") && e.contains("reference"),
            "{e}"
        );
        assert!(resolve_in(d.path(), "../etc").is_err());
        std::fs::create_dir(d.path().join("bad")).unwrap();
        std::fs::write(
            d.path().join("bad/driver.yaml"),
            "command: [x]\ncomand: [y]\n",
        )
        .unwrap();
        let e = resolve_in(d.path(), "bad").unwrap_err();
        assert!(e.contains("driver.yaml:2:"), "{e}");
    }
}
