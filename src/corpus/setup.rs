//! Making a case real: its scratch files ([`materialize`]) and its command
//! ([`command`]).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::case::{GeneratedBody, Run, Setup, SetupFile};
use crate::policy::{Command, Program, Script};

/// Creates `setup.dirs`, `setup.files` (literal or generated content, mode)
/// and `setup.symlinks` under `scratch`, in that order. Parent directories
/// are created as needed. Setup paths must be relative and stay inside
/// `scratch`; symlink targets may point anywhere.
pub fn materialize(setup: &Setup, scratch: &Path) -> io::Result<()> {
    for dir in &setup.dirs {
        let p = inside(scratch, dir)?;
        fs::create_dir_all(&p).map_err(|e| context(e, "create directory", &p))?;
    }
    for file in &setup.files {
        write_file(file, scratch)?;
    }
    for link in &setup.symlinks {
        let p = inside(scratch, &link.path)?;
        make_parent(&p)?;
        symlink(&link.target, &p).map_err(|e| context(e, "create symlink", &p))?;
    }
    Ok(())
}

fn write_file(file: &SetupFile, scratch: &Path) -> io::Result<()> {
    let p = inside(scratch, &file.path)?;
    make_parent(&p)?;
    let mut f = fs::File::create(&p).map_err(|e| context(e, "create file", &p))?;
    match (&file.content, file.size) {
        (Some(_), Some(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "failed to create file {}: both `content` and `size` given",
                    p.display()
                ),
            ))
        }
        (Some(text), None) => f.write_all(text.as_bytes()),
        (None, Some(size)) => write_filler(&mut f, size.0),
        (None, None) => Ok(()),
    }
    .map_err(|e| context(e, "write file", &p))?;
    drop(f);
    if let Some(mode) = &file.mode {
        let bits = parse_mode(mode).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("failed to set mode of {}: {e}", p.display()),
            )
        })?;
        fs::set_permissions(&p, fs::Permissions::from_mode(bits))
            .map_err(|e| context(e, "set mode of", &p))?;
    }
    Ok(())
}

fn write_filler(f: &mut fs::File, mut size: u64) -> io::Result<()> {
    let chunk = [b'x'; 64 * 1024];
    while size > 0 {
        let n = size.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        size -= n as u64;
    }
    Ok(())
}

/// Parses an octal mode such as `"0755"` or `"644"`.
pub fn parse_mode(mode: &str) -> Result<u32, String> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    match u32::from_str_radix(digits, 8) {
        Ok(bits) if !digits.is_empty() && bits <= 0o7777 => Ok(bits),
        _ => Err(format!(
            "invalid mode {mode:?}: expected octal digits such as \"0755\""
        )),
    }
}

/// Checks that a setup path is relative and has no `..`; the message says why not.
pub fn check_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("setup path is empty".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "setup path {path:?} must be relative to the scratch directory"
                ))
            }
            Component::ParentDir => {
                return Err(format!("setup path {path:?} must not contain `..`"))
            }
        }
    }
    Ok(())
}

fn inside(scratch: &Path, rel: &str) -> io::Result<PathBuf> {
    check_relative(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(scratch.join(rel))
}

fn make_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(dir) => fs::create_dir_all(dir).map_err(|e| context(e, "create directory", dir)),
        None => Ok(()),
    }
}

fn context(e: io::Error, what: &str, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("failed to {what} {}: {e}", p.display()))
}

/// The command for a case's `run`: its argv, or its script with the literal
/// or generated body; `stdin` becomes the command's input.
pub fn command(run: &Run) -> Result<Command, String> {
    let program = match (&run.argv, &run.script) {
        (Some(argv), None) if !argv.is_empty() => {
            Program::Argv(argv.iter().map(Into::into).collect())
        }
        (Some(_), None) => return Err("run.argv must not be empty".into()),
        (None, Some(script)) => {
            if script.interpreter.is_empty() {
                return Err("run.script.interpreter must not be empty".into());
            }
            let body = match (&script.body, &script.generated) {
                (Some(body), None) => body.clone(),
                (None, Some(g)) => generate(g)?,
                _ => return Err("run.script needs exactly one of `body` and `generated`".into()),
            };
            Program::Script(Script {
                interpreter: script.interpreter.clone(),
                body,
            })
        }
        _ => return Err("run needs exactly one of `argv` and `script`".into()),
    };
    Ok(Command {
        program,
        stdin: run.stdin.clone().unwrap_or_default().into_bytes(),
    })
}

