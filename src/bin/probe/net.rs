//! Network operations: TCP, UDP, DNS, raw sockets, io_uring, abstract
//! unix sockets.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dns;
use crate::report::Report;

/// How long `tcp-connect` waits for the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `dns-query` waits for an answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// `tcp-connect HOST:PORT`.
pub fn tcp_connect(addr: SocketAddr) -> Report {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(stream) => {
            drop(stream);
            Report::ok("tcp-connect", None)
        }
        Err(e) => Report::os_error("tcp-connect", &e),
    }
}

/// `tcp-bind HOST:PORT`: bind and listen; value = the bound port.
pub fn tcp_bind(addr: SocketAddr) -> Report {
    match TcpListener::bind(addr).and_then(|l| l.local_addr()) {
        Ok(local) => Report::ok("tcp-bind", Some(i64::from(local.port()))),
        Err(e) => Report::os_error("tcp-bind", &e),
    }
}

/// An unbound UDP socket: `sendto` binds it implicitly, so a policy that
/// only restricts sending is what decides, not an explicit bind.
fn udp_socket(to: &SocketAddr) -> io::Result<UdpSocket> {
    let domain = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by socket(2) and is owned by nobody else.
    Ok(UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `udp-send HOST:PORT`: one datagram "sandspec"; value = bytes sent.
pub fn udp_send(addr: SocketAddr) -> Report {
    match udp_socket(&addr).and_then(|s| s.send_to(b"sandspec", addr)) {
        Ok(n) => Report::ok("udp-send", Some(n as i64)),
        Err(e) => Report::os_error("udp-send", &e),
    }
}

/// `udp-socket`: only create an IPv4 UDP socket. Tells where a UDP deny
/// sits: a seccomp filter refuses socket(2) itself, while Landlock (ABI 10+)
/// lets the socket be made and refuses the send or bind.
pub fn udp_socket_only() -> Report {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    match udp_socket(&any) {
        Ok(_) => Report::ok("udp-socket", None),
        Err(e) => Report::os_error("udp-socket", &e),
    }
}

/// `dns-query HOST:PORT NAME`: ask for A records, wait up to 2 s. ok = a
/// response with our id and RCODE 0 arrived; value = its answer count.
pub fn dns_query(addr: SocketAddr, name: &str) -> Report {
    const OP: &str = "dns-query";
    let id = query_id();
    let query = match dns::build_query(id, name) {
        Ok(q) => q,
        Err(e) => return Report::usage(OP, e),
    };
    let sock = match udp_socket(&addr) {
        Ok(s) => s,
        Err(e) => return Report::os_error(OP, &e),
    };
    if let Err(e) = sock.send_to(&query, addr) {
        return Report::os_error(OP, &e);
    }
    let deadline = Instant::now() + DNS_TIMEOUT;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Report::failed(
                OP,
                Some(libc::ETIMEDOUT),
                format!("failed to get a DNS answer from {addr}: none within {DNS_TIMEOUT:?}"),
            );
        }
        if let Err(e) = sock.set_read_timeout(Some(left)) {
            return Report::os_error(OP, &e);
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The timeout shows up as EAGAIN; the loop reports it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Report::os_error(OP, &e),
        };
        if from != addr {
            continue;
        }
        // Anything else arriving on our port (a stale or forged reply)
        // is skipped until the deadline.
        let Some(resp) = dns::parse_response(&buf[..n], id) else {
            continue;
        };
        let answers: Vec<Value> = resp
            .addresses
            .iter()
            .map(|a| Value::from(a.to_string()))
            .collect();
        let report = if resp.rcode == 0 {
            Report::ok(OP, None)
        } else {
            Report::failed(
                OP,
                None,
                format!("DNS server {addr} answered with RCODE {}", resp.rcode),
            )
        };
        return report
            .value(i64::from(resp.answer_count))
            .with("answers", Value::from(answers))
            .with("rcode", Value::from(resp.rcode));
    }
}

/// A query id that differs between runs (no file or /dev/urandom needed).
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() as u16) ^ (nanos as u16) ^ ((nanos >> 16) as u16)
}

/// `raw-socket`: socket(AF_INET, SOCK_RAW, IPPROTO_ICMP).
pub fn raw_socket() -> Report {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Report::os_error("raw-socket", &io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned here; dropping closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Report::ok("raw-socket", None)
}

/// `io-uring`: io_uring_setup(8, &params), called directly so that no
/// library decides for us.
pub fn io_uring() -> Report {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable, zeroed buffer of the size the kernel
    // expects for struct io_uring_params, alive for the whole call.
    let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) };
    if ret < 0 {
        return Report::os_error("io-uring", &io::Error::last_os_error());
    }
    // SAFETY: a non-negative return is a new fd owned by this process.
    drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
    Report::ok("io-uring", None)
}

/// `abstract-unix-connect NAME`: connect to "\0NAME" (SOCK_STREAM).
pub fn abstract_unix_connect(name: &[u8]) -> Report {
    const OP: &str = "abstract-unix-connect";
    let result = std::os::unix::net::SocketAddr::from_abstract_name(name)
        .and_then(|addr| UnixStream::connect_addr(&addr));
    match result {
        Ok(_) => Report::ok(OP, None),
        Err(e) => Report::os_error(OP, &e),
    }
}
