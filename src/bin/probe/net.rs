//! Network operations: TCP (connect, bind, listen, Fast Open), UDP, DNS,
//! raw sockets, io_uring, abstract unix sockets. Addresses may be IPv6
//! (`[::1]:80`) or IPv4-mapped IPv6 (`[::ffff:127.0.0.1]:80`, through an
//! AF_INET6 socket).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use serde_json::Value;

use crate::dns;
use crate::report::Report;
use crate::sys;

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

/// `raw-socket HOST:PORT`: a UDP datagram ("sandspec") built by hand and
/// sent through socket(AF_INET, SOCK_RAW, IPPROTO_UDP), so that whether
/// it arrives is for the harness's UDP oracle to see; value = bytes sent.
pub fn raw_udp_send(addr: SocketAddr) -> Report {
    const OP: &str = "raw-socket";
    let SocketAddr::V4(v4) = addr else {
        return Report::failed(
            OP,
            Some(libc::EAFNOSUPPORT),
            "an IPv4 address is needed".into(),
        );
    };
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned here; dropping closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // UDP header (source port 9, the destination, length; checksum 0: none,
    // which IPv4 allows), then the payload. The kernel adds the IP header.
    let payload = b"sandspec";
    let len = (8 + payload.len()) as u16;
    let mut datagram = Vec::with_capacity(len as usize);
    datagram.extend_from_slice(&9u16.to_be_bytes());
    datagram.extend_from_slice(&v4.port().to_be_bytes());
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&0u16.to_be_bytes());
    datagram.extend_from_slice(payload);
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `datagram` and `sa` are valid for the lengths given, alive for
    // the call; `fd` is open.
    let n = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            datagram.as_ptr().cast(),
            datagram.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    Report::ok(OP, Some(n as i64))
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

/// A TCP socket of `addr`'s family, not connected.
fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) takes no pointers; the result is checked.
    sys::owned_fd(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }.into())
}

/// The bytes TCP data operations send.
const PAYLOAD: &[u8] = b"sandspec";

/// `tcp-fastopen HOST:PORT`: sendto(PAYLOAD, MSG_FASTOPEN, HOST:PORT) on
/// an unconnected TCP socket: the kernel connects and sends in one call,
/// without connect(2) (an LSM hook on connect never runs). value = bytes
/// sent.
pub fn tcp_fastopen(addr: SocketAddr) -> Report {
    const OP: &str = "tcp-fastopen";
    let result = tcp_socket(&addr).and_then(|fd| {
        let to = SockaddrStorage::from(addr);
        // SAFETY: the buffer and the address are valid for the lengths
        // given; the fd is open.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                PAYLOAD.as_ptr().cast(),
                PAYLOAD.len(),
                libc::MSG_FASTOPEN,
                to.as_ptr(),
                to.len(),
            )
        };
        sys::check(n as libc::c_long).map(|n| (fd, n))
    });
    match result {
        Ok((fd, n)) => {
            linger_until_acked(&fd);
            Report::ok(OP, Some(n))
        }
        Err(e) => Report::os_error(OP, &e),
    }
}

/// `tcp-fastopen-connect HOST:PORT`: TCP_FASTOPEN_CONNECT, then connect(2)
/// (which returns at once, sending nothing) and write(PAYLOAD), which
/// sends the SYN with the data. value = bytes written.
pub fn tcp_fastopen_connect(addr: SocketAddr) -> Report {
    const OP: &str = "tcp-fastopen-connect";
    let result = tcp_socket(&addr).and_then(|fd| {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one int through the pointer.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_FASTOPEN_CONNECT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        sys::check(r.into())?;
        let to = SockaddrStorage::from(addr);
        // SAFETY: the address is valid for its length; the fd is open.
        sys::check(unsafe { libc::connect(fd.as_raw_fd(), to.as_ptr(), to.len()) }.into())?;
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), PAYLOAD.as_ptr().cast(), PAYLOAD.len()) };
        sys::check(n as libc::c_long).map(|n| (fd, n))
    });
    match result {
        Ok((fd, n)) => {
            linger_until_acked(&fd);
            Report::ok(OP, Some(n))
        }
        Err(e) => Report::os_error(OP, &e),
    }
}

/// The tcp_info state of a socket still waiting for the SYN-ACK
/// (include/net/tcp_states.h).
const TCP_SYN_SENT: u8 = 2;

/// Waits (up to CONNECT_TIMEOUT) until the handshake has completed, so
/// the listener has the connection before the probe exits and closes it.
fn linger_until_acked(fd: &OwnedFd) {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while Instant::now() < deadline {
        // SAFETY: tcp_info is plain data; getsockopt fills at most `len`.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` are valid out-pointers of those sizes.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if r != 0 || info.tcpi_state != TCP_SYN_SENT {
            return;
        }
        sys::sleep_ms(5);
    }
}

/// `tcp-listen [HOST:PORT] [SECS]`: listen(2) on a TCP socket, bound to
/// HOST:PORT first if given; without an address nothing is bound and the
/// kernel picks a port on every address (autobind). Then accepts for SECS
/// (default 0). value = the port; "accepted" = connections accepted; the
/// line is printed at the end.
pub fn tcp_listen(addr: Option<SocketAddr>, secs: Duration) -> Report {
    const OP: &str = "tcp-listen";
    let family_of = addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let fd = match tcp_socket(&family_of) {
        Ok(fd) => fd,
        Err(e) => return Report::os_error(OP, &e),
    };
    if let Some(addr) = addr {
        let at = SockaddrStorage::from(addr);
        // SAFETY: the address is valid for its length; the fd is open.
        if unsafe { libc::bind(fd.as_raw_fd(), at.as_ptr(), at.len()) } != 0 {
            return Report::os_error(OP, &io::Error::last_os_error());
        }
    }
    // SAFETY: listen(2) takes no pointers.
    if unsafe { libc::listen(fd.as_raw_fd(), 16) } != 0 {
        return Report::os_error(OP, &io::Error::last_os_error());
    }
    let listener = TcpListener::from(fd);
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => return Report::os_error(OP, &e),
    };
    let accepted = match accept_for(&listener, secs) {
        Ok(n) => n,
        Err(e) => return Report::os_error(OP, &e).value(i64::from(port)),
    };
    Report::ok(OP, Some(i64::from(port))).with("accepted", Value::from(accepted))
}

/// Accepts (and closes) connections until `secs` have passed.
fn accept_for(listener: &TcpListener, secs: Duration) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + secs;
    let mut accepted = 0;
    loop {
        match listener.accept() {
            Ok(_) => {
                accepted += 1;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(accepted);
        }
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// `mptcp-connect HOST:PORT`: connect(2) on an IPPROTO_MPTCP stream
/// socket, which falls back to plain TCP with a plain TCP peer, then send
/// PAYLOAD. value = bytes sent.
pub fn mptcp_connect(addr: SocketAddr) -> Report {
    const OP: &str = "mptcp-connect";
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let result = sys::owned_fd(
        // SAFETY: socket(2) takes no pointers.
        unsafe {
            libc::socket(
                domain,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_MPTCP,
            )
        }
        .into(),
    )
    .and_then(|fd| {
        let to = SockaddrStorage::from(addr);
        // SAFETY: the address is valid for its length; the fd is open.
        sys::check(unsafe { libc::connect(fd.as_raw_fd(), to.as_ptr(), to.len()) }.into())?;
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                PAYLOAD.as_ptr().cast(),
                PAYLOAD.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        sys::check(n as libc::c_long)
    });
    match result {
        Ok(n) => Report::ok(OP, Some(n)),
        Err(e) => Report::os_error(OP, &e),
    }
}
