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

use crate::spin::SpinYield;
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
    /// Whether the scheduler's connection closed (it is no longer read until replaced).
    scheduler_gone: bool,
    /// By rank; `None` for a rank that could not be dialed (see
    /// [`ClientDriver::add_absent_server`]).
    servers: Vec<Option<Link>>,
    /// How long a wait polls the links before the thread sleeps (zero: sleep at once).
    busy_poll: Duration,
    /// Looks at the in-memory links since the scheduler's socket was last read (see
    /// [`SCHEDULER_EVERY`]), counted across waits.
    looks_since_scheduler: u32,
}

/// While every server link is polled in memory, looks at them between two reads of the
/// scheduler's socket (a system call): counted across waits, so that a stream of short
/// waits reads the scheduler's heartbeats too.
const SCHEDULER_EVERY: u32 = 64;

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
            scheduler_gone: false,
            servers: Vec::new(),
            busy_poll,
            looks_since_scheduler: 0,
        })
    }

    /// Puts `scheduler`, a new connection to the scheduler (dialed and authenticated by the
    /// caller after the old one was lost), in the old one's place.
    pub fn replace_scheduler(&mut self, mut scheduler: Peer) -> Result<(), NetError> {
        let registry = self.poll.registry();
        let _ = registry.deregister(self.scheduler.stream_mut());
        registry.register(scheduler.stream_mut(), SCHEDULER, Interest::READABLE)?;
        self.scheduler = scheduler;
        self.scheduler_gone = false;
        Ok(())
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

    /// Takes the next rank's place without a link (it could not be dialed), so that the ranks
    /// after it can be added; requests to it fail as to an unknown peer until
    /// [`ClientDriver::redial_server`] connects it. Returns its index.
    pub fn add_absent_server(&mut self) -> u32 {
        self.servers.push(None);
        self.servers.len() as u32 - 1
    }

    /// Dials server `rank` again (an absent one, or one whose link was lost) with `dialer`,
    /// replacing its link.
    pub fn redial_server(
        &mut self,
        rank: u32,
        dialer: &Dialer,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        pool: crate::BufferPool,
        metrics: crate::Metrics,
    ) -> Result<(), DialError> {
        let slot = self
            .servers
            .get_mut(rank as usize)
            .ok_or(NetError::UnknownPeer(rank as usize))?;
        let mut link = dialer.connect(to, options, pool, metrics)?;
        link.register(
            self.poll.registry(),
            Token(rank as usize),
            Interest::READABLE,
        )
        .map_err(NetError::from)?;
        // The old link, if any, is closed (and so leaves the poller) here.
        *slot = Some(link);
        Ok(())
    }

    /// How many servers are connected.
    pub fn num_servers(&self) -> usize {
        self.servers.len()
    }

    /// The link to server `server` (`None` as well for an absent one).
    pub fn server(&self, server: u32) -> Option<&Link> {
        self.servers.get(server as usize).and_then(Option::as_ref)
    }

    /// How many server links are RDMA.
    pub fn rdma_servers(&self) -> usize {
        self.links().filter(|l| l.is_rdma()).count()
    }

    /// How many server links are shared memory.
    pub fn shm_servers(&self) -> usize {
        self.links().filter(|l| l.is_shm()).count()
    }

    /// The links of the servers that have one.
    fn links(&self) -> impl Iterator<Item = &Link> {
        self.servers.iter().flatten()
    }

    /// The link to server `server`, if it has one.
    fn link_mut(&mut self, server: u32) -> Result<&mut Link, NetError> {
        self.servers
            .get_mut(server as usize)
            .and_then(Option::as_mut)
            .ok_or(NetError::UnknownPeer(server as usize))
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
        let patience = self.busy_poll;
        let link = self.link_mut(server)?;
        if link.is_rdma() {
            link.send(frame)?;
            return Ok(());
        }
        if link.is_shm() {
            // Written into the ring while the server reads, the rest queued (and moved along
            // by every read of this link).
            link.send_patiently(frame, patience)?;
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
        if self.scheduler_gone {
            let closed = std::io::Error::from(std::io::ErrorKind::NotConnected);
            return Err(NetError::from(closed).into());
        }
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
        self.link_mut(server)?.send_registered(frame, values)
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
                .link_mut(s)?
                .as_tcp_mut()
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
        // With every server link polled in memory (RDMA, shared memory), a look at them needs
        // no system call; the scheduler's socket is read every `SCHEDULER_EVERY` looks and
        // after any sleep, so a back-to-back exchange makes almost no system call.
        let tcp = self.links().any(|l| !l.polls_in_memory());
        let first = if tcp {
            self.read_available(handler)?
        } else {
            self.look_in_memory(handler)?
        };
        if !first {
            if !self.busy_poll.is_zero() {
                // TCP sockets are polled with a non-blocking read each (a system call that
                // never sleeps). With TCP links the core is offered to any other runnable
                // thread between rounds, so an oversubscribed node does not starve the peer it
                // waits for; with shared-memory links too, once the spin has run alone for
                // `SPIN_ALONE` (`Link::yields_while_spinning`). RDMA and shared memory need no
                // system call: the clock is read every few rounds only (where it is not in the
                // vDSO each read is a system call).
                let yields = self.links().any(Link::yields_while_spinning);
                let start = Instant::now();
                let until = start + self.busy_poll.min(timeout.unwrap_or(Duration::MAX));
                let spin_yield = SpinYield::never().restart(start, tcp, yields);
                let mut yielding = spin_yield.at(start);
                let mut round = 0u32;
                loop {
                    let got = if tcp {
                        self.read_available(handler)?
                    } else {
                        self.look_in_memory(handler)?
                    };
                    if got {
                        return Ok(());
                    }
                    round = round.wrapping_add(1);
                    if yielding || round.is_multiple_of(64) {
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        yielding = spin_yield.at(now);
                    }
                    if yielding {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
            // RDMA fds must be re-armed before the sleep, and shared-memory links must ask
            // their peers for a wakeup (without busy polling too); a frame found meanwhile is
            // read instead.
            let mut ready = false;
            for link in self.servers.iter_mut().flatten() {
                ready |= link.prepare_sleep()?;
            }
            if ready {
                self.read_available(handler)?;
                return Ok(());
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

    /// One look of a spin over in-memory links: every frame they hold, and every
    /// [`SCHEDULER_EVERY`] looks the scheduler's; true if any frame was handled.
    fn look_in_memory<H: ClientHandler>(&mut self, handler: &mut H) -> Result<bool, H::Error> {
        self.looks_since_scheduler += 1;
        let mut any = false;
        if self.looks_since_scheduler >= SCHEDULER_EVERY {
            self.looks_since_scheduler = 0;
            any = self.read_scheduler(handler);
        }
        Ok(self.read_memory_polled(handler)? || any)
    }

    /// Reads every frame the RDMA and shared-memory links hold now (no system call); true if
    /// any was handled.
    fn read_memory_polled<H: ClientHandler>(&mut self, handler: &mut H) -> Result<bool, H::Error> {
        let mut any = false;
        for s in 0..self.servers.len() {
            if self.servers[s].as_ref().is_some_and(Link::polls_in_memory) {
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
        loop {
            let Some(link) = self.servers[s].as_mut() else {
                return Ok(any);
            };
            match link.read_frame(handler) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    handler.server_frame(s as u32, frame);
                }
                Ok(ReadOutcome::WouldBlock) => return Ok(any),
                Ok(ReadOutcome::Closed) | Err(_) => {
                    // The scheduler first: when it ended the job, its reason is known before
                    // the loss of a server it stopped (a spin over in-memory links reads the
                    // scheduler only now and then).
                    self.read_scheduler(handler);
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
    /// touching the servers' links; true if any frame was handled. A connection found closed
    /// is reported once ([`ClientHandler::scheduler_lost`]) and not read again until
    /// [`ClientDriver::replace_scheduler`].
    pub fn read_scheduler<H: ClientHandler>(&mut self, handler: &mut H) -> bool {
        let mut any = false;
        if self.scheduler_gone {
            return false;
        }
        loop {
            match self.scheduler.read_frame(&mut NoDirectValues) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    handler.scheduler_frame(frame);
                }
                Ok(ReadOutcome::WouldBlock) => return any,
                Ok(ReadOutcome::Closed) | Err(_) => {
                    self.scheduler_gone = true;
                    let _ = self.poll.registry().deregister(self.scheduler.stream_mut());
                    handler.scheduler_lost();
                    return any;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::{BufferPool, FrameLimits, Header, Metrics};

    /// Counts the scheduler losses it hears of.
    #[derive(Default)]
    struct Losses(u32);

    impl FrameSink for Losses {
        fn direct_values(&mut self, _: &Header) -> Option<&mut [u8]> {
            None
        }
    }

    impl ClientHandler for Losses {
        type Error = NetError;
        fn server_frame(&mut self, _: u32, _: Frame) {}
        fn server_lost(&mut self, _: u32) -> Result<(), NetError> {
            Ok(())
        }
        fn scheduler_frame(&mut self, _: Frame) {}
        fn scheduler_lost(&mut self) {
            self.0 += 1;
        }
    }

    fn dial(listener: &TcpListener) -> Peer {
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_secs(5);
        let peer = Peer::connect(
            addr,
            timeout,
            FrameLimits::default(),
            BufferPool::new(),
            Metrics::new(),
        );
        peer.unwrap()
    }

    #[test]
    fn a_lost_scheduler_is_reported_once_and_can_be_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut driver = ClientDriver::new(dial(&listener), Duration::ZERO).unwrap();
        drop(listener.accept().unwrap());
        let mut losses = Losses::default();
        for _ in 0..50 {
            driver
                .progress(Some(Duration::from_millis(20)), &mut losses)
                .unwrap();
        }
        assert_eq!(losses.0, 1, "a closed connection is reported once");
        let closed = [0u8; 0];
        let parts = FrameParts::with_extra(Header::new(crate::Opcode::Control), &closed);
        assert!(driver.send_to_scheduler(&parts, &mut losses).is_err());
        driver.replace_scheduler(dial(&listener)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        drop(accepted);
        for _ in 0..50 {
            driver
                .progress(Some(Duration::from_millis(20)), &mut losses)
                .unwrap();
        }
        assert_eq!(
            losses.0, 2,
            "the new connection is read, and its loss reported"
        );
    }
}
