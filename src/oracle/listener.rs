//! Counting sockets on 127.0.0.1: a TCP listener that accepts and closes,
//! a UDP socket that counts datagrams, and the DNS responder.
//!
//! Every receive happens under the listener's lock, whether the serving
//! task does it or [`Listener::stop`]. So `stop` needs no cooperation from
//! the runtime: it takes the lock, marks the listener stopped, drains what
//! the kernel has queued at that moment, and reads the count. Nothing
//! received can be missed, and `stop` works from any thread, async or not.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Udp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

#[derive(Default)]
struct State {
    count: u64,
    stopped: bool,
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
                    drop(conn);
                    st.count += 1;
                }),
            };
            match result {
                Ok(()) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => return e,
            }
        }
    }

    fn handle_datagram(&self, s: &UdpSocket, st: &mut State, msg: &[u8], from: SocketAddr) {
        match self.role {
            Role::Dns => {
                if let Some(q) = dns::parse_query(msg) {
                    st.count += 1;
                    // Best effort: a reply that cannot be sent (the asker
                    // is gone, the buffer is full) changes no count.
                    let _ = s.send_to(&dns::answer(&q), from);
                }
            }
            Role::Udp | Role::Tcp | Role::Unix => st.count += 1,
        }
    }
}

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
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut name = None;
        let socket = match role {
            Role::Tcp => Socket::Tcp(TcpListener::bind(any)?),
            Role::Udp | Role::Dns => Socket::Udp(UdpSocket::bind(any)?),
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
            st.count
        };
        self.task.abort();
        count
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
