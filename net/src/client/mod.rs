//! The client side's progress engine: the links of one client (a worker) to its servers and to
//! the scheduler, driven by the caller's own thread.
//!
//! There is no background thread. The caller writes a frame straight from its slices
//! ([`ClientDriver::send_to_server`]) and, while it waits, calls [`ClientDriver::progress`],
//! which reads whatever arrived and hands it to a [`ClientHandler`] (whose [`FrameSink`] may
//! take a reply's values straight into the caller's buffer). A small request therefore costs
//! one write and one read, like a raw ping-pong. A wait first busy-polls every link for the
//! busy-poll time — RDMA completion queues without a system call, TCP sockets with
//! non-blocking reads that never sleep, yielding the core between rounds — and only then
//! sleeps in epoll (and, for RDMA, on the completion channels). A reply that comes back within
//! that time is seen at busy-poll latency; a node that waits longer burns no core.
//!
//! [`Dialer`] sets up the links to servers ([`dial`]).

pub mod dial;

use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::Registration;
use crate::{Frame, FrameParts, FrameSink, Link, NetError, NoDirectValues, Peer, ReadOutcome};

pub use dial::{DialError, DialOptions, Dialer, ServerAddrs};

const SCHEDULER: Token = Token(usize::MAX);

/// What a client does with what arrives. The [`FrameSink`] part is asked, before a server's
/// frame is read, whether its values have a place waiting for them.
pub trait ClientHandler: FrameSink {
    /// What a lost server may turn into.
    type Error: From<NetError>;
    /// A whole frame from server `server`.
    fn server_frame(&mut self, server: u32, frame: Frame);
    /// The link to `server` closed or failed; an error stops the progress that found it.
    fn server_lost(&mut self, server: u32) -> Result<(), Self::Error>;
    /// A whole frame from the scheduler.
    fn scheduler_frame(&mut self, frame: Frame);
    /// The connection to the scheduler closed or failed.
    fn scheduler_lost(&mut self);
}

/// One client's connections and its poller.
pub struct ClientDriver {
    poll: Poll,
    events: Events,
    scheduler: Peer,
    /// By rank; `None` for a rank that could not be dialed (see [`ClientDriver::add_absent`]).
    servers: Vec<Option<Link>>,
    /// How long a wait polls the links before the thread sleeps (zero: sleep at once).
    busy_poll: Duration,
}

impl ClientDriver {
    /// Starts with the connection to the scheduler; every wait polls the links for
    /// `busy_poll` before it sleeps.
    pub fn new(mut scheduler: Peer, busy_poll: Duration) -> Result<ClientDriver, NetError> {
        let poll = Poll::new()?;
        poll.registry()
            .register(scheduler.stream_mut(), SCHEDULER, Interest::READABLE)?;
        Ok(ClientDriver {
            poll,
            events: Events::with_capacity(64),
            scheduler,
            servers: Vec::new(),
            busy_poll,
        })
    }

    /// Dials `to` with `dialer` (see [`Dialer::connect`]) and adds the link as the next
    /// server; returns its index.
    pub fn dial_server(
        &mut self,
        dialer: &Dialer,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        pool: crate::BufferPool,
        metrics: crate::Metrics,
    ) -> Result<u32, DialError> {
        let link = dialer.connect(to, options, pool, metrics)?;
        Ok(self.add_server(link)?)
    }

    /// Adds `link` as the next server (in rank order); returns its index.
    pub fn add_server(&mut self, mut link: Link) -> Result<u32, NetError> {
        let token = Token(self.servers.len());
        link.register(self.poll.registry(), token, Interest::READABLE)?;
        self.servers.push(Some(link));
        Ok(self.servers.len() as u32 - 1)
    }

    /// Takes the next rank's place without a link (a server that could not be dialed), so
    /// that the ranks after it can be added; [`ClientDriver::redial_server`] may fill it
    /// later. Sending to it fails as an unknown peer; nothing is ever read from it.
    pub fn add_absent(&mut self) -> u32 {
        self.servers.push(None);
        self.servers.len() as u32 - 1
    }

