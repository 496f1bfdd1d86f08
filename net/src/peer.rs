//! One connection: a non-blocking TCP stream with its frame reader and send queue.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use mio::net::TcpStream;

use crate::{
    BufferPool, FrameLimits, FrameParts, FrameReader, FrameSink, Metrics, NetError, OutQueue,
    ReadOutcome, SharedWriter,
};

/// A connected peer.
#[derive(Debug)]
pub struct Peer {
    stream: TcpStream,
    reader: FrameReader,
    out: OutQueue,
    addr: Option<SocketAddr>,
    metrics: Metrics,
    /// Set once the write side is shared ([`Peer::share_writes`]): every send goes through it.
    shared: Option<SharedWriter>,
}

impl Peer {
    /// Wraps a connected stream (sets TCP_NODELAY: every frame is a complete message).
    pub fn new(
        stream: TcpStream,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> io::Result<Peer> {
        stream.set_nodelay(true)?;
        let addr = stream.peer_addr().ok();
        Ok(Peer {
            stream,
            reader: FrameReader::new(limits, pool.clone(), metrics.clone()),
            out: OutQueue::with_pool(pool),
            addr,
            metrics,
            shared: None,
        })
    }

    /// Connects with a blocking connect bounded by `timeout`, then switches to non-blocking.
    pub fn connect(
        addr: SocketAddr,
        timeout: std::time::Duration,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<Peer, NetError> {
        let connect_err = |source| NetError::Connect {
            addr: addr.to_string(),
            source,
        };
        let std_stream =
            std::net::TcpStream::connect_timeout(&addr, timeout).map_err(connect_err)?;
        std_stream.set_nonblocking(true).map_err(connect_err)?;
        Ok(Peer::new(
            TcpStream::from_std(std_stream),
            limits,
            pool,
            metrics,
        )?)
    }

    /// Sets the limits frames read from now on are checked against; returns the old ones.
    pub fn replace_limits(&mut self, limits: FrameLimits) -> FrameLimits {
        self.reader.replace_limits(limits)
    }

    /// The remote address, if known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The local address of this connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// The underlying stream, for registering with a poller.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads the next whole frame if the socket has it.
    pub fn read_frame(&mut self, sink: &mut impl FrameSink) -> Result<ReadOutcome, NetError> {
        self.reader.read_frame(&mut self.stream, sink)
    }

    /// Shares this connection's write side with other threads (see [`SharedWriter`]): from now
    /// on every frame, this peer's own included, is written whole under one lock, waiting while
    /// the socket is full for at most `stall_limit`. Meant for connections of small control
    /// frames (a node's connection to the scheduler); reads stay here. Dropping the peer shuts
    /// the connection down for every writer.
    pub fn share_writes(&mut self, stall_limit: Duration) -> Result<SharedWriter, NetError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.clone());
        }
        if !self.out.is_empty() {
            return Err(NetError::Io(io::Error::other(
                "cannot share a connection's writes while frames are queued on it",
            )));
        }
        let fd = self.stream.as_fd().try_clone_to_owned()?;
        let shared = SharedWriter::new(fd.into(), self.metrics.clone(), stall_limit);
        self.shared = Some(shared.clone());
        Ok(shared)
    }

    /// Sends a finished frame (see [`OutQueue::send`]; whole, under the lock, once the writes
    /// are shared).
    pub fn send(&mut self, frame: &FrameParts<'_>) -> Result<(), NetError> {
        self.send_patiently(frame, std::time::Duration::ZERO)
    }

    /// [`Peer::send`] that keeps writing from the frame's slices while the peer reads, queueing
    /// only once the socket took nothing for `patience` (see [`OutQueue::send_patiently`]).
    pub fn send_patiently(
        &mut self,
        frame: &FrameParts<'_>,
        patience: std::time::Duration,
    ) -> Result<(), NetError> {
        if let Some(shared) = &self.shared {
            return shared.send(frame);
        }
        self.out
            .send_patiently(&mut self.stream, frame, &self.metrics, patience)?;
        Ok(())
    }

    /// Writes a finished frame from byte `offset` on, straight from its slices, as far as the
    /// socket takes it now; returns the new offset. For callers that wait for the socket
    /// themselves instead of queueing (the worker client). Must not be mixed with a non-empty
    /// send queue.
    pub fn write_frame_from(
        &mut self,
        frame: &FrameParts<'_>,
        offset: usize,
    ) -> Result<usize, NetError> {
        if let Some(shared) = self.shared.as_ref().filter(|_| offset == 0) {
            shared.send(frame)?;
            return Ok(frame.wire_len());
        }
        if offset == 0 {
            crate::writer::count_sent(frame, &self.metrics);
        }
        let slices = crate::writer::frame_slices(frame);
        let n = crate::writer::write_from(&mut self.stream, &slices, offset)?;
        Ok(offset + n)
    }

    /// Writes queued bytes; `Ok(true)` once nothing is left.
    pub fn flush(&mut self) -> Result<bool, NetError> {
        Ok(self.out.flush(&mut self.stream)?)
    }

    /// Bytes accepted but not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.queued_bytes()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.shutdown();
        }
    }
}
