//! `io-uring HOST:PORT`: a TCP connection made through io_uring alone, so
//! that whether it arrives is for the harness's oracle to see. The socket
//! is made by `IORING_OP_SOCKET` (Linux 5.19+; older kernels: `socket(2)`,
//! said in the report's `socket_via`) and connected by `IORING_OP_CONNECT`.
//! `value` says how far it got: 0 the ring was refused, 1 the socket, 2 the
//! connect, 3 connected (a backend may refuse io_uring itself, or let the
//! ring work and refuse what it does). No library: one ring of four
//! entries, driven by hand.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::report::Report;

const OP: &str = "io-uring";
const IORING_OFF_SQ_RING: libc::off_t = 0;
const IORING_OFF_CQ_RING: libc::off_t = 0x800_0000;
const IORING_OFF_SQES: libc::off_t = 0x1000_0000;
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_OP_CONNECT: u8 = 16;
const IORING_OP_SOCKET: u8 = 45;

/// `struct io_uring_params` (120 bytes).
#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: [u32; 8],
    sq_user_addr: u64,
    cq_off: [u32; 8],
    cq_user_addr: u64,
}

/// `struct io_uring_sqe` (64 bytes), the fields used here.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    rw_flags: u32,
    user_data: u64,
    pad: [u64; 3],
}

/// `struct io_uring_cqe` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// A mapping, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: usize, offset: libc::off_t) -> io::Result<Map> {
        // SAFETY: a fresh shared mapping of the ring fd at a documented
        // offset; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The u32 at byte offset `off` (a ring field the kernel shares).
    fn u32_at(&self, off: u32) -> *mut u32 {
        assert!(
            off as usize + 4 <= self.len,
            "ring offset out of the mapping"
        );
        // SAFETY: in bounds (checked above) and 4-byte aligned (the
        // kernel's ring offsets are).
        unsafe { self.ptr.add(off as usize).cast() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A ring with its three mappings.
struct Ring {
    fd: OwnedFd,
    sq: Map,
    cq: Option<Map>,
    sqes: Map,
    p: Params,
}

impl Ring {
    fn new() -> io::Result<Ring> {
        let mut p = Params::default();
        // SAFETY: `p` is a writable struct io_uring_params, alive for the call.
        let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut p as *mut Params) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a non-negative return is a new fd owned by this process.
        let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };
        let sq_len = p.sq_off[6] as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off[5] as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
        let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
        let sq = Map::new(
            &fd,
            if single { sq_len.max(cq_len) } else { sq_len },
            IORING_OFF_SQ_RING,
        )?;
        let cq = if single {
            None
        } else {
            Some(Map::new(&fd, cq_len, IORING_OFF_CQ_RING)?)
        };
        let sqes = Map::new(
            &fd,
            p.sq_entries as usize * std::mem::size_of::<Sqe>(),
            IORING_OFF_SQES,
        )?;
        Ok(Ring {
            fd,
            sq,
            cq,
            sqes,
            p,
        })
    }

    /// Submits one entry and waits for its completion: its `res`.
    fn submit(&self, sqe: Sqe) -> io::Result<i32> {
        use std::sync::atomic::{fence, Ordering};
        let mask = self.p.sq_off[2];
        // SAFETY: the offsets are the kernel's, inside the SQ ring mapping.
        unsafe {
            let mask = *self.sq.u32_at(mask);
            let tail_p = self.sq.u32_at(self.p.sq_off[1]);
            let tail = std::ptr::read_volatile(tail_p);
            let idx = tail & mask;
            let slot = self.sqes.ptr.cast::<Sqe>().add(idx as usize);
            std::ptr::write_volatile(slot, sqe);
            let array = self.sq.u32_at(self.p.sq_off[6] + idx * 4);
            std::ptr::write_volatile(array, idx);
            fence(Ordering::Release);
            std::ptr::write_volatile(tail_p, tail.wrapping_add(1));
        }
        // SAFETY: io_uring_enter on our ring fd with no signal mask.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd.as_raw_fd(),
                1u32,
                1u32,
                IORING_ENTER_GETEVENTS,
                std::ptr::null::<libc::c_void>(),
                0usize,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let cq = self.cq.as_ref().unwrap_or(&self.sq);
        // SAFETY: the offsets are the kernel's, inside the CQ ring mapping;
        // GETEVENTS returned, so one completion is there.
        unsafe {
            fence(Ordering::Acquire);
            let mask = *cq.u32_at(self.p.cq_off[2]);
            let head_p = cq.u32_at(self.p.cq_off[0]);
            let head = std::ptr::read_volatile(head_p);
            let cqe = std::ptr::read_volatile(
                cq.ptr
                    .add(self.p.cq_off[5] as usize)
                    .cast::<Cqe>()
                    .add((head & mask) as usize),
            );
            std::ptr::write_volatile(head_p, head.wrapping_add(1));
            Ok(cqe.res)
        }
    }
}

/// `io-uring HOST:PORT`.
pub fn connect(addr: SocketAddr) -> Report {
    let SocketAddr::V4(v4) = addr else {
        return Report::failed(
            OP,
            Some(libc::EAFNOSUPPORT),
            "an IPv4 address is needed".into(),
        );
    };
    let ring = match Ring::new() {
        Ok(r) => r,
        Err(e) => return Report::os_error(OP, &e).value(0),
    };
    let res = ring.submit(Sqe {
        opcode: IORING_OP_SOCKET,
        fd: libc::AF_INET,
        off: libc::SOCK_STREAM as u64,
        ..Sqe::default()
    });
    let (sock, via) = match res {
        Ok(fd) if fd >= 0 => {
            // SAFETY: a non-negative result is a new socket fd owned here.
            (unsafe { OwnedFd::from_raw_fd(fd) }, "io_uring")
        }
        // Before Linux 5.19 the ring has no socket operation.
        Ok(e) if -e == libc::EINVAL => {
            // SAFETY: socket(2) takes no pointers; the result is checked.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Report::os_error(OP, &io::Error::last_os_error())
                    .value(1)
                    .with("socket_via", "socket(2)".into());
            }
            // SAFETY: just created, owned here.
            (unsafe { OwnedFd::from_raw_fd(fd) }, "socket(2)")
        }
        Ok(e) => return Report::os_error(OP, &io::Error::from_raw_os_error(-e)).value(1),
        Err(e) => return Report::os_error(OP, &e).value(1),
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let res = ring.submit(Sqe {
        opcode: IORING_OP_CONNECT,
        fd: sock.as_raw_fd(),
        addr: &sa as *const libc::sockaddr_in as u64,
        off: std::mem::size_of::<libc::sockaddr_in>() as u64,
        ..Sqe::default()
    });
    let report = match res {
        Ok(0) => Report::ok(OP, Some(3)),
        Ok(e) => Report::os_error(OP, &io::Error::from_raw_os_error(-e)).value(2),
        Err(e) => Report::os_error(OP, &e).value(2),
    };
    report.with("socket_via", via.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_structs_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<Params>(), 120);
        assert_eq!(std::mem::size_of::<Sqe>(), 64);
        assert_eq!(std::mem::size_of::<Cqe>(), 16);
    }
}
