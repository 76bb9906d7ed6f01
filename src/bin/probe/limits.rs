//! Resource operations: alloc, open-many, cpu-burn.

use std::fs::File;
use std::io;
use std::time::Duration;

use crate::report::Report;

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

/// CPU time (user + system) used by this process so far.
fn cpu_time() -> io::Result<Duration> {
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

/// `cpu-burn SECS`: spin until SECS of CPU time were used; value = CPU
/// milliseconds used. Under RLIMIT_CPU the kernel kills it first.
pub fn cpu_burn(secs: Duration) -> Report {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        match cpu_time() {
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
