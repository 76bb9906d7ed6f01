//! Each oracle, exercised for real over 127.0.0.1.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

use super::*;

/// A runtime whose worker serves the oracles.
fn serving_runtime() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("build runtime")
}

/// A runtime nobody drives: its tasks never run, so whatever is counted
/// was counted by `finish` draining the kernel's queues.
fn idle_runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build runtime")
}

fn port(o: &Oracles, var: &str) -> u16 {
    o.vars()[var].parse().expect("port is a number")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind(loopback(0)).expect("bind client");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set timeout");
    s
}

#[test]
fn tcp_listeners_count_accepted_connections_and_close_them() {
    let rt = serving_runtime();
    let o = Oracles::start(&[OracleKind::Tcp, OracleKind::Tcp2], rt.handle()).expect("start");
    let (p1, p2) = (port(&o, "ORACLE_TCP_PORT"), port(&o, "ORACLE_TCP_PORT_2"));
    assert_ne!(p1, p2);
    for p in [p1, p1, p1, p2] {
        let mut conn = TcpStream::connect(loopback(p)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        // The serving task accepts and closes: we read EOF.
        let mut buf = [0u8; 1];
        assert_eq!(conn.read(&mut buf).expect("read until closed"), 0);
    }
    let seen = o.finish();
    assert_eq!(seen.received[&OracleKind::Tcp], 3);
    assert_eq!(seen.received[&OracleKind::Tcp2], 1);
    assert_eq!(seen.victim_alive, None);
}

#[test]
fn a_connection_made_just_before_finish_is_counted() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Tcp], rt.handle()).expect("start");
    let p = port(&o, "ORACLE_TCP_PORT");
    let _a = TcpStream::connect(loopback(p)).expect("connect");
    let _b = TcpStream::connect(loopback(p)).expect("connect");
    assert_eq!(o.finish().received[&OracleKind::Tcp], 2);
}

#[test]
fn unix_oracle_counts_connections_to_its_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Unix], rt.handle()).expect("start");
    let name = o.vars()["ORACLE_UNIX_NAME"].clone();
    assert!(name.starts_with("sandspec-oracle-"), "{name}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _c = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
    assert_eq!(o.finish().received[&OracleKind::Unix], 1);
}

#[test]
fn udp_oracle_counts_datagrams() {
    let rt = serving_runtime();
    let o = Oracles::start(&[OracleKind::Udp], rt.handle()).expect("start");
    let to = loopback(port(&o, "ORACLE_UDP_PORT"));
    let client = udp_client();
    for _ in 0..5 {
        client.send_to(b"sandspec", to).expect("send");
    }
    assert_eq!(o.finish().received[&OracleKind::Udp], 5);
}

#[test]
fn a_datagram_sent_right_before_finish_is_counted() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Udp, OracleKind::Dns], rt.handle()).expect("start");
    let client = udp_client();
    client
        .send_to(b"x", loopback(port(&o, "ORACLE_UDP_PORT")))
        .expect("send");
    client
        .send_to(
            &a_query(7, "example.com"),
            loopback(port(&o, "ORACLE_DNS_PORT")),
        )
        .expect("send");
    let seen = o.finish();
    assert_eq!(seen.received[&OracleKind::Udp], 1);
    assert_eq!(seen.received[&OracleKind::Dns], 1);
}

/// A DNS query for the A records of `name`, built by hand.
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn dns_oracle_answers_a_queries_with_loopback_and_counts_them() {
    let rt = serving_runtime();
    let o = Oracles::start(&[OracleKind::Dns], rt.handle()).expect("start");
    let to = loopback(port(&o, "ORACLE_DNS_PORT"));
    let client = udp_client();
    // Garbage first: it must be neither answered nor counted.
    client.send_to(b"not a dns message", to).expect("send");
    let query = a_query(0x5a5a, "example.com");
    client.send_to(&query, to).expect("send");
    let mut buf = [0u8; 512];
    let (n, from) = client.recv_from(&mut buf).expect("an answer arrives");
    assert_eq!(from, to);
    let answer = &buf[..n];
    assert_eq!(&answer[..2], &[0x5a, 0x5a], "same id");
    assert_eq!(answer[2] & 0x80, 0x80, "a response");
    assert_eq!(answer[3] & 0x0f, 0, "RCODE NOERROR");
    assert_eq!(&answer[6..8], &[0, 1], "one answer record");
    let rr = &answer[query.len()..];
    assert_eq!(&rr[2..4], &[0, 1], "type A");
    assert_eq!(&rr[6..10], &[0, 0, 0, 0], "TTL 0");
    assert_eq!(&rr[12..16], &[127, 0, 0, 1]);
    assert_eq!(o.finish().received[&OracleKind::Dns], 1);
}

