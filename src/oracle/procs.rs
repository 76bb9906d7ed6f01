//! The host's process table, read from /proc: who is whose child, when each
//! process started, what it calls itself, which cgroup it is in.
//!
//! A process is named by its pid *and* its start time ([`ProcKey`]): a pid
//! can be reused once its process is reaped, and a start time tells the
//! new process from the old one.

use std::collections::{BTreeMap, BTreeSet};

/// A process as /proc/<pid>/stat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// The host pid.
    pub pid: i32,
    /// The parent's pid (its thread group id).
    pub ppid: i32,
    /// The command name the kernel keeps (`comm`, at most 15 bytes; changed
    /// by exec and by `prctl(PR_SET_NAME)`).
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`…).
    pub state: char,
    /// When it started, in clock ticks since boot.
    pub start: u64,
}

/// A process, told apart from any later one with the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcKey {
    /// The pid.
    pub pid: i32,
    /// Its start time, in clock ticks since boot.
    pub start: u64,
}

impl ProcInfo {
    /// Its [`ProcKey`].
    pub fn key(&self) -> ProcKey {
        ProcKey {
            pid: self.pid,
            start: self.start,
        }
    }

    /// Whether it still runs code: neither a zombie nor dead.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of /proc/<pid>/stat.
pub fn parse_stat(pid: i32, stat: &str) -> Option<ProcInfo> {
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so it
    // ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields from 3 (state) on; starttime is field 22.
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        comm,
        state,
        start,
    })
}

/// /proc/<pid>/stat, if the process exists.
pub fn stat(pid: i32) -> Option<ProcInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Every process the harness can see, by pid.
pub fn table() -> BTreeMap<i32, ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(pid).map(|p| (pid, p)))
        .collect()
}

/// The processes below `roots` in `table` (children, grandchildren…), not
/// the roots themselves.
pub fn descendants(table: &BTreeMap<i32, ProcInfo>, roots: &[i32]) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in table.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found = BTreeSet::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        for &c in children.get(&pid).into_iter().flatten() {
            if found.insert(c) {
                todo.push(c);
            }
        }
    }
    for r in roots {
        found.remove(r);
    }
    found
}

/// The children of one thread (`/proc/<pid>/task/<tid>/children`), or
/// `None` when the kernel does not provide the file (CONFIG_PROC_CHILDREN).
pub fn thread_children(pid: i32, tid: i32) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")).ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// The processes below `roots` (not the roots themselves), walked through
/// each thread's `children` file: far quicker than reading the whole
/// process table, so a sweep can look again and again while a chain of
/// short-lived processes moves on. `None` without CONFIG_PROC_CHILDREN.
pub fn descendants_walk(roots: &[i32]) -> Option<BTreeSet<i32>> {
    let me = std::process::id() as i32;
    thread_children(me, me)?;
    let mut found = BTreeSet::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            for c in thread_children(pid, tid).unwrap_or_default() {
                if found.insert(c) {
                    todo.push(c);
                }
            }
        }
    }
    for r in roots {
        found.remove(r);
    }
    Some(found)
}

/// The cgroup2 path of `pid` (the `0::` line of /proc/<pid>/cgroup).
pub fn cgroup2_path(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Clock ticks per second, as /proc counts start times.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Now, in the clock /proc start times use (ticks since boot, boot time
/// counting suspend, as `start_boottime` does since Linux 5.5).
pub fn now_ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let hz = ticks_per_second();
    (ts.tv_sec as u64) * hz + (ts.tv_nsec as u64) * hz / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        let p = parse_stat(4242, line).unwrap();
        assert_eq!(p.comm, "a) b (c)");
        assert_eq!((p.state, p.ppid, p.start), ('S', 17, 987654));
        assert!(p.is_live());
        assert!(parse_stat(1, "1 (x").is_none());
    }

    #[test]
    fn the_harness_sees_itself_and_its_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let pid = child.id() as i32;
        let t = table();
        assert_eq!(t.get(&pid).map(|p| p.ppid), Some(me));
        assert!(descendants(&t, &[me]).contains(&pid));
        assert!(!descendants(&t, &[pid]).contains(&me));
        let mine = stat(me).unwrap();
        assert!(mine.start <= now_ticks());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
