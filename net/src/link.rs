//! One connection of either transport behind one interface: the event loop and the worker
//! client hold [`Link`]s and do not care whether frames travel over TCP or RDMA.
//!
//! Both deliver whole, validated [`Frame`]s whose payload is a pooled buffer, and both take the
//! same [`FrameParts`] to send. The differences that remain visible are deliberate:
//! * readiness: a TCP link is a socket (readable / writable); an RDMA link is the fd of its
//!   completion channel, readable when a completion may be waiting (edge-triggered: call
//!   [`Link::read_frame`] until it would block, which also re-arms the notification);
//! * an RDMA link never blocks on send: what cannot be posted waits inside the connection and
//!   goes out as completions return credits, so it has no writable interest;
//! * zero-copy pull replies ([`Link::send_values_to`]) exist only on RDMA.

use std::io;
use std::net::SocketAddr;

use mio::{Interest, Registry, Token};

use crate::{FrameParts, FrameSink, NetError, Peer, ReadOutcome};

#[cfg(feature = "rdma")]
use crate::rdma::{RdmaConn, RdmaError, RemoteBuf};

/// A connection over TCP or RDMA.
#[derive(Debug)]
pub enum Link {
    Tcp(Peer),
    #[cfg(feature = "rdma")]
    Rdma(Box<RdmaConn>),
}

impl From<Peer> for Link {
    fn from(p: Peer) -> Link {
        Link::Tcp(p)
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
        !matches!(self, Link::Tcp(_))
    }

    /// The TCP connection, if this is one.
    pub fn as_tcp_mut(&mut self) -> Option<&mut Peer> {
        match self {
            Link::Tcp(p) => Some(p),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }

    /// Registers with a poller. RDMA links are always registered readable only.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Tcp(p) => registry.register(p.stream_mut(), token, interest),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                use std::os::fd::AsRawFd;
                let fd = c.as_raw_fd();
                registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
            }
        }
    }

    /// Changes the interest of a TCP link (RDMA links: nothing to change).
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Tcp(p) => registry.reregister(p.stream_mut(), token, interest),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => Ok(()),
        }
    }

    /// Removes from a poller.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Link::Tcp(p) => registry.deregister(p.stream_mut()),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                use std::os::fd::AsRawFd;
                let fd = c.as_raw_fd();
                registry.deregister(&mut mio::unix::SourceFd(&fd))
            }
        }
    }

    /// Reads the next whole frame if one is there. `sink` can take the values of a TCP frame
    /// straight into a caller's buffer; RDMA frames arrive whole (zero-copy pulls on RDMA go
    /// through [`Link::send_values_to`] instead).
    pub fn read_frame(&mut self, sink: &mut impl FrameSink) -> Result<ReadOutcome, NetError> {
        match self {
            Link::Tcp(p) => p.read_frame(sink),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => match c.try_recv_frame() {
                Ok(Some(frame)) => Ok(ReadOutcome::Frame(frame)),
                Ok(None) => Ok(ReadOutcome::WouldBlock),
                Err(RdmaError::Closed) => Ok(ReadOutcome::Closed),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Sends a finished frame; never blocks (TCP queues what the socket does not take, RDMA
    /// what it cannot post yet).
    pub fn send(&mut self, frame: &FrameParts<'_>) -> Result<(), NetError> {
        match self {
            Link::Tcp(p) => p.send(frame),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => Ok(c.send_frame(frame)?),
        }
    }

    /// Sends a finished frame whose values are RDMA-written into `dest`, a buffer the peer
    /// registered and named in its request (see [`RdmaConn::send_frame_values_to`]).
    #[cfg(feature = "rdma")]
    pub fn send_values_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteBuf,
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(_) => Err(NetError::Rdma(
                "a direct-values reply needs an RDMA connection".into(),
            )),
            Link::Rdma(c) => Ok(c.send_frame_values_to(frame, dest)?),
        }
    }

    /// [`Link::send_values_to`] with the values read by the device straight from `region`
    /// (see [`RdmaConn::send_frame_values_from_region_to`]).
    ///
    /// # Safety
    /// `region` stays mapped at its address for as long as this link lives.
    #[cfg(feature = "rdma")]
    pub unsafe fn send_values_from_region_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteBuf,
        region: &[u8],
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(_) => Err(NetError::Rdma(
                "a direct-values reply needs an RDMA connection".into(),
            )),
            Link::Rdma(c) => {
                // SAFETY: forwarded from the caller.
                Ok(unsafe { c.send_frame_values_from_region_to(frame, dest, region) }?)
            }
        }
    }

    /// [`Link::send`] for a frame whose values lie in `values`, registered with this RDMA link:
    /// a bulk frame's values are then read in place (see
    /// [`RdmaConn::send_frame_values_registered`]). The values must stay unchanged until the
    /// peer has answered.
    #[cfg(feature = "rdma")]
    pub fn send_values_registered(
        &mut self,
        frame: &FrameParts<'_>,
        values: &crate::rdma::Registration<'_>,
    ) -> Result<(), NetError> {
        match self {
            Link::Tcp(p) => p.send(frame),
            Link::Rdma(c) => Ok(c.send_frame_values_registered(frame, values)?),
        }
    }

    /// Before the caller sleeps on this link's fd: `Ok(true)` when it must not, because a frame
    /// (or the peer's goodbye) is already there. TCP links never have one hidden.
    pub fn prepare_sleep(&mut self) -> Result<bool, NetError> {
        match self {
            Link::Tcp(_) => Ok(false),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => Ok(c.prepare_sleep()?),
        }
    }

    /// Registers `len` bytes at `ptr` for the peer's writes when this is an RDMA link
    /// (`Ok(None)` on TCP); see [`RdmaConn::register_raw`].
    ///
    /// # Safety
    /// As [`RdmaConn::register_raw`]: the memory stays alive and in place, and unread, for as
    /// long as the registration lives.
    #[cfg(feature = "rdma")]
    pub unsafe fn register_for_peer_writes(
        &self,
        ptr: *mut u8,
        len: usize,
    ) -> Result<Option<crate::rdma::Registration<'static>>, NetError> {
        match self {
            Link::Tcp(_) => Ok(None),
            // SAFETY: forwarded from the caller.
            Link::Rdma(c) => Ok(Some(unsafe { c.register_raw(ptr, len) }?)),
        }
    }

    /// Moves queued output along; `Ok(true)` once nothing waits.
    pub fn flush(&mut self) -> Result<bool, NetError> {
        match self {
            Link::Tcp(p) => p.flush(),
            #[cfg(feature = "rdma")]
            Link::Rdma(c) => {
                c.progress()?;
                Ok(c.pending() == 0)
            }
        }
    }

    /// Bytes a TCP link holds for the socket (RDMA links count their own credits instead).
    pub fn queued_bytes(&self) -> usize {
        match self {
            Link::Tcp(p) => p.queued_bytes(),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => 0,
        }
    }

    /// The remote address, when known (TCP).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Link::Tcp(p) => p.addr(),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }

    /// The local address of a TCP link.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Link::Tcp(p) => p.local_addr(),
            #[cfg(feature = "rdma")]
            Link::Rdma(_) => None,
        }
    }
}