#[test]
fn vars_name_only_the_oracles_started() {
    let rt = idle_runtime();
    let o = Oracles::start(
        &[OracleKind::Dns, OracleKind::Udp, OracleKind::Dns],
        rt.handle(),
    )
    .expect("start");
    let vars = o.vars();
    let keys: Vec<&str> = vars.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ORACLE_DNS_PORT", "ORACLE_UDP_PORT"]);
    assert_ne!(vars["ORACLE_DNS_PORT"], vars["ORACLE_UDP_PORT"]);
    let seen = o.finish();
    assert_eq!(seen.received.len(), 2, "a duplicate kind is started once");
    assert_eq!(seen.victim_alive, None);

    let none = Oracles::start(&[], rt.handle()).expect("start");
    assert!(none.vars().is_empty());
    assert_eq!(none.finish(), Observations::default());
}

fn victim_pid(o: &Oracles) -> i32 {
    o.vars()["VICTIM_PID"].parse().expect("pid is a number")
}

#[test]
fn an_untouched_victim_is_alive_and_gone_after_finish() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Victim], rt.handle()).expect("start");
    let pid = victim_pid(&o);
    assert_eq!(survivors(&[pid]), vec![pid]);
    assert_eq!(o.finish().victim_alive, Some(true));
    assert!(survivors(&[pid]).is_empty(), "finish kills and reaps it");
}

#[test]
fn a_victim_signalled_just_before_finish_is_dead() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Victim], rt.handle()).expect("start");
    // SAFETY: kill(2) on the victim's pid, which this test owns.
    assert_eq!(unsafe { libc::kill(victim_pid(&o), libc::SIGTERM) }, 0);
    assert_eq!(o.finish().victim_alive, Some(false));
}

#[test]
fn a_harmless_signal_leaves_the_victim_alive() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Victim], rt.handle()).expect("start");
    // SAFETY: kill(2) on the victim's pid, which this test owns.
    assert_eq!(unsafe { libc::kill(victim_pid(&o), libc::SIGWINCH) }, 0);
    assert_eq!(o.finish().victim_alive, Some(true));
}

#[test]
fn dropping_the_oracles_kills_the_victim() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Victim, OracleKind::Tcp], rt.handle()).expect("start");
    let pid = victim_pid(&o);
    drop(o);
    assert!(survivors(&[pid]).is_empty());
}

#[test]
fn unix_path_oracle_counts_connections_and_datagrams_on_paths_anyone_may_reach() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let rt = serving_runtime();
    let o = Oracles::start(&[OracleKind::UnixPath], rt.handle()).expect("start");
    let vars = o.vars();
    let stream = vars["ORACLE_UNIX_PATH"].clone();
    let dgram = vars["ORACLE_UNIX_DGRAM_PATH"].clone();
    for p in [&stream, &dgram] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777, "{p}");
    }
    drop(UnixStream::connect(&stream).expect("connect"));
    drop(UnixStream::connect(&stream).expect("connect"));
    let c = UnixDatagram::unbound().unwrap();
    c.send_to(b"x", &dgram).expect("send");
    assert!(
        UnixStream::connect(&dgram).is_err(),
        "a stream cannot reach the datagram socket"
    );
    let dir = std::path::Path::new(&stream)
        .parent()
        .unwrap()
        .to_path_buf();
    let seen = o.finish();
    assert_eq!(seen.received[&OracleKind::UnixPath], 3);
    assert!(!dir.exists(), "the socket directory is removed");
}

#[test]
fn terminal_oracle_counts_input_queued_on_the_pty() {
    let rt = idle_runtime();
    let o = Oracles::start(&[OracleKind::Terminal], rt.handle()).expect("start");
    let tty = o.terminal().expect("a terminal");
    let b = b'x';
    // SAFETY: TIOCSTI reads one byte from a live local.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&tty), libc::TIOCSTI, &b) };
    let seen = o.finish();
    if r == 0 {
        assert_eq!(seen.received[&OracleKind::Terminal], 1);
        assert_eq!(seen.terminal.unwrap().bytes, b"x");
    } else {
        // Not allowed here (no CAP_SYS_ADMIN, legacy_tiocsti = 0).
        assert_eq!(seen.received[&OracleKind::Terminal], 0);
    }
}
