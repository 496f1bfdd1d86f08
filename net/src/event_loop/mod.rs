//! A single-threaded mio event loop that owns many connections and hands frames to a handler.
//!
//! The loop runs to completion: a frame is decoded and handled on the thread that read it, and
//! replies are written from the handler's slices straight to the socket. A peer that breaks the
//! wire format is sent an error frame and dropped; every other peer is unaffected.
//!
//! Every accepted connection first runs the accepting side of the authentication handshake
//! ([`crate::auth`]) under tight frame limits and a deadline; the handler hears of it
//! ([`Handler::on_accept`]) only once the peer has proved it holds the cluster secret, and
//! [`Io::identity`] then names the peer. Connections the loop dials are authenticated before
//! they are added. A peer that fails is told why and dropped; the handler never sees it.
//!
//! Connections are [`Link`]s: TCP, RDMA once [`EventLoop::listen_rdma`] has started an
//! RDMA listener (its accepts happen on a helper thread, rdma_cm having no non-blocking
//! accept, and reach the loop through a channel and a waker), or shared memory once
//! [`EventLoop::listen_shm`] has (accepted the same way).
//!
//! After each round that handled a frame the loop busy-polls for the busy-poll time
//! ([`EventLoop::set_busy_poll`]) before it sleeps in epoll, so a request that arrives right
//! after a reply is seen without a wake-up: RDMA and shared-memory connections are polled
//! directly (epoll only
//! every few rounds, for new connections), TCP ones by asking epoll without a timeout, which
//! never sleeps, yielding the core between rounds. Idle, the loop sleeps and burns no core.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "rdma")]
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::auth::{self, Credentials, Identity, ServerHandshake};
use crate::budget::{Admission, HeldReads};
mod handle;
mod handshake;
mod shm_accept;

use handle::{add_peer, dial, proved_identity};

use crate::spin::SpinYield;
use crate::{
    Budget, BufferPool, Frame, FrameLimits, FrameParts, Link, Metrics, NetError, NoDirectValues,
    Peer, ReadOutcome,
};

/// Identifies a connection within one [`EventLoop`].
pub type PeerId = usize;

const LISTENER: Token = Token(usize::MAX);
/// The waker of the accepting threads (RDMA, shared memory).
const ACCEPTED: Token = Token(usize::MAX - 1);
/// How long a loop keeps polling after the last frame before it sleeps, unless
/// [`EventLoop::set_busy_poll`] says otherwise.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(500);
/// While spinning, rounds between two reads of the clock.
const CLOCK_EVERY: u32 = 64;
/// While spinning, rounds between two looks at epoll.
const EPOLL_EVERY: u32 = 16;
/// Frames handled from one peer before the others get a turn.
const FRAMES_PER_TURN: usize = 64;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// This node closed it (handler asked, or shutdown).
    Local,
    /// A wire-format or I/O error; the text says which.
    Error(String),
}

/// Reacts to connection events. All calls happen on the loop's thread.
pub trait Handler {
    /// A peer connected to the listener and authenticated ([`Io::identity`] names it).
    fn on_accept(&mut self, _peer: PeerId, _addr: SocketAddr, _io: &mut Io<'_>) {}
    /// A whole, validated frame arrived.
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>);
    /// A connection ended (after which `peer` may be reused for a new connection).
    fn on_close(&mut self, _peer: PeerId, _reason: &CloseReason, _io: &mut Io<'_>) {}
    /// Called at least every tick interval.
    fn on_tick(&mut self, _io: &mut Io<'_>) {}
    /// Called after every round of events, for work the handler does a piece at a time (a
    /// range copy). Returns whether more is waiting now: then the loop does not sleep, so it
    /// should return false while that work waits on a full socket (whose draining wakes the
    /// loop).
    fn background(&mut self, _io: &mut Io<'_>) -> bool {
        false
    }
    /// Checked after each round of events; true ends [`EventLoop::run`].
    fn should_stop(&self) -> bool;
}

/// What a handler can do with connections.
pub struct Io<'a> {
    peers: &'a mut Vec<Option<Link>>,
    auth: &'a mut Vec<AuthState>,
    registry: &'a Registry,
    settings: &'a Settings,
    closed: &'a mut Vec<(PeerId, CloseReason)>,
}

#[derive(Debug, Clone)]
struct Settings {
    limits: FrameLimits,
    pool: BufferPool,
    metrics: Metrics,
    payload_crc: bool,
    max_backlog: usize,
    credentials: Credentials,
    handshake_timeout: Duration,
    budget: Budget,
    busy_poll: Duration,
}

/// Where a connection stands with the handshake.
#[derive(Debug, Default)]
enum AuthState {
    /// No connection in this slot.
    #[default]
    Vacant,
    /// Accepted; the peer has until `deadline` to authenticate.
    Pending {
        handshake: ServerHandshake,
        addr: SocketAddr,
        deadline: Instant,
    },
    /// Authenticated as `Identity` (the handler knows it).
    Ready(Identity),
}

/// Owns a listener (optional) and connections, and runs a [`Handler`] over them.
pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    rdma: Option<RdmaAcceptor>,
    shm: Option<shm_accept::ShmAcceptor>,
    /// Wakes the loop when an accepting thread has a connection for it (one per poller).
    waker: Option<Arc<mio::Waker>>,
    peers: Vec<Option<Link>>,
    auth: Vec<AuthState>,
    settings: Settings,
    tick: Duration,
    /// Connections not read until their queued replies drain.
    held: HeldReads,
    admission: Admission,
}

