//! `sandspec sandbox` explains itself: edge values are refused with their
//! valid range (exit 2, the command never runs), an exec failure says
//! whether the program was not found, not executable or refused by the
//! policy's exec rules, control bytes never reach the terminal raw, and
//! arguments that are not UTF-8 reach the command unchanged.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command as Proc, Output};

use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sandbox(args: &[&OsStr]) -> Output {
    Proc::new(sandspec())
        .arg("sandbox")
        .args(args)
        .output()
        .unwrap()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn edge_values_are_refused_with_the_valid_range() {
    let marker = scratch();
    let ran = marker.path().join("ran");
    for (flag, value, range) in [
        ("--timeout", "18000000000000000000", "at most 365 days"),
        ("--timeout", "0", "from 1ms to 365 days"),
        ("--memory", "16777216T", "out of range"),
        ("--memory", "4K", "from 1M to 128P"),
        ("--cpu-secs", "18446744073709551615", "from 1 to 4294967295"),
        ("--cpu-secs", "0", "from 1 to 4294967295"),
        ("--tcp-connect", "0", "from 1 to 65535"),
        ("--tcp-bind", "65536", "from 1 to 65535"),
        ("--max-procs", "0", "from 1 to 4194304"),
        ("--max-files", "0", "(fs.nr_open)"),
        ("--max-files", "18446744073709551615", "(fs.nr_open)"),
        ("--max-output", "5G", "from 0 to 4G"),
    ] {
        let o = sandbox(&[
            os(flag),
            os(value),
            os("--"),
            os("/usr/bin/touch"),
            ran.as_os_str(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")) && err.contains(range),
            "{flag} {value}: expected the range {range:?} in: {err}"
        );
        assert!(!ran.exists(), "{flag} {value}: the command ran");
    }
}

#[test]
fn the_largest_valid_values_are_accepted() {
    if !landlock_or_refusal() {
        return;
    }
    let p = base_policy();
    let mut c = Proc::new(sandspec());
    c.arg("sandbox");
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in &p.exec {
        c.arg("--exec").arg(e);
    }
    c.args(["--timeout", "31536000", "--memory", "128P", "--cpu-secs"])
        .arg("4294967295");
    // A port list needs Landlock's TCP rules (ABI 4); below, the sandbox
    // refuses it (fail-closed), which cli_sandbox checks.
    if abi() >= 4 {
        c.args(["--tcp-connect", "65535"]);
    }
    let o = c
        .args(["--max-output", "4G", "--"])
        .arg(probe())
        .args(["exit", "3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// Runs `cmd` with exec rules for the probe's loader only (not the file
/// itself, unless `exec` lists it).
fn exec_failure(exec: &[&str], cmd: &OsStr) -> Output {
    let mut c = Proc::new(sandspec());
    c.args(["sandbox", "--read", "/usr", "--read", "/etc"]);
    for e in exec {
        c.arg("--exec").arg(e);
    }
    c.arg("--").arg(cmd).output().unwrap()
}

#[test]
fn an_exec_refused_by_the_policy_says_so_with_the_path() {
    if !landlock_or_refusal() {
        return;
    }
    // The reproduction: readable, but not below an exec path.
    let o = exec_failure(&["/lib", "/lib64"], os("/usr/bin/true"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(126), "{err}");
    assert!(
        err.contains("sandspec: failed to execute /usr/bin/true: refused by the policy's exec rules: /usr/bin/true")
            // "must both be" when the file has an ELF interpreter (a
            // dynamic /usr/bin/true); "must be" for a static one (the
            // kernel matrix's busybox).
            && (err.contains("must both be below an exec path")
                || err.contains("/usr/bin/true must be below an exec path")),
        "{err}"
    );
}

#[test]
fn a_missing_or_unexecutable_program_is_told_apart_from_a_refusal() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let all = ["/usr", "/lib", "/lib64", "/bin"];
    let missing = d.path().join("missing");
    let o = exec_failure(&all, missing.as_os_str());
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("not found: {} does not exist", missing.display())),
        "{}",
        stderr(&o)
    );

    let plain = d.path().join("plain");
    std::fs::write(&plain, "not a program\n").unwrap();
    let dir = d.path().to_str().unwrap();
    let o = exec_failure(&[dir, "/usr", "/lib", "/lib64"], plain.as_os_str());
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not executable:") && stderr(&o).contains("execute permission"),
        "{}",
        stderr(&o)
    );

    let script = d.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    chmod(&script, 0o755);
    let o = exec_failure(&[dir], script.as_os_str());
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not found: its interpreter /nonexistent/interpreter does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn control_bytes_in_a_program_path_are_escaped() {
    if !landlock_or_refusal() {
        return;
    }
    let o = exec_failure(&["/usr"], os("/nonexistent/\x1b[2J\x07bell\nline"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(127), "{err}");
    assert!(
        err.contains("/nonexistent/\\x1b[2J\\x07bell\\nline"),
        "{err}"
    );
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    // A bare name looked up in PATH too.
    let o = exec_failure(&["/usr"], os("no-such-\x1b]0;title\x07"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(127), "{err}");
    assert!(
        err.contains("no-such-\\x1b]0;title\\x07: command not found"),
        "{err}"
    );
}

#[test]
fn arguments_that_are_not_utf8_reach_the_command_unchanged() {
    if !landlock_or_refusal() {
        return;
    }
    let d = scratch();
    let dir = d.path().to_str().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9-\xff\x01");
    let target = d.path().join(name);
    let p = base_policy();
    let mut c = Proc::new(sandspec());
    c.args(["sandbox", "--write", dir]);
    for r in &p.read {
        c.arg("--read").arg(r);
    }
    for e in &p.exec {
        c.arg("--exec").arg(e);
    }
    let o = c
        .arg("--")
        .arg(probe())
        .arg("write")
        .arg(&target)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(target.exists(), "no file named by the non-UTF-8 argument");
}

/// `sandspec sandbox --max-procs` and `sandspec run` (its reports) say when
/// the process limit is RLIMIT_NPROC, counted over the whole uid: both, or
/// neither, for the same user; never for root (a pids cgroup).
#[test]
fn a_uid_wide_process_limit_is_said_by_the_cli_and_the_report() {
    if !landlock_or_refusal() || !is_root() {
        return;
    }
    let d = scratch();
    let case = d.path().join("c.yaml");
    std::fs::write(
        &case,
        "id: np.limit\nsummary: a process limit\ntags: [limits]\n\
         policy: {read: [/usr, /lib, /lib64, /etc], exec: [/lib, /lib64], limits: {processes: 8}}\n\
         run: {argv: [\"${PROBE}\", exit, \"0\"]}\nexpect: {outcome: {exited: {code: 0}}}\n",
    )
    .unwrap();
    let p = base_policy();
    let says = |nobody: bool| -> (bool, bool) {
        let mut c = if nobody {
            let mut c = Proc::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(sandspec());
            c
        } else {
            Proc::new(sandspec())
        };
        c.arg("sandbox");
        for r in &p.read {
            c.arg("--read").arg(r);
        }
        for e in &p.exec {
            c.arg("--exec").arg(e);
        }
        let o = c
            .args(["--max-procs", "4", "--"])
            .arg(probe())
            .args(["exit", "0"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let cli = stderr(&o).contains("note: --max-procs 4 is enforced with RLIMIT_NPROC");
        let json = d.path().join(format!("r-{nobody}.json"));
        let mut c = if nobody {
            let mut c = Proc::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(sandspec());
            c
        } else {
            Proc::new(sandspec())
        };
        let o = c
            .args(["run", "--cases"])
            .arg(&case)
            .arg("--json")
            .arg(&json)
            .current_dir(d.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let report = std::fs::read_to_string(&json).unwrap();
        (
            cli,
            report.contains("limits.processes is enforced with RLIMIT_NPROC"),
        )
    };
    assert_eq!(says(false), (false, false), "root gets a pids cgroup");
    if Proc::new("runuser")
        .args(["-u", "nobody", "--", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        let (cli, report) = says(true);
        assert_eq!(cli, report, "the CLI and the report disagree");
    }
}