/// `filler` repeated until, with `tail` appended, the body is at least
/// `size` bytes; then `tail`.
pub fn generate(g: &GeneratedBody) -> Result<String, String> {
    if g.filler.is_empty() {
        return Err("run.script.generated.filler must not be empty".into());
    }
    let size = usize::try_from(g.size.0)
        .map_err(|_| format!("run.script.generated.size {} is too large", g.size))?;
    let need = size.saturating_sub(g.tail.len());
    let copies = need.div_ceil(g.filler.len());
    // The loader bounds the size (see `bounds`); a Case built by other code
    // gets an error here rather than an abort on a failed allocation.
    let mut body = String::new();
    copies
        .checked_mul(g.filler.len())
        .and_then(|n| n.checked_add(g.tail.len()))
        .and_then(|n| body.try_reserve_exact(n).ok())
        .ok_or_else(|| {
            format!(
                "failed to generate the script body: {} bytes do not fit in memory",
                g.size
            )
        })?;
    for _ in 0..copies {
        body.push_str(&g.filler);
    }
    body.push_str(&g.tail);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::case::{RunScript, SetupSymlink};
    use crate::policy::Size;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn materialize_creates_dirs_files_modes_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let setup = Setup {
            dirs: vec!["a/b".into()],
            files: vec![
                SetupFile {
                    path: "a/f.txt".into(),
                    content: Some("hello".into()),
                    size: None,
                    mode: None,
                },
                SetupFile {
                    path: "deep/big".into(),
                    content: None,
                    size: Some(Size(100_000)),
                    mode: Some("0600".into()),
                },
                SetupFile {
                    path: "run.sh".into(),
                    content: Some("#!/bin/sh\n".into()),
                    size: None,
                    mode: Some("0755".into()),
                },
            ],
            symlinks: vec![SetupSymlink {
                path: "a/out".into(),
                target: "/etc/hostname".into(),
            }],
        };
        materialize(&setup, tmp.path()).unwrap();
        assert!(tmp.path().join("a/b").is_dir());
        assert_eq!(
            fs::read_to_string(tmp.path().join("a/f.txt")).unwrap(),
            "hello"
        );
        let big = fs::read(tmp.path().join("deep/big")).unwrap();
        assert_eq!(big.len(), 100_000);
        assert!(big.iter().all(|&b| b == b'x'));
        assert_eq!(
            fs::metadata(tmp.path().join("deep/big")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::metadata(tmp.path().join("run.sh")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::read_link(tmp.path().join("a/out")).unwrap(),
            PathBuf::from("/etc/hostname")
        );
    }

    #[test]
    fn materialize_refuses_paths_leaving_the_scratch_directory() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/x", "a/../../x"] {
            let setup = Setup {
                dirs: vec![bad.into()],
                ..Setup::default()
            };
            let e = materialize(&setup, tmp.path()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn parse_mode_accepts_octal_only() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("rwx").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("77777").is_err());
    }

    #[test]
    fn command_builds_argv_and_stdin() {
        let run = Run {
            argv: Some(vec!["/bin/echo".into(), "hi".into()]),
            script: None,
            stdin: Some("in".into()),
            fds: vec![],
        };
        let c = command(&run).unwrap();
        assert_eq!(
            c.program,
            Program::Argv(vec!["/bin/echo".into(), "hi".into()])
        );
        assert_eq!(c.stdin, b"in");
    }

    #[test]
    fn command_generates_a_script_body_of_at_least_the_size_ending_with_the_tail() {
        let run = Run {
            argv: None,
            script: Some(RunScript {
                interpreter: vec!["python3".into()],
                body: None,
                generated: Some(GeneratedBody {
                    size: Size(4 << 20),
                    filler: "x = 1\n".into(),
                    tail: "print('done')\n".into(),
                }),
            }),
            stdin: None,
            fds: vec![],
        };
        let Program::Script(s) = command(&run).unwrap().program else {
            panic!("not a script")
        };
        assert!(s.body.len() >= 4 << 20);
        assert!(s.body.len() < (4 << 20) + 6 + 14);
        assert!(s.body.ends_with("x = 1\nprint('done')\n"));
    }

    #[test]
    fn command_rejects_neither_or_both_programs() {
        let none = Run {
            argv: None,
            script: None,
            stdin: None,
            fds: vec![],
        };
        assert!(command(&none).is_err());
        let empty = Run {
            argv: Some(vec![]),
            script: None,
            stdin: None,
            fds: vec![],
        };
        assert!(command(&empty).is_err());
    }
}