/// The thread that accepts RDMA connections for a loop, and how they reach it.
struct RdmaAcceptor {
    #[cfg(feature = "rdma")]
    accepted: mpsc::Receiver<crate::rdma::RdmaConn>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RdmaAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EventLoop {
    /// A loop listening on `bind` (port 0 picks a free port) or, with `None`, only making
    /// outgoing connections; every connection is authenticated with `credentials`. It has the
    /// default [`Budget`] of its own.
    pub fn new(
        bind: Option<SocketAddr>,
        limits: FrameLimits,
        metrics: Metrics,
        credentials: Credentials,
    ) -> Result<EventLoop, NetError> {
        EventLoop::with_budget(bind, limits, metrics, credentials, Budget::default())
    }

    /// [`EventLoop::new`] charging replies, large frames and connections to `budget` (which
    /// other loops of the process may share).
    pub fn with_budget(
        bind: Option<SocketAddr>,
        limits: FrameLimits,
        metrics: Metrics,
        credentials: Credentials,
        budget: Budget,
    ) -> Result<EventLoop, NetError> {
        let poll = Poll::new()?;
        let listener = match bind {
            Some(addr) => {
                let mut l = TcpListener::bind(addr).map_err(|source| NetError::Connect {
                    addr: format!("listen {addr}"),
                    source,
                })?;
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        Ok(EventLoop {
            poll,
            listener,
            rdma: None,
            shm: None,
            waker: None,
            peers: Vec::new(),
            auth: Vec::new(),
            settings: Settings {
                limits,
                pool: BufferPool::with_budget(budget.clone()),
                metrics,
                payload_crc: true,
                max_backlog: 4 << 30,
                credentials,
                handshake_timeout: auth::DEFAULT_HANDSHAKE_TIMEOUT,
                budget,
                busy_poll: DEFAULT_BUSY_POLL,
            },
            tick: Duration::from_millis(100),
            held: HeldReads::default(),
            admission: Admission::default(),
        })
    }

    /// Whether outgoing frames carry a payload checksum (on by default).
    pub fn set_payload_crc(&mut self, on: bool) {
        self.settings.payload_crc = on;
    }

    /// How long an accepted peer has to authenticate, and a dialed one to answer.
    /// How long the loop keeps polling after a round that handled a frame before it sleeps
    /// in epoll (zero: it sleeps at once).
    pub fn set_busy_poll(&mut self, spin: Duration) {
        self.settings.busy_poll = spin;
    }

    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.settings.handshake_timeout = timeout;
    }

    /// How often [`Handler::on_tick`] runs at the least.
    pub fn set_tick(&mut self, tick: Duration) {
        self.tick = tick;
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.settings.metrics
    }

    /// What replies, large frames and connections are charged to.
    pub fn budget(&self) -> &Budget {
        &self.settings.budget
    }

    /// Opens and authenticates a connection before the loop runs.
    pub fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> Result<PeerId, NetError> {
        let (link, identity) = dial(&self.settings, addr, timeout)?;
        self.adopt(link, identity)
    }

    /// Adds a connection made and authenticated elsewhere (see [`auth::authenticate`]) to the
    /// loop; `identity` is who the peer proved to be.
    pub fn adopt(&mut self, peer: impl Into<Link>, identity: Identity) -> Result<PeerId, NetError> {
        add_peer(
            (&mut self.peers, &mut self.auth),
            self.poll.registry(),
            &self.settings.metrics,
            peer.into(),
            AuthState::Ready(identity),
        )
    }

    /// Who the peer of connection `peer` proved to be.
    pub fn identity(&self, peer: PeerId) -> Option<Identity> {
        proved_identity(&self.auth, peer)
    }

    /// The credentials this loop presents and checks.
    pub fn credentials(&self) -> &Credentials {
        &self.settings.credentials
    }

    /// Also accepts RDMA connections on `addr` (an address of the RDMA device's interface;
    /// rdma_cm ports are their own space, so the TCP listener's port can be reused). Accepted
    /// connections are handed to [`Handler::on_accept`] like TCP ones. Returns the address.
    #[cfg(feature = "rdma")]
    pub fn listen_rdma(&mut self, addr: SocketAddr) -> Result<SocketAddr, NetError> {
        let s = &self.settings;
        let listener = crate::rdma::RdmaListener::bind_with(
            addr,
            s.limits,
            s.pool.clone(),
            s.metrics.clone(),
        )?;
        let waker = self.waker()?;
        let (tx, accepted) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rdma-accept".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept_timeout(Duration::from_millis(200)) {
                        Ok(Some(conn)) => {
                            if tx.send(conn).is_err() {
                                return;
                            }
                            let _ = waker.wake();
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!("RDMA accept on {addr} failed: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        self.rdma = Some(RdmaAcceptor {
            accepted,
            addr,
            stop,
            thread: Some(thread),
        });
        Ok(addr)
    }

    /// The waker the accepting threads share (a poller may have one only).
    fn waker(&mut self) -> io::Result<Arc<mio::Waker>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let w = Arc::new(mio::Waker::new(self.poll.registry(), ACCEPTED)?);
        self.waker = Some(w.clone());
        Ok(w)
    }

    /// The address of the RDMA listener, once [`EventLoop::listen_rdma`] started one.
    pub fn rdma_addr(&self) -> Option<SocketAddr> {
        self.rdma.as_ref().map(|r| r.addr)
    }

    /// The loop's buffer pool (for connections made before they are adopted).
    pub fn pool(&self) -> &BufferPool {
        &self.settings.pool
    }

    /// Sends a frame before the loop runs (e.g. a registration).
    pub fn send(&mut self, peer: PeerId, frame: &mut FrameParts<'_>) -> Result<(), NetError> {
        let mut closed = Vec::new();
        self.io(&mut closed).send(peer, frame)
    }

    /// The local address of the connection to `peer` (the address others can reach us at).
    pub fn local_addr_of(&self, peer: PeerId) -> Option<SocketAddr> {
        self.peers
            .get(peer)
            .and_then(Option::as_ref)
            .and_then(Link::local_addr)
    }

    /// Runs until the handler says stop.
    pub fn run(&mut self, handler: &mut impl Handler) -> Result<(), NetError> {
        let mut events = Events::with_capacity(256);
        // Reused every round (a spinning loop must not allocate per round).
        let mut ready: Vec<(Token, bool, bool)> = Vec::new();
        let mut backlog: Vec<PeerId> = Vec::new();
        let mut closed: Vec<(PeerId, CloseReason)> = Vec::new();
        let mut last_tick = Instant::now();
        let mut spin_until: Option<Instant> = None;
        // Whether the spin was started by a TCP frame: then epoll is asked every round.
        let mut spin_tcp = false;
        // When the spin offers its core, and whether it does now.
        let mut spin_yield = SpinYield::never();
        let mut yielding = false;
        let mut round = 0u32;
        // Whether the handler's background work wants another round at once.
        let mut background = false;
        while !handler.should_stop() {
            round = round.wrapping_add(1);
            // While spinning on RDMA and shared memory, read the clock only every few rounds:
            // where it is not in the vDSO (a VM without a stable TSC) each read is a system
            // call. A TCP spin makes system calls every round anyway.
            let check_clock =
                spin_until.is_none() || spin_tcp || yielding || round.is_multiple_of(CLOCK_EVERY);
            if check_clock && spin_until.is_some() {
                let now = Instant::now();
                if spin_until.is_some_and(|t| now >= t) {
                    spin_until = None;
                    spin_tcp = false;
                    spin_yield = SpinYield::never();
                    yielding = false;
                } else {
                    yielding = spin_yield.at(now);
                }
            }
            let spinning = spin_until.is_some();
            if backlog.is_empty() && !spinning && !background {
                // About to sleep: RDMA fds must be re-armed, and anything already there read.
                self.prepare_sleep(&mut backlog, &mut closed);
                self.report_closed(handler, &mut closed);
            } else if spinning && yielding {
                std::thread::yield_now();
            } else if spinning {
                std::hint::spin_loop();
            }
            let timeout = if backlog.is_empty() && !spinning && !background {
                self.tick.saturating_sub(last_tick.elapsed())
            } else {
                Duration::ZERO
            };
            // While spinning on RDMA and shared-memory connections only, ask epoll (a system call) only now and
            // then: it is there for TCP peers and new connections, which can wait a few rounds.
            if spinning && !spin_tcp && !round.is_multiple_of(EPOLL_EVERY) {
                events.clear();
            } else {
                match self.poll.poll(&mut events, Some(timeout)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            ready.clear();
            ready.extend(events.iter().map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable(),
                )
            }));
            ready.extend(backlog.drain(..).map(|p| (Token(p), true, false)));
            if spinning {
                // Busy RDMA and shared-memory connections are polled whether or not their fd
                // fired.
                ready.extend(
                    self.peers
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.as_ref().is_some_and(Link::polls_in_memory))
                        .map(|(i, _)| (Token(i), true, false)),
                );
            }
            for &(token, readable, writable) in &ready {
                if token == LISTENER {
                    self.accept_all();
                    continue;
                }
                if token == ACCEPTED {
                    self.adopt_rdma(handler, &mut closed)?;
                    self.adopt_shm(handler, &mut closed)?;
                    continue;
                }
                let peer = token.0;
                let link = self.peers.get(peer).and_then(Option::as_ref);
                let rdma = link.is_some_and(Link::polls_in_memory);
                let link_yields = link.is_some_and(Link::yields_while_spinning);
                // A shared-memory link has no writable interest: its wakeup (the peer made
                // room) arrives as readable, and its queue must move even while its reads are
                // held.
                let room = rdma && link.is_some_and(|l| l.queued_bytes() > 0);
                if writable || (readable && room) {
                    self.flush_peer(peer, &mut closed);
                }
                if readable {
                    let (frames, more) = self.read_peer(peer, handler, &mut closed);
                    if more {
                        backlog.push(peer);
                    }
                    if frames > 0 && !self.settings.busy_poll.is_zero() {
                        let now = Instant::now();
                        spin_until = Some(now + self.settings.busy_poll);
                        spin_tcp |= !rdma;
                        spin_yield = spin_yield.restart(now, !rdma, link_yields);
                        yielding = spin_yield.at(now);
                    }
                }
                self.report_closed(handler, &mut closed);
            }
            let peers = &self.peers;
            let queued = |p: PeerId| {
                peers
                    .get(p)
                    .and_then(Option::as_ref)
                    .map(Link::queued_bytes)
            };
            self.held
                .release(&self.settings.budget, queued, &mut backlog);
            let mut io = self.io(&mut closed);
            background = handler.background(&mut io);
            self.report_closed(handler, &mut closed);
            if check_clock && last_tick.elapsed() >= self.tick {
                last_tick = Instant::now();
                self.expire_handshakes(&mut closed);
                if std::mem::take(&mut self.admission.retry) {
                    self.accept_all();
                }
                let mut io = self.io(&mut closed);
                handler.on_tick(&mut io);
                self.report_closed(handler, &mut closed);
            }
        }
        Ok(())
    }

    fn io<'a>(&'a mut self, closed: &'a mut Vec<(PeerId, CloseReason)>) -> Io<'a> {
        Io {
            peers: &mut self.peers,
            auth: &mut self.auth,
            registry: self.poll.registry(),
            settings: &self.settings,
            closed,
        }
    }

    fn report_closed(
        &mut self,
        handler: &mut impl Handler,
        closed: &mut Vec<(PeerId, CloseReason)>,
    ) {
        while let Some((peer, reason)) = closed.pop() {
            let mut more = Vec::new();
            let mut io = self.io(&mut more);
            handler.on_close(peer, &reason, &mut io);
            closed.extend(more);
        }
    }

    /// Accepts every waiting connection; each starts with the handshake.
    fn accept_all(&mut self) {
        self.admission.open = self.peers.iter().filter(|p| p.is_some()).count();
        let limits = *self.settings.budget.limits();
        while let Some((stream, addr)) = self
            .listener
            .as_ref()
            .and_then(|l| self.admission.next(l, &limits, &self.settings.metrics))
        {
            let s = &self.settings;
            // One that fails to set up (gone already) is dropped, never fatal to the loop.
            let added = Peer::new(stream, s.limits, s.pool.clone(), s.metrics.clone())
                .map_err(NetError::from)
                .and_then(|peer| self.add_unauthenticated(peer.into(), addr));
            match added {
                Ok(_) => self.admission.open += 1,
                Err(e) => tracing::warn!("dropping connection from {addr}: {e}"),
            }
        }
    }

    /// Re-arms every RDMA and shared-memory connection's fd before a sleep; those with a frame
    /// already waiting go to `backlog` (read now instead of sleeping).
    fn prepare_sleep(
        &mut self,
        backlog: &mut Vec<PeerId>,
        closed: &mut Vec<(PeerId, CloseReason)>,
    ) {
        for id in 0..self.peers.len() {
            let Some(link) = self.peers[id].as_mut().filter(|l| l.polls_in_memory()) else {
                continue;
            };
            match link.prepare_sleep() {
                Ok(true) => backlog.push(id),
                Ok(false) => {}
                Err(e) => self.io(closed).close(id, CloseReason::Error(e.to_string())),
            }
        }
    }

    /// Adds the RDMA connections the accepting thread handed over.
    fn adopt_rdma(
        &mut self,
        handler: &mut impl Handler,
        closed: &mut Vec<(PeerId, CloseReason)>,
    ) -> Result<(), NetError> {
        #[cfg(feature = "rdma")]
        loop {
            let Some(conn) = self.rdma.as_ref().and_then(|r| r.accepted.try_recv().ok()) else {
                break;
            };
            let addr = self
                .rdma
                .as_ref()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |r| r.addr);
            let id = self.add_unauthenticated(conn.into(), addr)?;
            // Frames may have arrived before the fd was registered (edge-triggered).
            let (_, _) = self.read_peer(id, handler, closed);
        }
        let _ = (handler, closed);
        Ok(())
    }

    fn flush_peer(&mut self, peer: PeerId, closed: &mut Vec<(PeerId, CloseReason)>) {
        let Some(p) = self.peers.get_mut(peer).and_then(Option::as_mut) else {
            return;
        };
        let before = p.queued_bytes();
        let flushed = p.flush();
        self.settings
            .budget
            .replies_changed(before, p.queued_bytes());
        match flushed {
            Ok(true) => {
                let _ = p.reregister(self.poll.registry(), Token(peer), Interest::READABLE);
            }
            Ok(false) => {}
            Err(e) => self
                .io(closed)
                .close(peer, CloseReason::Error(e.to_string())),
        }
    }

    /// Handles up to [`FRAMES_PER_TURN`] frames; returns how many, and whether the peer may
    /// have more.
    fn read_peer(
        &mut self,
        peer: PeerId,
        handler: &mut impl Handler,
        closed: &mut Vec<(PeerId, CloseReason)>,
    ) -> (usize, bool) {
        for n in 0..FRAMES_PER_TURN {
            let Some(p) = self.peers.get_mut(peer).and_then(Option::as_mut) else {
                return (n, false);
            };
            if self.settings.budget.holds_reads(p.queued_bytes()) {
                self.held.hold(peer);
                return (n, false);
            }
            match p.read_frame(&mut NoDirectValues) {
                Ok(ReadOutcome::Frame(frame)) => {
                    if matches!(self.auth[peer], AuthState::Ready(_)) {
                        let mut io = self.io(closed);
                        handler.on_frame(peer, frame, &mut io);
                    } else {
                        self.handshake_step(peer, &frame, handler, closed);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return (n, false),
                Ok(ReadOutcome::Closed) => {
                    self.io(closed).close(peer, CloseReason::PeerClosed);
                    return (n, false);
                }
                Err(NetError::Wire(e)) => {
                    tracing::warn!("dropping peer {peer} ({:?}): {e}", p.addr());
                    let (status, text) = match self.auth[peer] {
                        AuthState::Ready(_) => (e.status(), e.to_string()),
                        // Most likely a peer that skipped the handshake: say so.
                        _ => (
                            crate::Status::Unauthorized,
                            format!("a frame before the handshake finished: {e}"),
                        ),
                    };
                    let mut io = self.io(closed);
                    io.send_error(peer, None, status, &text);
                    io.close(peer, CloseReason::Error(e.to_string()));
                    return (n, false);
                }
                Err(e) => {
                    self.io(closed)
                        .close(peer, CloseReason::Error(e.to_string()));
                    return (n, false);
                }
            }
        }
        (FRAMES_PER_TURN, true)
    }
}
