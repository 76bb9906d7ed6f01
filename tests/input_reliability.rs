//! Bad input files get a clear error and exit 2, never a hang, an abort or
//! a full disk: FIFOs, devices and directories named like case files, YAML
//! tags, sizes past the limits, symlink loops.

use std::fs;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

const CASE: &str = "\
id: fs.read.listed
summary: a listed file can be read
tags: [filesystem]
run: {argv: [/bin/true]}
expect: {outcome: {exited: {code: 0}}}
";

fn sandspec() -> Command {
    let mut c = Command::cargo_bin("sandspec").unwrap();
    // A hang is the failure these tests look for: bound every command.
    c.timeout(Duration::from_secs(60));
    c
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn a_fifo_as_a_case_file_is_refused_by_list_and_run_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("case.yaml");
    mkfifo(&fifo);
    for sub in [&["list"][..], &["run", "--driver", "none"][..]] {
        sandspec()
            .args(sub)
            .arg("--cases")
            .arg(&fifo)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "case.yaml:1:1: failed to read case file: it is a FIFO, not a regular file",
            ));
    }
    // In a directory too.
    fs::write(tmp.path().join("ok.yaml"), CASE).unwrap();
    sandspec()
        .args(["list", "--cases"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("it is a FIFO, not a regular file"));
}

#[test]
fn a_device_as_a_case_file_is_refused() {
    sandspec()
        .args(["list", "--cases", "/dev/zero"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "/dev/zero:1:1: failed to read case file: it is a character device",
        ));
}

#[test]
fn a_fifo_as_a_report_or_expectation_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("run.json");
    mkfifo(&fifo);
    sandspec()
        .arg("report")
        .arg(&fifo)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("it is a FIFO, not a regular file"));
    let case = tmp.path().join("c.yaml");
    fs::write(&case, CASE).unwrap();
    sandspec()
        .args(["run", "--driver", "none", "--cases"])
        .arg(&case)
        .arg("--expect")
        .arg(&fifo)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("it is a FIFO, not a regular file"));
}

#[test]
fn a_symlink_loop_in_the_corpus_is_an_error_not_a_stack_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("a.yaml"), CASE).unwrap();
    std::os::unix::fs::symlink(".", tmp.path().join("loop")).unwrap();
    sandspec()
        .args(["list", "--cases"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a symlink loop"));
}

#[test]
fn yaml_tags_are_rejected_at_their_position() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, at, tag) in [
        (
            CASE.replace("summary: a", "summary: !custom a"),
            ":2:10:",
            "!custom",
        ),
        (
            CASE.replace("id: fs.read.listed", "id: !!str fs.read.listed"),
            ":1:5:",
            "!!str",
        ),
        (
            CASE.replace("run: {argv", "run: !!map {argv"),
            ":4:6:",
            "!!map",
        ),
        (
            CASE.replace("[/bin/true]", "[!!binary L2Jpbi90cnVl]"),
            ":4:14:",
            "!!binary",
        ),
    ] {
        let f = tmp.path().join("tagged.yaml");
        fs::write(&f, text).unwrap();
        sandspec()
            .args(["list", "--cases"])
            .arg(&f)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "tagged.yaml{at} YAML tag \"{tag}\" is not allowed"
            )));
    }
}

