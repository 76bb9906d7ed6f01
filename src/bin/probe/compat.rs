//! `compat-socket`: a UDP socket made through the other system call ABIs
//! an x86_64 kernel accepts from a 64-bit process. A seccomp filter that
//! checks syscall numbers without checking the architecture in the filter
//! data (or the x32 bit) lets these through.
//!
//! - `i386`: `int 0x80` with the i386 `socketcall(2)` multiplexer;
//! - `i386-direct`: `int 0x80` with the i386 `socket`/`sendto` numbers
//!   (359 and 369, since Linux 4.3);
//! - `x32`: the `syscall` instruction with bit 30 (`__X32_SYSCALL_BIT`) set.
//!
//! The calls run in a forked child: a kernel without IA-32 emulation may
//! answer `int 0x80` with a signal, which must not take the probe down.

use std::io;
use std::net::SocketAddrV4;

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  compat-socket i386|i386-direct|x32 [HOST:PORT]";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "compat-socket" => {
            a.expect(1, 2, "i386|i386-direct|x32 [HOST:PORT]")?;
            let abi = match a.str(0)? {
                "i386" => Abi::I386Socketcall,
                "i386-direct" => Abi::I386Direct,
                "x32" => Abi::X32,
                other => return Err(format!("unknown ABI {other:?} (i386, i386-direct, x32)")),
            };
            let to = match a.os(1) {
                None => None,
                Some(_) => match args::addr(a.str(1)?)? {
                    std::net::SocketAddr::V4(v4) => Some(v4),
                    v6 => return Err(format!("compat-socket sends over IPv4 only, not {v6}")),
                },
            };
            compat_socket(abi, to)
        }
        _ => return Ok(None),
    }))
}

/// Which entry into the kernel.
#[derive(Debug, Clone, Copy)]
pub enum Abi {
    I386Socketcall,
    I386Direct,
    X32,
}

/// What the child got: the socket's fd (or -errno), then the bytes sent
/// (or -errno; 0 when nothing was to be sent).
struct Outcome {
    socket: i32,
    sent: i32,
}

/// `compat-socket ABI [HOST:PORT]`: socket(AF_INET, SOCK_DGRAM, 0) through
/// ABI, then, if HOST:PORT is given, one datagram "sandspec" to it through
/// the same ABI. ok = every call succeeded; value = bytes sent (null when
/// only the socket was made); "abi" names the entry used. A child killed by
/// a signal (no IA-32 emulation) is a failure with field "signal".
pub fn compat_socket(abi: Abi, to: Option<SocketAddrV4>) -> Report {
    const OP: &str = "compat-socket";
    let name = match abi {
        Abi::I386Socketcall => "i386",
        Abi::I386Direct => "i386-direct",
        Abi::X32 => "x32",
    };
    let (rd, wr) = match sys::cloexec_pipe() {
        Ok(p) => p,
        Err(e) => return Report::os_error(OP, &e),
    };
    let status = sys::in_child(|| {
        use std::os::fd::AsRawFd;
        let out = run(abi, to);
        sys::write_i32(wr.as_raw_fd(), out.socket);
        sys::write_i32(wr.as_raw_fd(), out.sent);
        0
    });
    drop(wr);
    let status = match status {
        Ok(s) => s,
        Err(e) => return Report::os_error(OP, &e),
    };
    let got = (sys::read_i32(&rd), sys::read_i32(&rd));
    let report = match got {
        (Ok(Some(socket)), Ok(Some(sent))) => {
            if socket < 0 {
                Report::os_error(OP, &io::Error::from_raw_os_error(-socket))
            } else if sent < 0 {
                Report::os_error(OP, &io::Error::from_raw_os_error(-sent))
            } else {
                Report::ok(OP, to.map(|_| i64::from(sent)))
            }
        }
        _ if libc::WIFSIGNALED(status) => Report::failed(
            OP,
            None,
            format!(
                "the {name} system call entry killed the caller with signal {}",
                libc::WTERMSIG(status)
            ),
        )
        .with("signal", Value::from(libc::WTERMSIG(status))),
        _ => Report::failed(OP, None, "the child exited without a result".into()),
    };
    report.with("abi", Value::from(name))
}

