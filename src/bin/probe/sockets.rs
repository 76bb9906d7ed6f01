//! Socket families beyond TCP and UDP: a generic `socket` call, a
//! read-only netlink route dump, and pathname unix sockets.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use serde_json::Value;

use crate::args::{self, Args};
use crate::report::Report;
use crate::sys;

/// Usage lines of this module's operations.
pub const USAGE: &str = "\
  socket FAMILY TYPE [PROTO]  netlink-route-dump          unix-connect PATH [stream|dgram]";

/// Runs `op` if it is one of this module's.
pub fn dispatch(op: &str, a: &Args) -> Result<Option<Report>, String> {
    Ok(Some(match op {
        "socket" => {
            a.expect(2, 3, "FAMILY TYPE [PROTO]")?;
            let family = family(a.str(0)?)?;
            let ty = sock_type(a.str(1)?)?;
            let proto = match a.os(2) {
                Some(_) => protocol(a.str(2)?)?,
                None => 0,
            };
            socket(family, ty, proto)
        }
        "netlink-route-dump" => {
            a.expect(0, 0, "")?;
            netlink_route_dump()
        }
        "unix-connect" => {
            a.expect(1, 2, "PATH [stream|dgram]")?;
            let dgram = match a.os(1).map(|_| a.str(1)).transpose()? {
                None | Some("stream") => false,
                Some("dgram") => true,
                Some(other) => return Err(format!("unknown unix socket type {other:?}")),
            };
            let path = a.os(0).map(|p| p.as_bytes()).unwrap_or_default();
            unix_connect(path, dgram)
        }
        _ => return Ok(None),
    }))
}

/// Address families by name, or a number.
const FAMILIES: &[(&str, i32)] = &[
    ("unix", libc::AF_UNIX),
    ("inet", libc::AF_INET),
    ("inet6", libc::AF_INET6),
    ("netlink", libc::AF_NETLINK),
    ("packet", libc::AF_PACKET),
    ("vsock", libc::AF_VSOCK),
    ("alg", libc::AF_ALG),
    ("key", libc::AF_KEY),
    ("bluetooth", libc::AF_BLUETOOTH),
    ("xdp", libc::AF_XDP),
    ("can", libc::AF_CAN),
    ("tipc", libc::AF_TIPC),
    ("rds", libc::AF_RDS),
    ("llc", libc::AF_LLC),
    ("x25", libc::AF_X25),
    ("ax25", libc::AF_AX25),
    ("appletalk", libc::AF_APPLETALK),
    ("phonet", libc::AF_PHONET),
    ("ieee802154", libc::AF_IEEE802154),
    ("caif", libc::AF_CAIF),
    ("nfc", libc::AF_NFC),
    ("qipcrtr", 42),
    ("smc", 43),
    ("mctp", 45),
];

/// The obsolete packet socket type (linux/socket.h), still accepted by
/// AF_INET and AF_PACKET with CAP_NET_RAW.
const SOCK_PACKET: i32 = 10;

/// Socket types by name (`packet` is the obsolete SOCK_PACKET), or a number.
const TYPES: &[(&str, i32)] = &[
    ("stream", libc::SOCK_STREAM),
    ("dgram", libc::SOCK_DGRAM),
    ("raw", libc::SOCK_RAW),
    ("seqpacket", libc::SOCK_SEQPACKET),
    ("rdm", libc::SOCK_RDM),
    ("packet", SOCK_PACKET),
];

/// Protocols by name, or a number. `all` is ETH_P_ALL in network order,
/// what a packet socket that captures everything asks for.
const PROTOCOLS: &[(&str, i32)] = &[
    ("ip", 0),
    ("icmp", libc::IPPROTO_ICMP),
    ("tcp", libc::IPPROTO_TCP),
    ("udp", libc::IPPROTO_UDP),
    ("icmpv6", libc::IPPROTO_ICMPV6),
    ("sctp", libc::IPPROTO_SCTP),
    ("udplite", libc::IPPROTO_UDPLITE),
    ("mptcp", libc::IPPROTO_MPTCP),
    ("route", libc::NETLINK_ROUTE),
    ("audit", libc::NETLINK_AUDIT),
    ("uevent", libc::NETLINK_KOBJECT_UEVENT),
    ("netfilter", libc::NETLINK_NETFILTER),
    ("sock_diag", libc::NETLINK_SOCK_DIAG),
    ("generic", libc::NETLINK_GENERIC),
    ("all", (libc::ETH_P_ALL as u16).to_be() as i32),
];

fn lookup(table: &[(&str, i32)], what: &str, s: &str) -> Result<i32, String> {
    if let Ok(n) = args::count(s) {
        return i32::try_from(n).map_err(|_| format!("invalid {what} {s:?}"));
    }
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown {what} {s:?} (known: {}, or a number)",
                known.join(" ")
            )
        })
}

/// An address family name or number.
pub fn family(s: &str) -> Result<i32, String> {
    lookup(FAMILIES, "family", s)
}

/// A socket type name or number.
pub fn sock_type(s: &str) -> Result<i32, String> {
    lookup(TYPES, "socket type", s)
}

