//! Resource operations: alloc, mmap, threads, open-many, cpu-burn,
//! setrlimit.

use std::fs::File;
use std::io;
use std::time::Duration;

use crate::report::Report;
use sandspec::sandbox::limits::Resource;

/// `alloc BYTES`: mmap anonymous memory and write to every page, so the
/// memory is really committed. mmap rather than malloc: a refusal is an
/// errno (ENOMEM), not an abort.
pub fn alloc(bytes: u64) -> Report {
    const OP: &str = "alloc";
    let Ok(len) = usize::try_from(bytes) else {
        return Report::os_error(OP, &io::Error::from_raw_os_error(libc::ENOMEM));
    };
    if len == 0 {
        return Report::ok(OP, Some(0));
    }
    // SAFETY: an anonymous private mapping at an address the kernel picks;
    // no existing memory is affected. The result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    // SAFETY: sysconf takes no pointers.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    let base = ptr.cast::<u8>();
    for off in (0..len).step_by(page) {
        // SAFETY: `off < len`, inside the mapping just created, which is
        // readable and writable. Volatile so the writes are not elided.
        unsafe { base.add(off).write_volatile(1) };
    }
    // SAFETY: unmapping exactly the mapping created above.
    unsafe { libc::munmap(ptr, len) };
    Report::ok(OP, Some(bytes as i64))
}

/// `open-many N`: open /dev/null up to N times, keeping them open;
/// value = how many opened, errno = the first failure.
pub fn open_many(n: u64) -> Report {
    let mut files = Vec::new();
    for _ in 0..n {
        match File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => return Report::os_error("open-many", &e).value(files.len() as i64),
        }
    }
    Report::ok("open-many", Some(files.len() as i64))
}

/// CPU time (user + system) used by this process so far, as
/// `getrusage` tells it: the scheduler's precise runtime.
fn rusage_cpu_time() -> io::Result<Duration> {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// The calling process's CPUCLOCK_PROF clock: `MAKE_PROCESS_CPUCLOCK(0,
/// CPUCLOCK_PROF)` in the kernel's posix-timers.h, `(~0 << 3) | 0`.
const PROCESS_PROF_CLOCK: libc::clockid_t = -8;

/// CPU time (user + system) used by this process so far, as RLIMIT_CPU
/// counts it: the kernel's PROF clock, sampled on its tick. Under CPU
/// contention it can lag the precise runtime a lot (2.0 s against 5.1 s
/// measured here with three spinners on two CPUs), so a burn measured by
/// `getrusage` alone can finish before the limit fires.
fn prof_cpu_time() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an unknown clock is EINVAL.
    if unsafe { libc::clock_gettime(PROCESS_PROF_CLOCK, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// `cpu-burn SECS`: spin until SECS of CPU time were used by both clocks a
/// CPU limit may count with (the kernel's PROF clock behind RLIMIT_CPU and
/// the precise runtime behind getrusage and cgroups); value = CPU
/// milliseconds used, the lesser of the two. Under a CPU limit below SECS
/// the kernel kills it first, however busy the machine is.
pub fn cpu_burn(secs: Duration) -> Report {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        match prof_cpu_time().and_then(|p| Ok(p.min(rusage_cpu_time()?))) {
            Ok(used) if used >= secs => {
                std::hint::black_box(x);
                return Report::ok("cpu-burn", Some(used.as_millis() as i64));
            }
            Ok(_) => {}
            Err(e) => return Report::os_error("cpu-burn", &e),
        }
        for _ in 0..100_000 {
            x = std::hint::black_box(x.rotate_left(7) ^ x.wrapping_mul(31));
        }
    }
}

/// How long each `threads` thread lives: long enough for all N to exist at
/// once, as with `fork-many`.
const THREAD_MS: u64 = 250;

/// `threads N`: start N threads (64 KiB stacks) that each sleep 0.25 s;
/// stop at the first failure; join all. value = threads started. A
/// process limit that counts tasks counts these too.
pub fn threads(n: u64) -> Report {
    const OP: &str = "threads";
    // Allocated up front: under a tight limit nothing else should fail.
    let mut handles = Vec::with_capacity(n.min(100_000) as usize);
    let mut failure = None;
    for _ in 0..n {
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| std::thread::sleep(Duration::from_millis(THREAD_MS)));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let started = handles.len() as i64;
    for h in handles {
        let _ = h.join();
    }
    match failure {
        None => Report::ok(OP, Some(started)),
        Some(e) => Report::os_error(OP, &e).value(started),
    }
}

/// `mmap SIZE`: reserve SIZE bytes of anonymous memory without touching
/// it (MAP_NORESERVE), then unmap. An address-space limit refuses it; a
/// limit on used memory does not notice it. value = SIZE.
pub fn mmap(bytes: u64) -> Report {
    const OP: &str = "mmap";
    let Ok(len) = usize::try_from(bytes) else {
        return Report::os_error(OP, &io::Error::from_raw_os_error(libc::ENOMEM));
    };
    if len == 0 {
        return Report::ok(OP, Some(0));
    }
    // SAFETY: an anonymous private mapping at an address the kernel picks.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    // SAFETY: unmapping exactly the mapping created above.
    unsafe { libc::munmap(ptr, len) };
    Report::ok(OP, Some(bytes as i64))
}

/// Resource names for `setrlimit`.
const RESOURCES: &[(&str, Resource)] = &[
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("as", libc::RLIMIT_AS),
    ("data", libc::RLIMIT_DATA),
    ("cpu", libc::RLIMIT_CPU),
    ("fsize", libc::RLIMIT_FSIZE),
    ("core", libc::RLIMIT_CORE),
    ("stack", libc::RLIMIT_STACK),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
];

/// A resource name (`nofile`, `nproc`, `as`, ...).
pub fn resource(s: &str) -> Result<Resource, String> {
    RESOURCES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            let known: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
            format!("unknown resource {s:?} (known: {})", known.join(" "))
        })
}

fn limit_value(v: libc::rlim_t) -> serde_json::Value {
    if v == libc::RLIM_INFINITY {
        serde_json::Value::from("unlimited")
    } else {
        serde_json::Value::from(v)
    }
}

/// `setrlimit RES VALUE`: set both the soft and the hard limit of RES to
/// VALUE (a number, or `unlimited`): raising a hard limit needs privilege.
/// "soft" and "hard" = the limits before.
pub fn setrlimit(res: Resource, value: libc::rlim_t) -> Report {
    const OP: &str = "setrlimit";
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(res, &mut old) } != 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    let new = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a valid rlimit.
    let report = if unsafe { libc::setrlimit(res, &new) } == 0 {
        Report::ok(OP, None)
    } else {
        Report::os_error(OP, &io::Error::last_os_error())
    };
    report
        .with("soft", limit_value(old.rlim_cur))
        .with("hard", limit_value(old.rlim_max))
}
