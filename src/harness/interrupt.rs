//! Interrupts: SIGINT, SIGTERM and SIGHUP, as CI systems send them to
//! cancel a job (SIGINT, then SIGTERM a few seconds later, then SIGKILL).
//!
//! [`install`] puts a handler on the three signals. The handler only
//! records the signal and writes one byte to a pipe (both
//! async-signal-safe); a thread of this module reads the pipe and does the
//! rest outside signal context: it wakes [`wait`]ers and calls every hook
//! registered with [`on_interrupt`] (a running sandbox's canceller, a
//! driver's teardown). Code that polls checks [`requested`].
//!
//! The first signal asks for an orderly stop: stop dispatching, tear down
//! what runs, write the reports. A second one (CI's follow-up SIGTERM) asks
//! for it *now*: hooks are called again with [`Escalation::Now`], and
//! teardown stops waiting for graceful exits.
//!
//! [`request`] does what a signal does, without one: for tests, and for a
//! library user who wants to stop a run.
//!
//! Handlers are reset to the default by `execve`, so programs the harness
//! starts are not affected; the reference sandbox also keeps them out of
//! its supervisor and command before exec.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The signals that interrupt a run.
pub const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first signal received (0: none yet).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// How many interrupts were received.
static COUNT: AtomicU32 = AtomicU32::new(0);
/// The write end of the pipe the handler wakes the thread through.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// How urgent an interrupt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The first interrupt: stop in order (a grace period for what runs).
    Orderly,
    /// A repeated interrupt: kill what is left without waiting.
    Now,
}

type Hook = Box<dyn Fn(i32, Escalation) + Send + Sync>;

struct State {
    hooks: Mutex<BTreeMap<u64, std::sync::Arc<Hook>>>,
    next_id: AtomicU64,
    /// Notified on every interrupt (the mutex guards nothing but the wait).
    cv: Condvar,
    cv_lock: Mutex<()>,
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| State {
        hooks: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(1),
        cv: Condvar::new(),
        cv_lock: Mutex::new(()),
    })
}

/// The first interrupting signal received, if any.
pub fn requested() -> Option<i32> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// How urgent the interrupt is, if there was one.
pub fn escalation() -> Option<Escalation> {
    match COUNT.load(Ordering::SeqCst) {
        0 => None,
        1 => Some(Escalation::Orderly),
        _ => Some(Escalation::Now),
    }
}

/// The exit code for an interrupted command: 128 + the signal, as shells
/// report a process killed by it (130 for SIGINT, 143 for SIGTERM, 129 for
/// SIGHUP).
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The signal's name, `SIGINT`.
pub fn name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The reason of a case the interrupt kept from running.
pub fn not_run(signal: i32) -> String {
    format!("not run: the run was interrupted by {}", name(signal))
}

/// Waits up to `timeout` for an interrupt; its signal, or `None`.
pub fn wait(timeout: Duration) -> Option<i32> {
    let st = state();
    let deadline = Instant::now() + timeout;
    let mut g = st.cv_lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(s) = requested() {
            return Some(s);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        g = st
            .cv
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Unregisters its hook when dropped.
#[must_use = "the hook is removed when this is dropped"]
pub struct HookGuard(u64);

impl Drop for HookGuard {
    fn drop(&mut self) {
        if let Ok(mut h) = state().hooks.lock() {
            h.remove(&self.0);
        }
    }
}

/// Calls `hook(signal, escalation)` on every interrupt while the guard
/// lives, and at once if an interrupt came before. Hooks run on the
/// interrupt thread: they must be quick and must not block (signal a
/// process, cancel a run, set a flag).
pub fn on_interrupt(hook: impl Fn(i32, Escalation) + Send + Sync + 'static) -> HookGuard {
    let st = state();
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let hook: std::sync::Arc<Hook> = std::sync::Arc::new(Box::new(hook));
    if let Ok(mut h) = st.hooks.lock() {
        h.insert(id, std::sync::Arc::clone(&hook));
    }
    // Registered first, checked second: an interrupt in between calls the
    // hook twice (harmless), never zero times.
    if let (Some(sig), Some(esc)) = (requested(), escalation()) {
        hook(sig, esc);
    }
    HookGuard(id)
}

/// Records an interrupt by `signal` and runs the hooks, as if the signal
/// had arrived.
pub fn request(signal: i32) {
    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    dispatch(signal);
}

fn dispatch(signal: i32) {
    let st = state();
    {
        let _g = st.cv_lock.lock().unwrap_or_else(|p| p.into_inner());
        st.cv.notify_all();
    }
    let esc = escalation().unwrap_or(Escalation::Orderly);
    // Copied out, so a hook may register or drop hooks.
    let hooks: Vec<std::sync::Arc<Hook>> = match st.hooks.lock() {
        Ok(h) => h.values().cloned().collect(),
        Err(p) => p.into_inner().values().cloned().collect(),
    };
    for h in hooks {
        h(signal, esc);
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe operations: atomics and write(2). errno is
    // saved and restored, since the interrupted code may be about to read it.
    // SAFETY: __errno_location returns the calling thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = signal as u8;
        // SAFETY: write(2) of one byte from a local into a pipe we own; a
        // full pipe (O_NONBLOCK) drops the byte, and the flags above are
        // already set.
        unsafe {
            libc::write(fd, std::ptr::addr_of!(b).cast(), 1);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Catches SIGINT, SIGTERM and SIGHUP for the rest of the process's life.
/// Idempotent. A signal that was ignored when the process started (`nohup`,
/// a background job of a non-interactive shell) stays ignored.
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install_once().map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

fn install_once() -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(std::io::Error::from)?;
    // The reading end blocks: the thread sleeps in read(2).
    nix::fcntl::fcntl(
        &r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(std::io::Error::from)?;
    let mut reader = std::fs::File::from(r);
    std::thread::Builder::new()
        .name("sandspec-interrupt".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            while let Ok(1) = reader.read(&mut b) {
                dispatch(i32::from(b[0]));
            }
        })?;
    // The write end lives as long as the process (the handler uses it).
    let w: OwnedFd = w;
    WAKE_FD.store(w.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(w);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        let sig = Signal::try_from(sig).map_err(std::io::Error::from)?;
        // SAFETY: the handler only touches atomics and calls write(2).
        let old = unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
        if old.handler() == SigHandler::SigIgn {
            // SAFETY: restoring the disposition the process started with.
            unsafe { sigaction(sig, &old) }.map_err(std::io::Error::from)?;
        }
    }
    Ok(())
}