/// A protocol name or number.
pub fn protocol(s: &str) -> Result<i32, String> {
    lookup(PROTOCOLS, "protocol", s)
}

/// `socket FAMILY TYPE [PROTO]`: socket(2), closed at once. Fields
/// "family", "type", "protocol": the numbers asked for.
pub fn socket(family: i32, ty: i32, proto: i32) -> Report {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let ret = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    let report = match sys::owned_fd(ret.into()) {
        Ok(fd) => {
            drop(fd);
            Report::ok("socket", None)
        }
        Err(e) => Report::os_error("socket", &e),
    };
    report
        .with("family", Value::from(family))
        .with("type", Value::from(ty))
        .with("protocol", Value::from(proto))
}

/// Netlink message header and type constants (linux/netlink.h,
/// linux/rtnetlink.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
/// How long the dump may take before the probe gives up.
const DUMP_TIMEOUT_MS: libc::c_int = 2000;

/// `netlink-route-dump`: ask the kernel for every network interface
/// (RTM_GETLINK with NLM_F_DUMP on a NETLINK_ROUTE socket) and read the
/// answer; read-only. value = interfaces; "links" = their names.
pub fn netlink_route_dump() -> Report {
    const OP: &str = "netlink-route-dump";
    match dump_links() {
        Ok(names) => Report::ok(OP, Some(names.len() as i64)).with("links", Value::from(names)),
        Err(e) => Report::os_error(OP, &e),
    }
}

fn dump_links() -> io::Result<Vec<String>> {
    // SAFETY: socket(2) takes no pointers.
    let fd = sys::owned_fd(
        unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        }
        .into(),
    )?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN) as u32;
    req.extend_from_slice(&len.to_ne_bytes());
    req.extend_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    req.extend_from_slice(&[0u8; IFINFOMSG_LEN]); // AF_UNSPEC: every link
                                                  // SAFETY: sockaddr_nl is plain data; zero is the kernel's address.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    sys::check(sent as libc::c_long)?;
    let mut names = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        wait_readable(&fd)?;
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = sys::check(n as libc::c_long)? as usize;
        if parse_links(&buf[..n], &mut names)? {
            return Ok(names);
        }
    }
}

fn wait_readable(fd: &OwnedFd) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, DUMP_TIMEOUT_MS) } {
        0 => Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
        r if r < 0 => sys::last(),
        _ => Ok(()),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Appends the interface names in one datagram of netlink messages;
/// true once the dump is done. A malformed message is EBADMSG.
fn parse_links(mut b: &[u8], names: &mut Vec<String>) -> io::Result<bool> {
    let bad = || io::Error::from_raw_os_error(libc::EBADMSG);
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0) as usize;
        let ty = u16_at(b, 4);
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad());
        }
        let body = &b[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let err = if body.len() >= 4 {
                    i32::from_ne_bytes([body[0], body[1], body[2], body[3]])
                } else {
                    -libc::EBADMSG
                };
                return Err(io::Error::from_raw_os_error(-err));
            }
            t if t == libc::RTM_NEWLINK => {
                if let Some(name) = ifname(body) {
                    names.push(name);
                }
            }
            _ => {}
        }
        let step = (len + 3) & !3;
        b = &b[step.min(b.len())..];
    }
    Ok(false)
}

/// IFLA_IFNAME from the attributes after an ifinfomsg.
fn ifname(body: &[u8]) -> Option<String> {
    let mut attrs = body.get(IFINFOMSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = u16_at(attrs, 0) as usize;
        let ty = u16_at(attrs, 2);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == IFLA_IFNAME {
            let value = &attrs[4..len];
            let end = value.iter().position(|&c| c == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        let step = (len + 3) & !3;
        attrs = &attrs[step.min(attrs.len())..];
    }
    None
}

/// `unix-connect PATH [stream|dgram]`: connect to the unix socket at PATH
/// (a filesystem path). A stream socket only connects (a listener may
/// close at once, so nothing is sent); a datagram socket sends "sandspec"
/// with sendto. value = bytes sent (datagram only).
pub fn unix_connect(path: &[u8], dgram: bool) -> Report {
    const OP: &str = "unix-connect";
    match unix_send(path, dgram) {
        Ok(n) => Report::ok(OP, n.map(|n| n as i64)),
        Err(e) => Report::os_error(OP, &e),
    }
}

fn unix_send(path: &[u8], dgram: bool) -> io::Result<Option<usize>> {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.is_empty() || path.len() >= addr.sun_path.len() || path.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let addr_len = (std::mem::size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
    let ty = if dgram {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: socket(2) takes no pointers.
    let fd =
        sys::owned_fd(unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) }.into())?;
    let addr_ptr = (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>();
    if !dgram {
        // SAFETY: the address is valid for its length.
        sys::check(unsafe { libc::connect(fd.as_raw_fd(), addr_ptr, addr_len) }.into())?;
        return Ok(None);
    }
    let payload = b"sandspec";
    // SAFETY: the buffer and the address are valid for their lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            addr_ptr,
            addr_len,
        )
    };
    sys::check(n as libc::c_long).map(|n| Some(n as usize))
}
