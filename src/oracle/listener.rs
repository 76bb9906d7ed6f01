//! Counting sockets on 127.0.0.1: a TCP listener that accepts and closes,
//! a UDP socket that counts datagrams, and the DNS responder.
//!
//! Every receive happens under the listener's lock, whether the serving
//! task does it or [`Listener::stop`]. So `stop` needs no cooperation from
//! the runtime: it takes the lock, marks the listener stopped, drains what
//! the kernel has queued at that moment, and reads the count. Nothing
//! received can be missed, and `stop` works from any thread, async or not.
//!
//! A UDP datagram on loopback is not in the receiving socket's queue when
//! `sendto` returns: it waits in the sending CPU's network backlog until a
//! softirq delivers it, and under load (or TCG in the kernel matrix, one
//! slow vCPU) that softirq is deferred to ksoftirqd. So before counting, a
//! UDP listener sends itself a sentinel datagram from every CPU it may run
//! on: each backlog is first in, first out, so once every sentinel has
//! arrived, everything sent before `stop` has too.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::dns;

/// What a listener does with what arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accept TCP connections, close them, count them.
    Tcp,
    /// Count UDP datagrams.
    Udp,
    /// Answer well-formed DNS queries over UDP, count them.
    Dns,
    /// Accept connections on an abstract unix socket, close them, count them.
    Unix,
    /// Accept connections on a pathname unix socket, close them, count them.
    UnixPath,
    /// Count datagrams on a pathname unix datagram socket.
    UnixDgram,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
    UnixDgram(UnixDatagram),
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Udp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
            Socket::UnixDgram(s) => s.as_raw_fd(),
        }
    }
}

#[derive(Default)]
struct State {
    count: u64,
    /// Pathname unix connections, held open until `stop`: a client that
    /// writes after connecting (as a real one does) must not see its peer
    /// gone (EPIPE) and take the refusal for the sandbox's.
    held: Vec<std::os::unix::net::UnixStream>,
    stopped: bool,
    /// The flush's sentinel payload (random, not counted) while `stop`
    /// waits for it, and how many copies have arrived.
    sentinel: Option<[u8; 16]>,
    sentinels_seen: usize,
}

struct Shared {
    role: Role,
    io: AsyncFd<Socket>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles everything queued right now. Returns the error that ended
    /// the drain: `WouldBlock` when the queue is empty.
    fn drain(&self, st: &mut State) -> io::Error {
        let mut buf = [0u8; 1500];
        loop {
            let result = match self.io.get_ref() {
                Socket::Tcp(l) => l.accept().map(|(conn, _)| {
                    // Counted, then closed by the drop.
                    drop(conn);
                    st.count += 1;
                }),
                Socket::Udp(s) => s.recv_from(&mut buf).map(|(n, from)| {
                    self.handle_datagram(s, st, &buf[..n], from);
                }),
                Socket::Unix(l) => l.accept().map(|(conn, _)| {
                    if self.role == Role::UnixPath && st.held.len() < MAX_HELD {
                        st.held.push(conn);
                    }
                    st.count += 1;
                }),
                Socket::UnixDgram(s) => s.recv(&mut buf).map(|_| st.count += 1),
            };
            match result {
                Ok(()) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => return e,
            }
        }
    }

    fn handle_datagram(&self, s: &UdpSocket, st: &mut State, msg: &[u8], from: SocketAddr) {
        if st.sentinel.is_some_and(|t| t == msg) {
            st.sentinels_seen += 1;
            return;
        }
        match self.role {
            Role::Dns => {
                if let Some(q) = dns::parse_query(msg) {
                    st.count += 1;
                    // Best effort: a reply that cannot be sent (the asker
                    // is gone, the buffer is full) changes no count.
                    let _ = s.send_to(&dns::answer(&q), from);
                }
            }
            Role::Udp | Role::Tcp | Role::Unix | Role::UnixPath | Role::UnixDgram => st.count += 1,
        }
    }
}

/// How many connections a pathname unix listener holds open at most.
const MAX_HELD: usize = 64;

/// Errors after which the next accept/receive may well succeed.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::ECONNRESET)
    )
}

/// One counting socket and the task serving it.
pub struct Listener {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    port: u16,
    name: Option<String>,
}

static UNIX_SEQ: AtomicU64 = AtomicU64::new(0);

impl Listener {
    /// Binds 127.0.0.1:0 for `role` and starts serving it on `rt`, which
    /// must have its I/O driver enabled (as every runtime built with
    /// `enable_all` has).
    pub fn start(role: Role, rt: &Handle) -> io::Result<Listener> {
        Self::start_at(role, None, rt)
    }

