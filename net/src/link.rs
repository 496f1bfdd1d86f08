//! One connection of either transport behind one interface: the event loop and the client
//! driver hold [`Link`]s, and callers above them do not care whether frames travel over TCP or
//! RDMA.
//!
//! # The transport contract
//!
//! What every transport provides, and all a caller may rely on:
//! * **frames out**: [`Link::send`] takes a finished [`FrameParts`] and never blocks (TCP
//!   queues what the socket does not take, RDMA what it cannot post yet); [`Link::flush`] moves
//!   queued output along and says when nothing waits;
//! * **frames in**: [`Link::read_frame`] returns the next whole, validated [`crate::Frame`]
//!   (its payload a pooled buffer) or says it would block; a [`FrameSink`] may take the values
//!   straight into a caller's buffer; [`Link::replace_limits`] bounds what a frame may carry
//!   (tight until the peer has authenticated);
//! * **memory the peer may reach**: [`Link::register_region`] registers local memory when the
//!   transport can use it (`None` otherwise, e.g. on TCP), [`Link::send_registered`] sends a
//!   frame whose values lie in such memory, and [`Link::send_values_to`] answers a request that
//!   named a [`RemoteRegion`] by writing the values there; every transport accepts these calls,
//!   and one without direct memory access falls back to plain frames or refuses with an error;
//! * **addresses**: [`Link::addr`], [`Link::local_addr`] where the transport has them.
//!
//! Readiness stays inside this crate (the event loop and the client driver register links
//! with their poller): a TCP link is a socket (readable / writable); an RDMA link is the fd of
//! its completion channel, readable when a completion may be waiting (edge-triggered: read
//! until it would block, which also re-arms it; call `prepare_sleep` before sleeping on it).
//! An RDMA link never blocks on send, so it has no writable interest. A shared-memory link
//! is its Unix socket, readable when the peer sent a wakeup (asked for by `prepare_sleep`,
//! also when queued output waits for room) or went away; it has no writable interest either.
//! RDMA and shared-memory links are polled without system calls
//! ([`Link::polls_in_memory`]).

use std::io;
use std::net::SocketAddr;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::shm::ShmConn;
use crate::{FrameParts, FrameSink, NetError, Peer, ReadOutcome, Registration, RemoteRegion};

#[cfg(feature = "rdma")]
use crate::rdma::{RdmaConn, RdmaError};

/// A connection over TCP, shared memory or RDMA.
#[derive(Debug)]
pub enum Link {
    Tcp(Peer),
    Shm(Box<ShmConn>),
    #[cfg(feature = "rdma")]
    Rdma(Box<RdmaConn>),
}

impl From<Peer> for Link {
    fn from(p: Peer) -> Link {
        Link::Tcp(p)
    }
}

impl From<ShmConn> for Link {
    fn from(c: ShmConn) -> Link {
        Link::Shm(Box::new(c))
    }
}

#[cfg(feature = "rdma")]
impl From<RdmaConn> for Link {
    fn from(c: RdmaConn) -> Link {
        Link::Rdma(Box::new(c))
    }
}

#[cfg(feature = "rdma")]
impl From<RdmaError> for NetError {
    fn from(e: RdmaError) -> NetError {
        match e {
            RdmaError::Closed => NetError::Closed,
            RdmaError::Wire(w) => NetError::Wire(w),
            other => NetError::Rdma(other.to_string()),
        }
    }
}

impl Link {
    /// Whether this link is RDMA.
    pub fn is_rdma(&self) -> bool {
        !matches!(self, Link::Tcp(_) | Link::Shm(_))
    }

    /// Whether this link is shared memory.
    pub fn is_shm(&self) -> bool {
        matches!(self, Link::Shm(_))
    }

    /// Whether polling this link costs no system call (RDMA, shared memory): such links are
    /// polled while a loop spins, and need `prepare_sleep` before a sleep on their fd.
    pub fn polls_in_memory(&self) -> bool {
        !matches!(self, Link::Tcp(_))
    }

