//! TCP Fast Open, listening without bind, IPv6 and v4-mapped addresses,
//! generic sockets, netlink, pathname unix sockets, compat ABIs.

use std::io::Read;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::{
    assert_fails, assert_ok, closed_tcp_port, code, errno_name, line, loopback, probe_std, run,
};

/// Accepts one connection (within 5 s) and reads what it sent.
fn accept_and_read(l: &TcpListener) -> Vec<u8> {
    l.set_nonblocking(false).expect("blocking");
    let (mut s, _) = l.accept().expect("a connection arrived");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    got
}

#[test]
fn tcp_fastopen_connects_and_sends_without_connect() {
    for op in ["tcp-fastopen", "tcp-fastopen-connect"] {
        let l = TcpListener::bind(loopback(0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        for addr in [
            format!("127.0.0.1:{port}"),
            format!("[::ffff:127.0.0.1]:{port}"),
        ] {
            let (c, v) = run(&[op, &addr]);
            assert_ok(c, &v, op);
            assert_eq!(v["value"], 8, "{op} {addr}");
            assert_eq!(
                accept_and_read(&l),
                b"sandspec",
                "{op} {addr}: the data arrived"
            );
        }
    }
}

#[test]
fn tcp_fastopen_to_a_closed_port_is_refused() {
    let port = closed_tcp_port();
    for op in ["tcp-fastopen", "tcp-fastopen-connect"] {
        let (c, v) = run(&[op, &format!("127.0.0.1:{port}")]);
        // TCP_FASTOPEN_CONNECT defers the handshake to the write, which
        // then fails like a connect would.
        assert_fails(c, &v, op, "ECONNREFUSED");
    }
}

/// The local address of the TCP socket in LISTEN state among `pid`'s fds,
/// from /proc/net/tcp{,6}: (hex address, port).
fn listening_socket_of(pid: u32) -> Option<(String, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).ok()?;
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let (ip, port) = f[1].split_once(':')?;
                return Some((ip.to_owned(), u16::from_str_radix(port, 16).ok()?));
            }
        }
    }
    None
}

#[test]
fn tcp_listen_without_bind_autobinds_on_every_address_and_accepts() {
    let child = probe_std()
        .args(["tcp-listen", "1.5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut found = None;
    for _ in 0..100 {
        found = listening_socket_of(child.id());
        if found.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ip, port) = found.expect("the probe listens");
    assert_eq!(ip, "00000000", "autobind listens on 0.0.0.0");
    std::net::TcpStream::connect(loopback(port)).expect("a host process connects");
    let out = child.wait_with_output().expect("wait");
    let v = line(&out.stdout);
    assert_ok(code(&out), &v, "tcp-listen");
    assert_eq!(v["value"], port);
    assert_eq!(v["accepted"], 1);
}

#[test]
fn tcp_listen_on_an_address_binds_it() {
    let (c, v) = run(&["tcp-listen", "127.0.0.1:0"]);
    assert_ok(c, &v, "tcp-listen");
    assert!(v["value"].as_u64().expect("a port") > 0);
    assert_eq!(v["accepted"], 0);

    let taken = TcpListener::bind(loopback(0)).expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (c, v) = run(&["tcp-listen", &format!("127.0.0.1:{port}")]);
    assert_fails(c, &v, "tcp-listen", "EADDRINUSE");
}

#[test]
fn ipv6_and_v4_mapped_addresses_reach_their_listeners() {
    let udp4 = UdpSocket::bind(loopback(0)).expect("bind");
    let port = udp4.local_addr().expect("addr").port();
    let (c, v) = run(&["udp-send", &format!("[::ffff:127.0.0.1]:{port}")]);
    assert_ok(c, &v, "udp-send");
    let mut buf = [0u8; 16];
    udp4.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = udp4.recv(&mut buf).expect("the datagram arrived over IPv4");
    assert_eq!(&buf[..n], b"sandspec");

    let Ok(tcp6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))) else {
        eprintln!("skipped the ::1 half: no IPv6 loopback here");
        return;
    };
    let port = tcp6.local_addr().expect("addr").port();
    let (c, v) = run(&["tcp-connect", &format!("[::1]:{port}")]);
    assert_ok(c, &v, "tcp-connect");
    tcp6.set_nonblocking(true).expect("nonblocking");
    assert!(tcp6.accept().is_ok(), "the connection is queued");
}

/// socket(2) here, as the test itself sees it.
fn socket_here(family: i32, ty: i32, proto: i32) -> Option<String> {
    // SAFETY: socket(2) takes no pointers; a returned fd is closed below.
    let fd = unsafe { libc::socket(family, ty, proto) };
    if fd < 0 {
        return Some(errno_name(std::io::Error::last_os_error()));
    }
    // SAFETY: closing the fd just created.
    unsafe { libc::close(fd) };
    None
}