#[cfg(target_arch = "x86_64")]
fn run(abi: Abi, to: Option<SocketAddrV4>) -> Outcome {
    // Pointers handed to the i386 entry are 32 bits wide: everything the
    // kernel reads lives in one page mapped below 4 GiB.
    // SAFETY: a fresh anonymous mapping; the result is checked.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Outcome {
            socket: -sys::errno(),
            sent: 0,
        };
    }
    let base = page.cast::<u8>();
    let low = |off: usize| base as u32 + off as u32;
    let payload = b"sandspec";
    // Layout: [0..32) socketcall args, [64..80) sockaddr_in, [128..) data.
    // SAFETY: all offsets are inside the 4096-byte mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(128), payload.len());
        if let Some(to) = to {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*to.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            base.add(64)
                .cast::<libc::sockaddr_in>()
                .write_unaligned(sin);
        }
    }
    let args = base.cast::<u32>();
    let socket = match abi {
        Abi::I386Socketcall => {
            // SAFETY: three u32 arguments inside the mapping.
            unsafe {
                args.write(libc::AF_INET as u32);
                args.add(1).write(libc::SOCK_DGRAM as u32);
                args.add(2).write(0);
            }
            int80(I386_SOCKETCALL, [SYS_SOCKET, low(0), 0, 0, 0, 0])
        }
        Abi::I386Direct => int80(
            I386_SOCKET,
            [libc::AF_INET as u32, libc::SOCK_DGRAM as u32, 0, 0, 0, 0],
        ),
        Abi::X32 => x32(
            X32_SOCKET,
            [libc::AF_INET as u64, libc::SOCK_DGRAM as u64, 0],
        ),
    };
    if socket < 0 || to.is_none() {
        return Outcome { socket, sent: 0 };
    }
    let fd = socket as u32;
    let len = payload.len() as u32;
    let sin_len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    let sent = match abi {
        Abi::I386Socketcall => {
            // SAFETY: six u32 arguments inside the mapping.
            unsafe {
                for (i, v) in [fd, low(128), len, 0, low(64), sin_len].iter().enumerate() {
                    args.add(i).write(*v);
                }
            }
            int80(I386_SOCKETCALL, [SYS_SENDTO, low(0), 0, 0, 0, 0])
        }
        Abi::I386Direct => int80(I386_SENDTO, [fd, low(128), len, 0, low(64), sin_len]),
        Abi::X32 => {
            // SAFETY: the pointers are inside the mapping, the fd is ours.
            let r = unsafe {
                libc::syscall(
                    X32_BIT | X32_SENDTO,
                    fd as libc::c_long,
                    low(128) as libc::c_long,
                    len as libc::c_long,
                    0 as libc::c_long,
                    low(64) as libc::c_long,
                    sin_len as libc::c_long,
                )
            };
            if r < 0 {
                -sys::errno()
            } else {
                r as i32
            }
        }
    };
    Outcome { socket, sent }
}

#[cfg(not(target_arch = "x86_64"))]
fn run(_abi: Abi, _to: Option<SocketAddrV4>) -> Outcome {
    Outcome {
        socket: -libc::ENOSYS,
        sent: 0,
    }
}

/// i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl, linux/net.h).
#[cfg(target_arch = "x86_64")]
const I386_SOCKETCALL: u32 = 102;
#[cfg(target_arch = "x86_64")]
const I386_SOCKET: u32 = 359;
#[cfg(target_arch = "x86_64")]
const I386_SENDTO: u32 = 369;
#[cfg(target_arch = "x86_64")]
const SYS_SOCKET: u32 = 1;
#[cfg(target_arch = "x86_64")]
const SYS_SENDTO: u32 = 11;
/// x32 numbers are the x86_64 ones with `__X32_SYSCALL_BIT`.
#[cfg(target_arch = "x86_64")]
const X32_BIT: libc::c_long = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const X32_SOCKET: libc::c_long = 41;
#[cfg(target_arch = "x86_64")]
const X32_SENDTO: libc::c_long = 44;

/// `int 0x80` with six 32-bit arguments (ebx, ecx, edx, esi, edi, ebp);
/// the result, negative for -errno.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, a: [u32; 6]) -> i32 {
    let ret: u32;
    // SAFETY: the i386 entry reads the argument registers and, for the
    // calls made here, memory inside the probe's own low mapping. rbx and
    // rbp cannot be asm operands, so they are saved, loaded and restored
    // inside the block; the block uses the stack (no `nostack`), so the
    // compiler keeps the red zone free.
    unsafe {
        std::arch::asm!(
            "push rbp",
            "push rbx",
            "mov ebx, {a0:e}",
            "mov ebp, {a5:e}",
            "int 0x80",
            "pop rbx",
            "pop rbp",
            a0 = in(reg) a[0],
            a5 = in(reg) a[5],
            inlateout("eax") nr => ret,
            in("ecx") a[1],
            in("edx") a[2],
            in("esi") a[3],
            in("edi") a[4],
        );
    }
    ret as i32
}

/// The x32 entry: the x86_64 `syscall` with the x32 bit; -errno on failure.
#[cfg(target_arch = "x86_64")]
fn x32(nr: libc::c_long, a: [u64; 3]) -> i32 {
    // SAFETY: socket(2) arguments are plain integers.
    let r = unsafe {
        libc::syscall(
            X32_BIT | nr,
            a[0] as libc::c_long,
            a[1] as libc::c_long,
            a[2] as libc::c_long,
        )
    };
    if r < 0 {
        -sys::errno()
    } else {
        r as i32
    }
}