    /// Whether a loop spinning on this link offers its core to other threads between rounds
    /// (TCP; shared memory after a short spin alone) or spins without a system call (RDMA).
    /// TCP makes a system call every round anyway; a shared-memory peer runs on this host, so
    /// on an oversubscribed host a spin that never yields would keep the very process it
    /// waits for off the core (a replicated job of 3 servers and 2 workers on 2 cores ran 4×
    /// slower so). An RDMA peer is on another host, and `sched_yield` is dear where RDMA was
    /// measured (guests).
    pub fn yields_while_spinning(&self) -> bool {
        !self.is_rdma()
    }

    /// The TCP connection, if this is one.
    pub(crate) fn as_tcp_mut(&mut self) -> Option<&mut Peer> {
        match self {
            Link::Tcp(p) => Some(p),
            Link::Shm(_) => None,
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }

    /// Runs `op` on what a poller watches for this link, with the interest it may watch it for:
    /// a TCP link's socket with `interest`, an RDMA link's completion channel readable only.
    fn with_poll_source<R>(
        &mut self,
        interest: Interest,
        op: impl FnOnce(&mut dyn Source, Interest) -> R,
    ) -> R {
        match self {
            Link::Tcp(p) => op(p.stream_mut(), interest),
            Link::Shm(c) => {
                use std::os::fd::AsRawFd;
                let fd = c.as_raw_fd();
                op(&mut mio::unix::SourceFd(&fd), Interest::READABLE)
            }
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                use std::os::fd::AsRawFd;
                let fd = c.as_raw_fd();
                op(&mut mio::unix::SourceFd(&fd), Interest::READABLE)
            }
        }
    }

