//! Accepting shared-memory connections ([`EventLoop::listen_shm`]): a helper thread accepts on
//! the Unix socket and takes each dialer's setup message on a short-lived thread of its own
//! (it may take up to [`SETUP_TIMEOUT`] from a slow or broken peer, so never on the loop's
//! thread, and never in the way of the next dialer), then hands the connection to the loop
//! through a channel and the loop's waker. The loop then runs the
//! authentication handshake over it exactly as over an accepted TCP connection, under the
//! same connection limit.

use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{CloseReason, EventLoop, Handler};
use crate::shm::{self, ShmConn};
use crate::NetError;

/// How long an accepted peer has to send its setup message.
const SETUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How many accepted peers may be sending their setup messages at once (each on a thread).
const MAX_SETUPS: usize = 32;

/// The accepting thread of a loop's shared-memory listener, and how its connections arrive.
pub(super) struct ShmAcceptor {
    accepted: mpsc::Receiver<ShmConn>,
    name: String,
    /// What accepted connections are reported as coming from (the TCP listener's address).
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ShmAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The thread sleeps in accept: a connection of our own wakes it to see the flag.
        if let Ok(addr) = UnixAddr::from_abstract_name(self.name.as_bytes()) {
            let _ = UnixStream::connect_addr(&addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EventLoop {
    /// Also accepts shared-memory connections from this host, on the abstract Unix socket
    /// named after `advertised`, the TCP address workers know this loop by
    /// ([`shm::socket_name`]). Accepted connections are authenticated and handed to
    /// [`Handler::on_accept`] like TCP ones. Returns the name.
    pub fn listen_shm(&mut self, advertised: SocketAddr) -> Result<String, NetError> {
        let addr = self.local_addr().ok_or_else(|| {
            NetError::Shm("a loop without a TCP listener cannot listen for shared memory".into())
        })?;
        let listener = shm::bind(advertised)?;
        let name = shm::socket_name(advertised);
        let waker = self.waker()?;
        let (tx, accepted) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let s = &self.settings;
        let (limits, pool, metrics) = (s.limits, s.pool.clone(), s.metrics.clone());
        let thread = std::thread::Builder::new()
            .name("shm-accept".into())
            .spawn(move || {
                let in_setup = Arc::new(AtomicUsize::new(0));
                for sock in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let sock = match sock {
                        Ok(sock) => sock,
                        Err(e) => {
                            tracing::warn!("refusing a shared-memory connection: {e}");
                            continue;
                        }
                    };
                    // Each setup on a thread of its own, so that a dialer that sends nothing
                    // holds up no one else; a bounded number at once, so that a flood of
                    // silent dialers costs threads no more than it costs connections.
                    if in_setup.fetch_add(1, Ordering::SeqCst) >= MAX_SETUPS {
                        in_setup.fetch_sub(1, Ordering::SeqCst);
                        metrics.connection_refused();
                        tracing::warn!(
                            "refusing a shared-memory connection: {MAX_SETUPS} setups already \
                             under way"
                        );
                        continue;
                    }
                    let (tx, waker, pool, metrics) =
                        (tx.clone(), waker.clone(), pool.clone(), metrics.clone());
                    let setups = in_setup.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("shm-setup".into())
                            .spawn(move || {
                                let conn =
                                    ShmConn::accept(sock, SETUP_TIMEOUT, limits, pool, metrics);
                                setups.fetch_sub(1, Ordering::SeqCst);
                                match conn {
                                    Ok(conn) => {
                                        if tx.send(conn).is_ok() {
                                            let _ = waker.wake();
                                        }
                                    }
                                    Err(e) => {
                                        tracing::warn!("refusing a shared-memory connection: {e}")
                                    }
                                }
                            });
                    if let Err(e) = spawned {
                        // The setup never ran: give its place back.
                        in_setup.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!("refusing a shared-memory connection: no thread: {e}");
                    }
                }
            })?;
        self.shm = Some(ShmAcceptor {
            accepted,
            name: name.clone(),
            addr,
            stop,
            thread: Some(thread),
        });
        Ok(name)
    }

    /// Adds the shared-memory connections the accepting thread handed over.
    pub(super) fn adopt_shm(
        &mut self,
        handler: &mut impl Handler,
        closed: &mut Vec<(super::PeerId, CloseReason)>,
    ) -> Result<(), NetError> {
        loop {
            let Some(acceptor) = self.shm.as_ref() else {
                return Ok(());
            };
            let Ok(conn) = acceptor.accepted.try_recv() else {
                return Ok(());
            };
            let addr = acceptor.addr;
            // The same connection limit as the TCP listener's (one budget for both).
            let open = self.peers.iter().filter(|p| p.is_some()).count();
            let limit = self.settings.budget.limits().max_connections;
            if open >= limit {
                self.settings.metrics.connection_refused();
                tracing::warn!(
                    "refusing a shared-memory connection: connection limit of {limit} reached"
                );
                drop(conn);
                continue;
            }
            let id = self.add_unauthenticated(conn.into(), addr)?;
            // Frames may have arrived before the fd was registered (edge-triggered).
            let (_, _) = self.read_peer(id, handler, closed);
        }
    }
}
