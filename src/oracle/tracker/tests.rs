//! Survivors found by the host's means: a daemon that renamed itself, one
//! that exec'd another program, orphans and cgroup members, and that a
//! process outside the run is never blamed.

use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::*;

/// Tests here sweep the harness's orphans: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `sh -c script` to its end and returns the pid it printed: the
/// script leaves a background process behind, re-parented to the harness.
fn leave_behind(script: &str) -> i32 {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{script}: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the script prints a pid")
}

fn alive(pid: i32) -> bool {
    procs::stat(pid).is_some_and(|p| p.is_live())
}

#[test]
fn an_orphan_that_exec_d_another_program_and_renamed_itself_is_found_and_killed() {
    let _s = serial();
    if Tracking::get().orphans.is_err() {
        eprintln!("skipped: {}", Tracking::get().describe());
        return;
    }
    let run = RunTracker::start(None);
    // A background job that execs sleep under another name (nothing of
    // the shell's argv is left), orphaned when the shell exits.
    let pid = leave_behind("(exec sleep 30) >/dev/null 2>&1 & echo $!");
    assert!(alive(pid));
    // The shell may exit before its background child has exec'd (slow
    // machines, TCG in the kernel matrix): the case is an exec'd orphan.
    let t0 = std::time::Instant::now();
    while procs::stat(pid).is_some_and(|p| p.comm != "sleep") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{pid} never exec'd sleep"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let sweep = run.finish(Duration::from_millis(100));
    let s = sweep
        .survivors
        .iter()
        .find(|s| s.pid == pid)
        .unwrap_or_else(|| panic!("{pid} not found: {:?}", sweep.survivors));
    assert!(s.found_by.contains(&FoundBy::Orphan), "{s:?}");
    assert_eq!(s.comm, "sleep");
    assert!(!alive(pid), "the survivor was not killed");
    // Reaped too: no zombie left behind.
    assert!(procs::stat(pid).is_none(), "{:?}", procs::stat(pid));
}

#[test]
fn a_process_started_before_the_run_is_not_blamed_on_it() {
    let _s = serial();
    if Tracking::get().orphans.is_err() {
        return;
    }
    let before = leave_behind("sleep 30 >/dev/null & echo $!");
    // Start times are in clock ticks: let one pass.
    std::thread::sleep(Duration::from_millis(60));
    let run = RunTracker::start(None);
    let sweep = run.finish(Duration::from_millis(100));
    assert!(
        sweep.survivors.iter().all(|s| s.pid != before),
        "{:?}",
        sweep.survivors
    );
    assert!(alive(before));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before),
        nix::sys::signal::Signal::SIGKILL,
    );
    reap(before);
}

#[test]
fn a_run_cgroup_finds_what_a_child_in_it_started() {
    let _s = serial();
    let run = RunTracker::start(None);
    let Some(cg) = run.cgroup() else {
        eprintln!("skipped: no cgroup ({:?})", run.cgroup_error());
        return;
    };
    let procs_fd = cg.procs_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!"])
        .stdin(Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: one write(2) of a static buffer, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let sweep = run.finish(Duration::from_millis(100));
    let s = sweep.survivors.iter().find(|s| s.pid == pid).unwrap();
    assert!(s.found_by.contains(&FoundBy::Cgroup), "{s:?}");
    assert!(!alive(pid));
}

#[test]
fn an_external_driver_s_new_descendants_are_found_and_its_old_ones_are_not() {
    let _s = serial();
    // The "driver": a shell that starts a helper, then (on a signal to go
    // on, here its stdin) a daemon, then waits.
    let mut driver = Command::new("sh")
        .args(["-c", "sleep 30 & read x; sleep 31 & echo $!; wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _own = own_child(driver.id());
    std::thread::sleep(Duration::from_millis(100));
    let table = procs::table();
    let old: Vec<i32> = procs::descendants(&table, &[driver.id() as i32])
        .into_iter()
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    let mut run = RunTracker::start(None);
    run.attach_driver(driver.id());
    use std::io::{BufRead, Write};
    let mut stdin = driver.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(driver.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let new: i32 = line.trim().parse().unwrap();
    let sweep = run.finish(Duration::from_millis(100));
    let pids: Vec<i32> = sweep.survivors.iter().map(|s| s.pid).collect();
    assert!(pids.contains(&new), "{pids:?}");
    assert!(!pids.contains(&old[0]), "{pids:?}");
    assert!(!pids.contains(&(driver.id() as i32)), "{pids:?}");
    assert!(alive(old[0]) && alive(driver.id() as i32));
    // The driver went back where it was, out of the run's (gone) cgroup.
    let home = procs::cgroup2_path(driver.id() as i32).unwrap_or_default();
    assert!(!home.contains(super::super::cgroup::PARENT), "{home}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old[0]),
        nix::sys::signal::Signal::SIGKILL,
    );
    driver.kill().unwrap();
    driver.wait().unwrap();
}

#[test]
fn an_orphan_blamed_on_a_run_that_swept_first_still_fails_the_other() {
    let _s = serial();
    // An orphan outside every run cgroup is told by its start time, with
    // cgroups or without; two overlapping runs both get it.
    if Tracking::get().orphans.is_err() {
        return;
    }
    let a = RunTracker::start(None);
    let b = RunTracker::start(None);
    let pid = leave_behind("sleep 30 >/dev/null & echo $!");
    let first = b.finish(Duration::from_millis(100));
    assert!(first.survivors.iter().any(|s| s.pid == pid));
    assert!(!alive(pid));
    let second = a.finish(Duration::from_millis(100));
    assert!(
        second.survivors.iter().any(|s| s.pid == pid),
        "{:?}",
        second.survivors
    );
}