    /// Registers with a poller. RDMA links are always registered readable only.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.with_poll_source(interest, |source, interest| {
            registry.register(source, token, interest)
        })
    }

    /// Changes the interest of a TCP link (others: nothing to change).
    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        if self.polls_in_memory() {
            return Ok(());
        }
        self.with_poll_source(interest, |source, interest| {
            registry.reregister(source, token, interest)
        })
    }

    /// Removes from a poller.
    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.with_poll_source(Interest::READABLE, |source, _| registry.deregister(source))
    }

    /// Reads the next whole frame if one is there. `sink` can take the values of a TCP frame
    /// straight into a caller's buffer; RDMA frames arrive whole (zero-copy pulls on RDMA go
    /// through [`Link::send_values_to`] instead).
    pub fn read_frame(&mut self, sink: &mut impl FrameSink) -> Result<ReadOutcome, NetError> {
        match self {
            Link::Tcp(p) => p.read_frame(sink),
            Link::Shm(c) => c.read_frame(sink),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => match c.try_recv_frame() {
                Ok(Some(frame)) => Ok(ReadOutcome::Frame(frame)),
                Ok(None) => Ok(ReadOutcome::WouldBlock),
                Err(RdmaError::Closed) => Ok(ReadOutcome::Closed),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Sets the limits incoming frames are checked against (until a connection is
    /// authenticated, the handshake's: see [`crate::auth::HANDSHAKE_LIMITS`]); returns the
    /// old ones.
    pub fn replace_limits(&mut self, limits: crate::FrameLimits) -> crate::FrameLimits {
        match self {
            Link::Tcp(p) => p.replace_limits(limits),
            Link::Shm(c) => c.replace_limits(limits),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => c.replace_limits(limits),
        }
    }

    /// Sends a finished frame; never blocks (TCP queues what the socket does not take, RDMA
    /// what it cannot post yet).
    pub fn send(&mut self, frame: &FrameParts<'_>) -> Result<(), NetError> {
        self.send_patiently(frame, std::time::Duration::ZERO)
    }

    /// [`Link::send`] that, over TCP, keeps writing from the frame's slices while the peer
    /// reads and copies what is left into the queue only once the socket took nothing for
    /// `patience` ([`Peer::send_patiently`]). RDMA sends as [`Link::send`] does.
    pub fn send_patiently(
        &mut self,
        frame: &FrameParts<'_>,
        patience: std::time::Duration,
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(p) => p.send_patiently(frame, patience),
            Link::Shm(c) => c.send_patiently(frame, patience),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                let _ = patience;
                Ok(c.send_frame(frame)?)
            }
        }
    }

    /// Sends a finished frame whose values are written straight into `dest`, memory the peer
    /// registered and named in its request (the zero-copy pull reply). Only RDMA links can;
    /// TCP refuses with an error.
    pub fn send_values_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteRegion,
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(_) | Link::Shm(_) => {
                let _ = (frame, dest);
                Err(no_direct_values())
            }
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => Ok(c.send_frame_values_to(frame, dest)?),
        }
    }

    /// [`Link::send_values_to`] with the values read by the device straight from `region`
    /// (see `RdmaConn::send_frame_values_from_region_to`).
    ///
    /// # Safety
    /// `region` stays mapped at its address for as long as this link lives.
    pub unsafe fn send_values_from_region_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteRegion,
        region: &[u8],
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(_) | Link::Shm(_) => {
                let _ = (frame, dest, region);
                Err(no_direct_values())
            }
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                // SAFETY: forwarded from the caller.
                Ok(unsafe { c.send_frame_values_from_region_to(frame, dest, region) }?)
            }
        }
    }

    /// [`Link::send`] for a frame whose values lie in `values`, memory registered with this
    /// link ([`Link::register_region`]): a bulk frame's values are then read in place (see
    /// `RdmaConn::send_frame_values_registered`). The values must stay unchanged until the
    /// peer has answered.
    pub fn send_registered(
        &mut self,
        frame: &FrameParts<'_>,
        values: &Registration,
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(p) => {
                let _ = values;
                p.send(frame)
            }
            Link::Shm(c) => {
                let _ = values;
                c.send_patiently(frame, std::time::Duration::ZERO)
            }
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => Ok(c.send_frame_values_registered(frame, &values.rdma)?),
        }
    }

    /// Before the caller sleeps on this link's fd: `Ok(true)` when it must not, because a frame
    /// (or the peer's goodbye) is already there. TCP links never have one hidden.
    pub(crate) fn prepare_sleep(&mut self) -> Result<bool, NetError> {
        match self {
            Link::Tcp(_) => Ok(false),
            Link::Shm(c) => c.prepare_sleep(),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => Ok(c.prepare_sleep()?),
        }
    }

    /// Registers `len` bytes at `ptr` with this link's transport, for the peer's writes into
    /// them ([`Registration::remote`] names them in a request) or the device's reads from them
    /// ([`Link::send_registered`]). `Ok(None)` where a registration would not pay: on TCP, and
    /// for regions small enough to travel inside one small frame (copying them costs less).
    ///
    /// # Safety
    /// The memory stays alive and in place, and unread by the caller, for as long as the
    /// registration lives.
    pub unsafe fn register_region(
        &self,
        ptr: *mut u8,
        len: usize,
    ) -> Result<Option<Registration>, NetError> {
        match self {
            Link::Tcp(_) | Link::Shm(_) => {
                let _ = (ptr, len);
                Ok(None)
            }
            #[cfg(feature = "rdma")]
            Link::Rdma(_) if len < crate::rdma::SMALL_FRAME_MAX => Ok(None),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                // SAFETY: forwarded from the caller.
                let rdma = unsafe { c.register_raw(ptr, len) }?;
                Ok(Some(Registration { rdma }))
            }
        }
    }

    /// Moves queued output along; `Ok(true)` once nothing waits.
    pub fn flush(&mut self) -> Result<bool, NetError> {
        match self {
            Link::Tcp(p) => p.flush(),
            Link::Shm(c) => c.flush(),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                c.progress()?;
                Ok(c.pending() == 0)
            }
        }
    }

    /// Bytes a TCP or shared-memory link holds for its socket or ring (RDMA links count
    /// their own credits instead).
    pub(crate) fn queued_bytes(&self) -> usize {
        match self {
            Link::Tcp(p) => p.queued_bytes(),
            Link::Shm(c) => c.queued_bytes(),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => 0,
        }
    }

    /// The remote address, when known (TCP).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Link::Tcp(p) => p.addr(),
            Link::Shm(_) => None,
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }

    /// The local address of a TCP link.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Link::Tcp(p) => p.local_addr(),
            Link::Shm(_) => None,
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }
}

/// A direct-values reply asked of a link whose transport cannot write into the peer's memory.
fn no_direct_values() -> NetError {
    NetError::Rdma("a direct-values reply needs an RDMA connection".into())
}
