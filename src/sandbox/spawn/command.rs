//! The command G, between its creation and exec.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use super::raw::*;
use super::supervisor::{CommandArgs, Rlimit64};
use super::{CapsPlan, ChildPlan, Stage, FD_CGROUP, FD_RULESET};
use crate::sandbox::seccomp::{SlotKind, MAX_PATCHED_LEN};

// ---------------------------------------------------------------------------
// The command G, between its creation and exec.

/// G's entry point.
///
/// # Safety
/// `arg` is a [`CommandArgs`] in S's suspended frame.
pub(super) unsafe extern "C" fn command_entry(arg: *mut c_void) -> ! {
    // SAFETY: S passed a pointer to a live CommandArgs that stays put while
    // G runs.
    let args = unsafe { &*arg.cast::<CommandArgs<'_>>() };
    command(args)
}

fn command(args: &CommandArgs<'_>) -> ! {
    let plan = args.plan;
    let fail = |stage: Stage, errno: i32| -> ! {
        args.shared.command_errno.store(errno, Ordering::Relaxed);
        args.shared
            .command_stage
            .store(stage as u32, Ordering::Relaxed);
        exit(127)
    };
    // SAFETY (whole block): raw syscalls on integers, on live locals, and on
    // the plan's buffers, which the caller keeps alive and unchanged.
    unsafe {
        // Die with S: if S is killed before G execs, the caller may reuse
        // the plan's memory (module docs).
        if check(sys!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL)).is_err()
            || sys!(libc::SYS_getppid) != args.supervisor
        {
            exit(127);
        }
        // A session of its own: no controlling terminal, so no TIOCSTI
        // into the caller's (CVE-2017-5226), no terminal signals from it.
        if plan.on.new_session {
            if let Err(e) = check(sys!(libc::SYS_setsid)) {
                fail(Stage::Session, e);
            }
        } else {
            sys!(libc::SYS_setpgid, 0, 0);
        }
        if plan.cgroup_procs >= 0 {
            match check(sys!(libc::SYS_write, FD_CGROUP, b"0".as_ptr(), 1)) {
                Ok(1) => {}
                Ok(_) => fail(Stage::Cgroup, libc::EIO),
                Err(e) => fail(Stage::Cgroup, e),
            }
        }
        for r in plan.rlimits.iter().flatten() {
            // rlim_t is 32 bits wide on 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            let rl = Rlimit64 {
                cur: r.soft as u64,
                max: r.hard as u64,
            };
            let res = sys!(
                libc::SYS_prlimit64,
                0,
                r.resource,
                &rl as *const Rlimit64,
                0
            );
            if let Err(e) = check(res) {
                fail(Stage::Rlimit, e);
            }
        }
        if let Err(e) = check(sys!(libc::SYS_chdir, plan.cwd)) {
            fail(Stage::Chdir, e);
        }
        if let Err(e) = check(sys!(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
            fail(Stage::NoNewPrivs, e);
        }
        if let Err(e) = check(sys!(libc::SYS_landlock_restrict_self, FD_RULESET, 0)) {
            fail(Stage::Landlock, e);
        }
        if let Some(caps) = plan.caps {
            if let Err(e) = drop_capabilities(caps) {
                fail(Stage::Capabilities, e);
            }
        }
        if let Some(prog) = &plan.seccomp {
            if let Err(e) = load_filter(plan, prog, args.supervisor) {
                fail(Stage::Seccomp, e);
            }
        }
        // Handlers first, then the mask: no caller handler may run here.
        if args.shared.handlers_cleared.load(Ordering::Relaxed) {
            set_default(libc::SIGPIPE);
        } else {
            reset_signal_handlers();
        }
        let empty: u64 = 0;
        sys!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0,
            SIGSET_SIZE
        );
        let r = sys!(libc::SYS_execve, plan.path, plan.argv, plan.envp);
        fail(Stage::Exec, check(r).err().unwrap_or(libc::EIO))
    }
}

/// `SECBIT_NOROOT`, `SECBIT_NO_SETUID_FIXUP`, `SECBIT_NO_CAP_AMBIENT_RAISE`
/// and the lock bits of those three and of `SECBIT_KEEP_CAPS` (off): uid 0
/// gets no capability back at exec, and nothing can undo that.
const SECUREBITS_LOCKED: usize = 0b1110_1111;

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties every capability set of G. With `CAP_SETPCAP`: securebits
/// locked, bounding set emptied (one prctl per capability); always: the
/// ambient set cleared, then effective, permitted and inheritable emptied
/// (which needs no capability). Returns the errno of a failure.
fn drop_capabilities(caps: CapsPlan) -> Result<(), i32> {
    // SAFETY (whole body): prctl/capset with integers and live locals.
    unsafe {
        if caps.setpcap {
            check(sys!(
                libc::SYS_prctl,
                libc::PR_SET_SECUREBITS,
                SECUREBITS_LOCKED
            ))?;
            for cap in 0..=caps.last_cap {
                check(sys!(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap))?;
            }
        }
        check(sys!(
            libc::SYS_prctl,
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0
        ))?;
        let header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let empty = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        check(sys!(
            libc::SYS_capset,
            &header as *const CapHeader,
            empty.as_ptr()
        ))?;
    }
    Ok(())
}

/// Loads the sandbox's filter. Below Landlock ABI 6 the program holds this
/// run's supervisor and caller pids: it is copied onto G's stack (the
/// shared program is read by concurrent runs) and patched there.
fn load_filter(
    plan: &ChildPlan<'_>,
    prog: &libc::sock_fprog,
    supervisor: isize,
) -> Result<(), i32> {
    let install = |p: *const libc::sock_fprog| {
        // SAFETY: the kernel copies the program from `p`, which points to
        // live memory for the duration of the call.
        check(unsafe { sys!(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, p) }).map(|_| ())
    };
    if plan.seccomp_slots.is_empty() {
        return install(prog);
    }
    let len = prog.len as usize;
    if len > MAX_PATCHED_LEN {
        return Err(libc::E2BIG);
    }
    let zero = libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut copy = [zero; MAX_PATCHED_LEN];
    // SAFETY: the plan's program has `len` instructions, alive and
    // unchanged until S is reaped; `copy` has room for them.
    let src = unsafe { std::slice::from_raw_parts(prog.filter, len) };
    for (d, s) in copy.iter_mut().zip(src) {
        *d = *s;
    }
    for slot in plan.seccomp_slots {
        let pid = match slot.kind {
            SlotKind::Supervisor => supervisor as u32,
            SlotKind::Caller => plan.parent_pid as u32,
        };
        match copy.get_mut(slot.index) {
            Some(insn) => insn.k = pid,
            None => return Err(libc::EINVAL),
        }
    }
    let patched = libc::sock_fprog {
        len: prog.len,
        filter: copy.as_mut_ptr(),
    };
    install(&patched)
}
