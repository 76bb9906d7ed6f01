//! The command G, between its creation and exec.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use super::raw::*;
use super::supervisor::{CommandArgs, Rlimit64};
use super::{Stage, FD_CGROUP, FD_RULESET};

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
        sys!(libc::SYS_setpgid, 0, 0);
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
        if let Some(prog) = &plan.seccomp {
            if let Err(e) = check(sys!(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog as *const libc::sock_fprog
            )) {
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