    /// As [`Listener::start`]; the pathname roles bind `path`, which is
    /// made accessible to every user (mode 0777): the sandbox, not the
    /// file's mode, must be what keeps a command out.
    pub fn start_at(role: Role, path: Option<&Path>, rt: &Handle) -> io::Result<Listener> {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut name = None;
        let need_path =
            || path.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no socket path"));
        let open_up = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777))
        };
        let socket = match role {
            Role::Tcp => Socket::Tcp(TcpListener::bind(any)?),
            Role::Udp | Role::Dns => Socket::Udp(UdpSocket::bind(any)?),
            Role::UnixPath => {
                let p = need_path()?;
                let l = UnixListener::bind(p)?;
                open_up(p)?;
                Socket::Unix(l)
            }
            Role::UnixDgram => {
                let p = need_path()?;
                let s = UnixDatagram::bind(p)?;
                open_up(p)?;
                Socket::UnixDgram(s)
            }
            Role::Unix => {
                let n = format!(
                    "sandspec-oracle-{}-{}",
                    std::process::id(),
                    UNIX_SEQ.fetch_add(1, Ordering::Relaxed)
                );
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes())?;
                name = Some(n);
                Socket::Unix(UnixListener::bind_addr(&addr)?)
            }
        };
        let port = match &socket {
            Socket::Tcp(l) => {
                l.set_nonblocking(true)?;
                l.local_addr()?.port()
            }
            Socket::Udp(s) => {
                s.set_nonblocking(true)?;
                s.local_addr()?.port()
            }
            Socket::Unix(s) => {
                s.set_nonblocking(true)?;
                0
            }
            Socket::UnixDgram(s) => {
                s.set_nonblocking(true)?;
                0
            }
        };
        // AsyncFd registers with the reactor of the current runtime.
        let _guard = rt.enter();
        // SAFETY: `socket` owns its fd, which stays open and unchanged for
        // as long as the AsyncFd that owns `socket` lives.
        let io = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        let shared = Arc::new(Shared {
            role,
            io,
            state: Mutex::new(State::default()),
        });
        let task = rt.spawn(serve(Arc::clone(&shared)));
        Ok(Listener {
            shared,
            task,
            port,
            name,
        })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The abstract socket name (without the leading NUL), for `Unix`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Stops serving and returns the count, including everything the
    /// kernel had queued when this was called.
    pub fn stop(self) -> u64 {
        let count = {
            let mut st = self.shared.lock();
            st.stopped = true;
            // Whatever ends the drain (normally an empty queue), nothing
            // more can be counted.
            let _ = self.shared.drain(&mut st);
            if let Socket::Udp(_) = self.shared.io.get_ref() {
                self.flush_backlogs(&mut st);
            }
            st.held.clear();
            st.count
        };
        self.task.abort();
        count
    }
}

/// How long `stop` waits for its sentinels: far more than a deferred
/// softirq takes; reached only if a sentinel was lost (a full receive
/// buffer), and then the count is what arrived by then.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

impl Listener {
    /// Sends a sentinel to this UDP listener from each CPU the harness may
    /// run on, and drains until all have arrived (or `FLUSH_LIMIT`): then
    /// every datagram sent to it before has been delivered and counted.
    fn flush_backlogs(&self, st: &mut State) {
        let mut token = [0u8; 16];
        // SAFETY: getrandom(2) writes at most `len` bytes into the buffer.
        let n = unsafe { libc::getrandom(token.as_mut_ptr().cast(), token.len(), 0) };
        if n != token.len() as isize {
            // A predictable token could only be forged by the command; the
            // nanoseconds of the clock are as good for that.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            token = t.as_nanos().to_le_bytes();
        }
        st.sentinel = Some(token);
        st.sentinels_seen = 0;
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let cpus: Vec<usize> = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        let sent = std::thread::scope(|scope| {
            let senders: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    scope.spawn(move || {
                        let mut one = nix::sched::CpuSet::new();
                        // Unpinned (if the set or the call fails), the
                        // sentinel still flushes whatever CPU it runs on.
                        if one.set(cpu).is_ok() {
                            let _ =
                                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one);
                        }
                        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                            .and_then(|s| s.send_to(&token, to))
                            .is_ok()
                    })
                })
                .collect();
            senders
                .into_iter()
                .map(|h| matches!(h.join(), Ok(true)))
                .filter(|&ok| ok)
                .count()
        });
        let deadline = Instant::now() + FLUSH_LIMIT;
        let fd = self.shared.io.get_ref().as_raw_fd();
        loop {
            let _ = self.shared.drain(st);
            let left = deadline.saturating_duration_since(Instant::now());
            if st.sentinels_seen >= sent || left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            // SAFETY: one valid pollfd for an fd this listener owns.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
        st.sentinel = None;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(shared: Arc<Shared>) {
    loop {
        let Ok(mut ready) = shared.io.readable().await else {
            return;
        };
        let mut st = shared.lock();
        if st.stopped {
            return;
        }
        // An empty queue (WouldBlock) or a persistent error: either way,
        // wait for the next readiness event; `stop` drains what is left.
        let _ = shared.drain(&mut st);
        drop(st);
        ready.clear_ready();
    }
}