    /// Dials `to` into the place of an absent rank ([`ClientDriver::add_absent`]).
    pub fn redial_server(
        &mut self,
        dialer: &Dialer,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        pool: crate::BufferPool,
        metrics: crate::Metrics,
    ) -> Result<(), DialError> {
        let index = to.server as usize;
        if !matches!(self.servers.get(index), Some(None)) {
            return Err(NetError::UnknownPeer(index).into());
        }
        let mut link = dialer.connect(to, options, pool, metrics)?;
        link.register(self.poll.registry(), Token(index), Interest::READABLE)
            .map_err(NetError::from)?;
        self.servers[index] = Some(link);
        Ok(())
    }

    /// How many server ranks have a place (connected, or absent).
    pub fn num_servers(&self) -> usize {
        self.servers.len()
    }

    /// Whether rank `server` has a place but no link.
    pub fn is_absent(&self, server: u32) -> bool {
        matches!(self.servers.get(server as usize), Some(None))
    }

    /// The link to server `server`.
    pub fn server(&self, server: u32) -> Option<&Link> {
        self.servers.get(server as usize).and_then(Option::as_ref)
    }

    /// How many server links are RDMA (the rest are TCP).
    pub fn rdma_servers(&self) -> usize {
        self.servers
            .iter()
            .flatten()
            .filter(|l| l.is_rdma())
            .count()
    }

    /// Writes a finished frame to server `server`, straight from the frame's slices; while the
    /// socket is full, reads whatever arrives (into `handler`) so neither side can block the
    /// other. An RDMA link never blocks: what cannot be posted now goes out as credits return.
    pub fn send_to_server<H: ClientHandler>(
        &mut self,
        server: u32,
        frame: &FrameParts<'_>,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        let link = self
            .servers
            .get_mut(server as usize)
            .and_then(Option::as_mut)
            .ok_or(NetError::UnknownPeer(server as usize))?;
        if link.is_rdma() {
            link.send(frame)?;
            return Ok(());
        }
        self.write_blocking(Some(server), frame, handler)
    }

    /// Writes a finished frame to the scheduler (control messages are small; waits, reading
    /// into `handler`, while the socket is full).
    pub fn send_to_scheduler<H: ClientHandler>(
        &mut self,
        frame: &FrameParts<'_>,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        self.write_blocking(None, frame, handler)
    }

    /// Sends a finished frame to server `server` whose values lie in `values`, registered with
    /// that server's link (see [`Link::send_registered`]).
    pub fn send_registered(
        &mut self,
        server: u32,
        frame: &FrameParts<'_>,
        values: &Registration,
    ) -> Result<(), NetError> {
        self.servers
            .get_mut(server as usize)
            .and_then(Option::as_mut)
            .ok_or(NetError::UnknownPeer(server as usize))?
            .send_registered(frame, values)
    }

    /// Writes a whole frame to a TCP server (`Some(rank)`) or the scheduler (`None`).
    fn write_blocking<H: ClientHandler>(
        &mut self,
        server: Option<u32>,
        frame: &FrameParts<'_>,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        let total = frame.wire_len();
        let mut offset = 0;
        loop {
            let peer = self.peer_mut(server)?;
            offset = peer.write_frame_from(frame, offset)?;
            if offset == total {
                return Ok(());
            }
            let token = server.map_or(SCHEDULER, |s| Token(s as usize));
            self.set_writable(server, token, true)?;
            let waited = self.progress(Some(Duration::from_millis(100)), handler);
            self.set_writable(server, token, false)?;
            waited?;
        }
    }

    fn set_writable(
        &mut self,
        server: Option<u32>,
        token: Token,
        on: bool,
    ) -> Result<(), NetError> {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let registry = self.poll.registry().try_clone()?;
        let peer = self.peer_mut(server)?;
        registry.reregister(peer.stream_mut(), token, interest)?;
        Ok(())
    }

    /// The TCP connection to a server (`Some(rank)`) or the scheduler.
    fn peer_mut(&mut self, server: Option<u32>) -> Result<&mut Peer, NetError> {
        match server {
            None => Ok(&mut self.scheduler),
            Some(s) => self
                .servers
                .get_mut(s as usize)
                .and_then(Option::as_mut)
                .and_then(Link::as_tcp_mut)
                .ok_or(NetError::UnknownPeer(s as usize)),
        }
    }