#[test]
fn socket_creates_what_it_is_asked_for() {
    let cases: &[(&[&str], i32, i32, i32)] = &[
        (&["unix", "stream"], libc::AF_UNIX, libc::SOCK_STREAM, 0),
        (
            &["inet", "dgram", "udp"],
            libc::AF_INET,
            libc::SOCK_DGRAM,
            libc::IPPROTO_UDP,
        ),
        (&["inet6", "stream"], libc::AF_INET6, libc::SOCK_STREAM, 0),
        (
            &["netlink", "raw", "route"],
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            0,
        ),
        (&["packet", "raw"], libc::AF_PACKET, libc::SOCK_RAW, 0),
        (&["inet", "packet"], libc::AF_INET, 10, 0),
        (&["16", "3", "0"], libc::AF_NETLINK, libc::SOCK_RAW, 0),
        (&["vsock", "stream"], libc::AF_VSOCK, libc::SOCK_STREAM, 0),
    ];
    for (args, family, ty, proto) in cases {
        let mut all = vec!["socket"];
        all.extend_from_slice(args);
        let (c, v) = run(&all);
        assert_eq!(v["family"], *family, "{args:?}");
        assert_eq!(v["type"], *ty, "{args:?}");
        assert_eq!(v["protocol"], *proto, "{args:?}");
        match socket_here(*family, *ty, *proto) {
            None => assert_ok(c, &v, "socket"),
            Some(errno) => assert_fails(c, &v, "socket", &errno),
        }
    }
    let (c, v) = run(&["socket", "200", "stream"]);
    assert_fails(c, &v, "socket", "EAFNOSUPPORT");
    let (c, _) = run(&["socket", "martian", "stream"]);
    assert_eq!(c, 2, "an unknown name is a usage error");
}

#[test]
fn netlink_route_dump_lists_the_interfaces() {
    let (c, v) = run(&["netlink-route-dump"]);
    assert_ok(c, &v, "netlink-route-dump");
    let mut got: Vec<String> = serde_json::from_value(v["links"].clone()).expect("names");
    let mut want: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(v["value"], want.len());
}

#[test]
fn unix_connect_reaches_a_pathname_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stream.sock");
    let l = UnixListener::bind(&path).expect("bind");
    let (c, v) = run(&["unix-connect", path.to_str().expect("utf-8")]);
    assert_ok(c, &v, "unix-connect");
    assert_eq!(v["value"], Value::Null, "a stream connection sends nothing");
    l.set_nonblocking(true).expect("nonblocking");
    assert!(l.accept().is_ok(), "the connection is queued");

    let dpath = dir.path().join("dgram.sock");
    let d = UnixDatagram::bind(&dpath).expect("bind");
    let (c, v) = run(&["unix-connect", dpath.to_str().expect("utf-8"), "dgram"]);
    assert_ok(c, &v, "unix-connect");
    let mut buf = [0u8; 16];
    d.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = d.recv(&mut buf).expect("the datagram arrived");
    assert_eq!(&buf[..n], b"sandspec");

    let missing = dir.path().join("nobody.sock");
    let (c, v) = run(&["unix-connect", missing.to_str().expect("utf-8")]);
    assert_fails(c, &v, "unix-connect", "ENOENT");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compat_socket_sends_through_the_i386_entries() {
    for abi in ["i386", "i386-direct"] {
        let udp = UdpSocket::bind(loopback(0)).expect("bind");
        let port = udp.local_addr().expect("addr").port();
        let (c, v) = run(&["compat-socket", abi, &format!("127.0.0.1:{port}")]);
        assert_ok(c, &v, "compat-socket");
        assert_eq!(v["abi"], abi);
        assert_eq!(v["value"], 8);
        let mut buf = [0u8; 16];
        udp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = udp.recv(&mut buf).expect("the datagram arrived");
        assert_eq!(&buf[..n], b"sandspec", "{abi}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compat_socket_x32_agrees_with_the_kernel() {
    // socket(AF_INET, SOCK_DGRAM) with the x32 bit, made here.
    // SAFETY: integer arguments only; a returned fd is closed below.
    let fd = unsafe { libc::syscall(0x4000_0000 | 41, libc::AF_INET, libc::SOCK_DGRAM, 0) };
    let here = if fd < 0 {
        Some(errno_name(std::io::Error::last_os_error()))
    } else {
        // SAFETY: closing the fd just created.
        unsafe { libc::close(fd as i32) };
        None
    };
    let (c, v) = run(&["compat-socket", "x32"]);
    match here {
        None => assert_ok(c, &v, "compat-socket"),
        Some(errno) => assert_fails(c, &v, "compat-socket", &errno),
    }
    let (c, _) = run(&["compat-socket", "x32", "[::1]:53"]);
    assert_eq!(c, 2, "IPv4 only");
}

#[test]
fn mptcp_connect_reaches_a_plain_tcp_listener() {
    let l = TcpListener::bind(loopback(0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (c, v) = run(&["mptcp-connect", &format!("127.0.0.1:{port}")]);
    match socket_here(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_MPTCP) {
        None => {
            assert_ok(c, &v, "mptcp-connect");
            assert_eq!(accept_and_read(&l), b"sandspec");
        }
        Some(errno) => assert_fails(c, &v, "mptcp-connect", &errno),
    }
}
