//! The inbound oracle: while the command runs, find the TCP sockets in
//! LISTEN state that belong to the run's processes and connect to each
//! from the host, over loopback only. A listener the host can reach is an
//! open door whatever the command reports about it (`listen()` without
//! `bind()` auto-binds a port on every address, for one).
//!
//! "Belongs to the run": the socket's inode is among the open fds of the
//! run's processes (the caller says which processes those are, see
//! `RunTracker::members`). Only the harness's own network namespace is
//! read (/proc/net/tcp{,6}): a listener in a namespace of the sandbox's
//! own is not reachable from the host, and is not tried. Listeners bound
//! to an address that is neither a wildcard nor loopback are listed as not
//! tried: the harness never connects anywhere but 127.0.0.1 and ::1.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the run's sockets are looked at.
const POLL: Duration = Duration::from_millis(20);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The processes of the run, asked on every poll.
pub type Members = Box<dyn Fn() -> Vec<i32> + Send>;

/// What the inbound oracle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundReport {
    /// Connections made to the run's listeners.
    pub connected: u64,
    /// One line per listener found: its address and what happened.
    pub tried: Vec<String>,
}

/// The oracle, polling on a thread of its own while the run goes on.
pub struct Inbound {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<InboundReport>,
}

/// A listening socket from /proc/net/tcp{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// The socket's inode.
    pub inode: u64,
}

impl Inbound {
    /// Starts polling.
    pub fn start(members: Members) -> std::io::Result<Inbound> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sandspec-inbound".into())
            .spawn(move || {
                let mut report = InboundReport::default();
                let mut tried = BTreeSet::new();
                loop {
                    // Once more after the stop request: what the last
                    // moments of the run opened is tried too.
                    let last = stop2.load(Ordering::Acquire);
                    poll_once(&members, &mut tried, &mut report);
                    if last {
                        return report;
                    }
                    std::thread::sleep(POLL);
                }
            })?;
        Ok(Inbound { stop, thread })
    }

    /// Stops polling (after one last look) and returns what was done.
    pub fn finish(self) -> InboundReport {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_else(|_| InboundReport {
            connected: 0,
            tried: vec!["the inbound oracle's thread panicked".into()],
        })
    }
}

fn poll_once(members: &Members, tried: &mut BTreeSet<u64>, report: &mut InboundReport) {
    let inodes = socket_inodes(&members());
    if inodes.is_empty() {
        return;
    }
    for l in listening() {
        if !inodes.contains(&l.inode) || !tried.insert(l.inode) {
            continue;
        }
        match loopback_target(l.addr) {
            None => report.tried.push(format!(
                "{}: not tried (neither a wildcard nor a loopback address)",
                l.addr
            )),
            Some(to) => match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
                Ok(_) => {
                    report.connected += 1;
                    report
                        .tried
                        .push(format!("{} (as {to}): connected", l.addr));
                }
                Err(e) => report.tried.push(format!("{} (as {to}): {e}", l.addr)),
            },
        }
    }
}

/// The inodes of the sockets `pids` have open.
pub fn socket_inodes(pids: &[i32]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    out.insert(n);
                }
            }
        }
    }
    out
}

/// The TCP sockets in LISTEN state in the harness's network namespace.
pub fn listening() -> Vec<Listening> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(text.lines().skip(1).filter_map(|l| parse_line(l, v6)));
        }
    }
    out
}

/// One line of /proc/net/tcp{,6}, if it is a listener.
pub fn parse_line(line: &str, v6: bool) -> Option<Listening> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if f.get(3)? != &"0A" {
        return None;
    }
    let (ip, port) = f.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 { parse_v6(ip)? } else { parse_v4(ip)? };
    let inode = f.get(9)?.parse().ok()?;
    Some(Listening {
        addr: SocketAddr::new(ip, port),
        inode,
    })
}

/// The kernel prints each 32-bit word of the address as it sits in memory,
/// read as a host-order integer.
fn parse_v4(hex: &str) -> Option<IpAddr> {
    let word = u32::from_str_radix(hex, 16).ok()?;
    (hex.len() == 8).then(|| IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes())))
}

fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for i in 0..4 {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// Where to connect to reach a listener bound to `addr` from the host over
/// loopback; `None` when that would leave loopback.
pub fn loopback_target(addr: SocketAddr) -> Option<SocketAddr> {
    let v4 = |ip: Ipv4Addr| {
        (ip.is_unspecified() || ip.is_loopback()).then(|| {
            let to = if ip.is_unspecified() {
                Ipv4Addr::LOCALHOST
            } else {
                ip
            };
            SocketAddr::new(IpAddr::V4(to), addr.port())
        })
    };
    match addr.ip() {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(m) => v4(m),
            None if ip.is_unspecified() || ip.is_loopback() => Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                addr.port(),
            )),
            None => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn proc_net_lines_parse_into_listeners() {
        let v4 = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let l = parse_line(v4, false).unwrap();
        assert_eq!(l.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.inode, 4242);
        let established = v4.replace(" 0A ", " 01 ");
        assert!(parse_line(&established, false).is_none());
        let v6 = "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v6, true).unwrap().addr,
            "[::1]:22".parse().unwrap()
        );
    }

    #[test]
    fn only_wildcard_and_loopback_listeners_are_tried_and_only_over_loopback() {
        let t = |a: &str| loopback_target(a.parse().unwrap()).map(|s| s.to_string());
        assert_eq!(t("0.0.0.0:5"), Some("127.0.0.1:5".into()));
        assert_eq!(t("127.0.0.2:5"), Some("127.0.0.2:5".into()));
        assert_eq!(t("[::]:5"), Some("[::1]:5".into()));
        assert_eq!(t("[::ffff:0.0.0.0]:5"), Some("127.0.0.1:5".into()));
        assert_eq!(t("10.1.2.3:5"), None);
        assert_eq!(t("[2001:db8::1]:5"), None);
    }

    #[test]
    fn a_listener_of_a_member_is_found_and_connected_to_once() {
        // This process plays the run: its own listener is found through
        // its own fds.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id() as i32;
        let o = Inbound::start(Box::new(move || vec![me])).unwrap();
        std::thread::sleep(POLL * 4);
        let report = o.finish();
        assert_eq!(report.connected, 1, "{:?}", report.tried);
        // The connection really arrived.
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_ok());
        // Nobody's listener is tried when the run has no processes.
        let o = Inbound::start(Box::new(Vec::new)).unwrap();
        assert_eq!(o.finish(), InboundReport::default());
    }
}