    /// Waits up to `timeout` for any link, then hands every frame available to `handler`.
    /// The wait first polls the links for the busy-poll time (see the module's page), then
    /// re-arms the RDMA completion channels and sleeps in epoll.
    pub fn progress<H: ClientHandler>(
        &mut self,
        timeout: Option<Duration>,
        handler: &mut H,
    ) -> Result<(), H::Error> {
        if !self.read_available(handler)? {
            if !self.busy_poll.is_zero() {
                let until = Instant::now() + self.busy_poll.min(timeout.unwrap_or(Duration::MAX));
                // TCP sockets are polled with a non-blocking read each (a system call that
                // never sleeps), and the core is offered to any other runnable thread between
                // rounds, so an oversubscribed node does not starve the peer it waits for.
                // RDMA alone needs no system call: the clock is read every few rounds only
                // (where it is not in the vDSO each read is a system call).
                let tcp = self.servers.iter().flatten().any(|l| !l.is_rdma());
                let mut round = 0u32;
                loop {
                    let got = if tcp {
                        self.read_available(handler)?
                    } else {
                        self.read_rdma_available(handler)?
                    };
                    if got {
                        return Ok(());
                    }
                    round = round.wrapping_add(1);
                    if (tcp || round.is_multiple_of(64)) && Instant::now() >= until {
                        break;
                    }
                    if tcp {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                // RDMA fds must be re-armed before the sleep; a frame found meanwhile is read
                // instead.
                let mut ready = false;
                for link in self.servers.iter_mut().flatten() {
                    ready |= link.prepare_sleep()?;
                }
                if ready {
                    self.read_available(handler)?;
                    return Ok(());
                }
            }
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::from(e).into()),
            }
            self.read_available(handler)?;
        }
        Ok(())
    }

    /// Reads every frame the RDMA links hold now (no system call); true if any was handled.
    fn read_rdma_available<H: ClientHandler>(&mut self, handler: &mut H) -> Result<bool, H::Error> {
        let mut any = false;
        for s in 0..self.servers.len() {
            if self.servers[s].as_ref().is_some_and(Link::is_rdma) {
                any |= self.read_server(s, handler)?;
            }
        }
        Ok(any)
    }

    /// Reads every frame server `s`'s link holds now; true if any was handled.
    fn read_server<H: ClientHandler>(
        &mut self,
        s: usize,
        handler: &mut H,
    ) -> Result<bool, H::Error> {
        let mut any = false;
        let Some(link) = self.servers[s].as_mut() else {
            return Ok(false);
        };
        loop {
            match link.read_frame(handler) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    handler.server_frame(s as u32, frame);
                }
                Ok(ReadOutcome::WouldBlock) => return Ok(any),
                Ok(ReadOutcome::Closed) | Err(_) => {
                    handler.server_lost(s as u32)?;
                    return Ok(any);
                }
            }
        }
    }

    /// Reads every frame the links hold now; true if any frame was handled. The scheduler comes
    /// first: when it ends the job, its reason is known before the servers it stopped vanish.
    fn read_available<H: ClientHandler>(&mut self, handler: &mut H) -> Result<bool, H::Error> {
        let mut any = self.read_scheduler(handler);
        for s in 0..self.servers.len() {
            any |= self.read_server(s, handler)?;
        }
        Ok(any)
    }

    /// Reads every frame the scheduler's connection holds now, without waiting and without
    /// touching the servers' links; true if any frame was handled.
    pub fn read_scheduler<H: ClientHandler>(&mut self, handler: &mut H) -> bool {
        let mut any = false;
        loop {
            match self.scheduler.read_frame(&mut NoDirectValues) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    handler.scheduler_frame(frame);
                }
                Ok(ReadOutcome::WouldBlock) => return any,
                Ok(ReadOutcome::Closed) | Err(_) => {
                    handler.scheduler_lost();
                    return any;
                }
            }
        }
    }
}
