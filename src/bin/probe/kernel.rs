//! Kernel attack surface a sandboxed command rarely needs: BPF programs,
//! perf events, userfaultfd; and `caps`, what privileges the probe holds.
//! Every object made here is closed before the report.

use std::io;

use serde_json::Value;

use crate::args::Args;
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  bpf-prog-load               perf-open [task-clock|cycles]                   userfaultfd
  caps";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "bpf-prog-load" => {
            a.expect(0, 0, "")?;
            bpf_prog_load()
        }
        "perf-open" => {
            a.expect(0, 1, "[task-clock|cycles]")?;
            let event = match a.os(0).map(|_| a.str(0)).transpose()? {
                None | Some("task-clock") => PerfEvent::TaskClock,
                Some("cycles") => PerfEvent::Cycles,
                Some(other) => return Err(format!("unknown event {other:?}")),
            };
            perf_open(event)
        }
        "userfaultfd" => {
            a.expect(0, 0, "")?;
            userfaultfd()
        }
        "caps" => {
            a.expect(0, 0, "")?;
            caps()
        }
        _ => return Ok(None),
    }))
}

/// linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `r0 = 0` (BPF_ALU64 | BPF_MOV | BPF_K) and `exit` (BPF_JMP | BPF_EXIT).
static PROGRAM: [u64; 2] = [0xb7, 0x95];

/// `bpf-prog-load`: load the smallest socket filter (`r0 = 0; exit`) with
/// bpf(BPF_PROG_LOAD); the program is closed at once, attached nowhere.
pub fn bpf_prog_load() -> Report {
    // union bpf_attr, the BPF_PROG_LOAD part: prog_type, insn_cnt, insns,
    // license at offsets 0, 4, 8, 16; the rest zero. The kernel accepts a
    // larger attr if the bytes it does not know are zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SOCKET_FILTER.to_ne_bytes());
    attr[4..8].copy_from_slice(&(PROGRAM.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(PROGRAM.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(c"GPL".as_ptr() as u64).to_ne_bytes());
    // SAFETY: `attr` is a valid bpf_attr whose pointers (the program and
    // the license) point at live statics.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    match sys::owned_fd(fd) {
        Ok(_) => Report::ok("bpf-prog-load", None),
        Err(e) => Report::os_error("bpf-prog-load", &e),
    }
}

/// Which event `perf-open` counts.
#[derive(Debug, Clone, Copy)]
pub enum PerfEvent {
    /// PERF_TYPE_SOFTWARE / PERF_COUNT_SW_TASK_CLOCK: works in any VM.
    TaskClock,
    /// PERF_TYPE_HARDWARE / PERF_COUNT_HW_CPU_CYCLES: needs a PMU.
    Cycles,
}

/// `perf-open [task-clock|cycles]`: perf_event_open on the probe itself,
/// any CPU, user space only (the least privileged request), disabled;
/// closed at once.
pub fn perf_open(event: PerfEvent) -> Report {
    // struct perf_event_attr: type u32 @0, size u32 @4, config u64 @8, the
    // flag bits u64 @40 (disabled = bit 0, exclude_kernel = 5,
    // exclude_hv = 6). 128 bytes, zero beyond.
    let (ty, config) = match event {
        PerfEvent::TaskClock => (1u32, 1u64),
        PerfEvent::Cycles => (0u32, 0u64),
    };
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&ty.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&config.to_ne_bytes());
    let flags: u64 = 1 | 1 << 5 | 1 << 6;
    attr[40..48].copy_from_slice(&flags.to_ne_bytes());
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: `attr` is a valid perf_event_attr of the size it states.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    match sys::owned_fd(fd) {
        Ok(_) => Report::ok("perf-open", None),
        Err(e) => Report::os_error("perf-open", &e),
    }
}

/// UFFD_USER_MODE_ONLY (linux/userfaultfd.h, Linux 5.11): faults from
/// user space only, which unprivileged users may ask for even when
/// `vm.unprivileged_userfaultfd` is 0.
const UFFD_USER_MODE_ONLY: libc::c_int = 1;

/// `userfaultfd`: userfaultfd(O_CLOEXEC | UFFD_USER_MODE_ONLY), or without
/// the flag on kernels that do not know it (EINVAL); closed at once.
/// "user_mode_only" says which one worked.
pub fn userfaultfd() -> Report {
    let open = |flags: libc::c_int| {
        // SAFETY: userfaultfd takes flags only.
        sys::owned_fd(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })
    };
    let (result, user_mode_only) = match open(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(libc::O_CLOEXEC), false),
        other => (other, true),
    };
    match result {
        Ok(_) => {
            Report::ok("userfaultfd", None).with("user_mode_only", Value::from(user_mode_only))
        }
        Err(e) => Report::os_error("userfaultfd", &e),
    }
}

/// linux/capability.h.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT_IS_SET: libc::c_ulong = 1;

fn hex(v: u64) -> Value {
    Value::from(format!("{v:016x}"))
}

/// `caps`: the probe's capability sets as /proc/self/status shows them
/// ("cap_eff", "cap_prm", "cap_inh", "cap_bnd", "cap_amb", 16 hex digits),
/// "securebits", "no_new_privs", "uid" and "euid", all from syscalls (no
/// /proc needed). value = how many effective capabilities.
pub fn caps() -> Report {
    const OP: &str = "caps";
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget with a v3 header reads it and fills two Data structs.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    let eff = join(|d| d.effective);
    let (mut bnd, mut amb) = (0u64, 0u64);
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; an unknown cap is EINVAL.
        let in_bnd = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if in_bnd < 0 {
            break;
        }
        if in_bnd == 1 {
            bnd |= 1 << cap;
        }
        // SAFETY: as above.
        let in_amb = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                PR_CAP_AMBIENT_IS_SET,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if in_amb == 1 {
            amb |= 1 << cap;
        }
    }
    // SAFETY: prctl reads with no pointers; getuid/geteuid cannot fail.
    let (securebits, nnp, uid, euid) = unsafe {
        (
            libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            libc::getuid(),
            libc::geteuid(),
        )
    };
    Report::ok(OP, Some(i64::from(eff.count_ones())))
        .with("cap_eff", hex(eff))
        .with("cap_prm", hex(join(|d| d.permitted)))
        .with("cap_inh", hex(join(|d| d.inheritable)))
        .with("cap_bnd", hex(bnd))
        .with("cap_amb", hex(amb))
        .with("securebits", Value::from(securebits))
        .with("no_new_privs", Value::from(nnp == 1))
        .with("uid", Value::from(uid))
        .with("euid", Value::from(euid))
}