#[test]
fn huge_generated_and_setup_sizes_are_refused_at_load_with_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("script.yaml");
    fs::write(
        &script,
        CASE.replace(
            "run: {argv: [/bin/true]}",
            "run:\n  script:\n    interpreter: [sh]\n    generated: {size: 64G, filler: \"#\\n\", tail: \"true\\n\"}",
        ),
    )
    .unwrap();
    for sub in [&["list"][..], &["run", "--driver", "none"][..]] {
        sandspec()
            .args(sub)
            .arg("--cases")
            .arg(&script)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "script.yaml:7:23: run.script.generated.size 64G is larger than the limit of 64M",
            ))
            .stderr(predicate::str::contains("--max-script-size"));
    }
    let setup = tmp.path().join("setup.yaml");
    fs::write(
        &setup,
        format!(
            "{CASE}setup:\n  files:\n    - {{path: a, size: 1M}}\n    - {{path: b, size: 1T}}\n"
        ),
    )
    .unwrap();
    sandspec()
        .args(["run", "--driver", "none", "--cases"])
        .arg(&setup)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "setup.yaml:9:23: setup files add up to more than the limit of 256M for one case, at setup.files[1]",
        ));
    // The limits are flags: raised, the same cases load.
    for (f, flag) in [(&script, "--max-script-size"), (&setup, "--max-setup-size")] {
        sandspec()
            .args(["list", flag, "2T", "--cases"])
            .arg(f)
            .assert()
            .success()
            .stdout(predicate::str::contains("fs.read.listed"));
    }
    // And lowered, a small case is refused.
    sandspec()
        .args(["list", "--max-setup-size", "512K", "--cases"])
        .arg(&setup)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("the limit of 512K")
                .and(predicate::str::contains("setup.files[0]")),
        );
}

#[test]
fn control_bytes_in_a_case_path_are_escaped_in_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("e\x1b[31mvil\n");
    fs::create_dir(&dir).unwrap();
    let f = dir.join("bad.yaml");
    fs::write(&f, CASE.replace("run:", "rnu:")).unwrap();
    let out = sandspec()
        .args(["list", "--cases"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("e\\x1b[31mvil\\n/bad.yaml:"), "{err}");
    assert!(!err.contains('\x1b'), "a raw ESC reached stderr: {err:?}");
}

#[test]
fn yaml_tags_are_rejected_in_expectation_files_too() {
    let tmp = tempfile::tempdir().unwrap();
    let case = tmp.path().join("c.yaml");
    fs::write(&case, CASE).unwrap();
    let expect = tmp.path().join("none.yaml");
    fs::write(
        &expect,
        "driver: none\ncases:\n  fs.read.listed: !!binary aGk=\n",
    )
    .unwrap();
    sandspec()
        .args(["run", "--driver", "none", "--cases"])
        .arg(&case)
        .arg("--expect")
        .arg(&expect)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "none.yaml:3:19: YAML tag \"!!binary\" is not allowed",
        ));
}

/// The ELF reader behind `exec` lists and exec-failure messages reads only
/// the headers, never blocks on a FIFO, and survives crafted headers.
#[test]
fn the_elf_interpreter_reader_survives_crafted_files_and_fifos() {
    use sandspec::sandbox::elf_interpreter;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo);
    assert_eq!(elf_interpreter(&fifo), None);
    let mut eh = vec![0u8; 64];
    eh[..5].copy_from_slice(b"\x7fELF\x02");
    let crafted = |phoff: u64, phentsize: u16, phnum: u16| {
        let mut h = eh.clone();
        h[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&phentsize.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        h
    };
    for (i, bytes) in [
        crafted(u64::MAX, 56, 1),
        crafted(64, 0xffff, 0xffff),
        crafted(64, 56, 3),
        eh[..10].to_vec(),
        {
            // A PT_INTERP at an absurd offset and size.
            let mut h = crafted(64, 56, 1);
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&3u32.to_le_bytes());
            ph[8..16].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
            ph[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
            h.extend(ph);
            h
        },
    ]
    .into_iter()
    .enumerate()
    {
        let f = tmp.path().join(format!("elf{i}"));
        fs::write(&f, bytes).unwrap();
        assert_eq!(elf_interpreter(&f), None, "crafted file {i}");
    }
    // A real one agrees with the kernel's view (`/proc/self/exe` is this
    // test; static in the kernel-matrix guest, dynamic here).
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    if let Some(interp) = elf_interpreter(&me) {
        assert!(interp.is_absolute() && interp.exists(), "{interp:?}");
    }
}
