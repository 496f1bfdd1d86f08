//! One shared-memory connection: two rings, the Unix socket that carries wakeups (and tells
//! when the peer is gone), and the same frame reader and send queue as a TCP [`crate::Peer`].

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::handshake::{self, Mapping};
use super::ring::{self, Consumer, Producer};
use super::ShmError;
use crate::{
    BufferPool, FrameLimits, FrameParts, FrameReader, FrameSink, Metrics, NetError, OutQueue,
    ReadOutcome,
};

/// How often an empty poll also asks the socket whether the peer is gone (a system call):
/// a polling loop otherwise reads shared memory only.
const SOCKET_CHECK_EVERY: u32 = 64;

/// A connection whose frames travel through shared memory.
#[derive(Debug)]
pub struct ShmConn {
    rx: Consumer,
    tx: Producer,
    sock: UnixStream,
    reader: FrameReader,
    out: OutQueue,
    metrics: Metrics,
    /// The socket said the peer is gone: once the ring is empty, the connection is closed.
    peer_closed: bool,
    /// Set by [`ShmConn::prepare_sleep`]: the next empty poll drains the socket's wakeups.
    parked: bool,
    empty_polls: u32,
    /// Declared last: the rings point into it.
    _map: Mapping,
}

impl ShmConn {
    /// Dials the shared-memory listener of the server known by the TCP address `server` on
    /// this host, with rings of `capacity` bytes each way.
    pub fn connect(
        server: std::net::SocketAddr,
        capacity: usize,
        timeout: Duration,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<ShmConn, ShmError> {
        let (sock, map) = handshake::dial(server, capacity, timeout)?;
        ShmConn::new(sock, map, 0, limits, pool, metrics)
    }

    /// The server side of a connection whose setup message `sock` carries.
    pub(crate) fn accept(
        sock: UnixStream,
        timeout: Duration,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<ShmConn, ShmError> {
        let map = handshake::accept(&sock, timeout)?;
        ShmConn::new(sock, map, 1, limits, pool, metrics)
    }

    /// `side` 0 (dialer) writes ring 0 and reads ring 1; side 1 the other way round.
    fn new(
        sock: UnixStream,
        map: Mapping,
        side: usize,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<ShmConn, ShmError> {
        sock.set_nonblocking(true)?;
        sock.set_write_timeout(None)?;
        let cap = map.capacity;
        // SAFETY: the rings lie inside `map`, which is 64-aligned (page-aligned by mmap),
        // large enough for both rings (checked before mapping) and dropped after them (field
        // order). This side is the only producer of one ring and the only consumer of the
        // other.
        let (tx, rx) = unsafe {
            (
                ring::producer(map.ring(side), cap),
                ring::consumer(map.ring(1 - side), cap),
            )
        };
        Ok(ShmConn {
            rx,
            tx,
            sock,
            reader: FrameReader::new(limits, pool.clone(), metrics.clone()),
            out: OutQueue::with_pool(pool),
            metrics,
            peer_closed: false,
            parked: false,
            empty_polls: 0,
            _map: map,
        })
    }

    /// Sets the limits frames read from now on are checked against; returns the old ones.
    pub fn replace_limits(&mut self, limits: FrameLimits) -> FrameLimits {
        self.reader.replace_limits(limits)
    }

    /// Reads the next whole frame if the ring holds it (moving queued output along first).
    pub fn read_frame(&mut self, sink: &mut impl FrameSink) -> Result<ReadOutcome, NetError> {
        if !self.out.is_empty() {
            self.flush()?;
        }
        let outcome = self.read_ring(sink)?;
        if !matches!(outcome, ReadOutcome::WouldBlock) {
            self.empty_polls = 0;
            return Ok(outcome);
        }
        self.empty_polls = self.empty_polls.wrapping_add(1);
        if self.parked || self.empty_polls.is_multiple_of(SOCKET_CHECK_EVERY) {
            self.parked = false;
            self.drain_socket()?;
            if self.peer_closed {
                return self.read_ring(sink);
            }
        }
        Ok(ReadOutcome::WouldBlock)
    }

    fn read_ring(&mut self, sink: &mut impl FrameSink) -> Result<ReadOutcome, NetError> {
        let mut rx = RxStream {
            ring: &mut self.rx,
            sock: &self.sock,
            closed: self.peer_closed,
        };
        self.reader.read_frame(&mut rx, sink)
    }

    /// Sends a finished frame: into the ring as far as it takes it, while the peer reads for
    /// up to `patience` without progress, and the rest into the queue (see
    /// [`OutQueue::send_patiently`]); never blocks longer than that.
    pub fn send_patiently(
        &mut self,
        frame: &FrameParts<'_>,
        patience: Duration,
    ) -> Result<(), NetError> {
        let mut tx = TxStream {
            ring: &mut self.tx,
            sock: &self.sock,
        };
        self.out
            .send_patiently(&mut tx, frame, &self.metrics, patience)?;
        Ok(())
    }

    /// Moves queued output into the ring; `Ok(true)` once nothing waits.
    pub fn flush(&mut self) -> Result<bool, NetError> {
        let mut tx = TxStream {
            ring: &mut self.tx,
            sock: &self.sock,
        };
        Ok(self.out.flush(&mut tx)?)
    }

    /// Bytes accepted but not yet in the ring.
    pub fn queued_bytes(&self) -> usize {
        self.out.queued_bytes()
    }

    /// Before the caller sleeps on [`ShmConn::as_raw_fd`]: asks the peer for a wakeup byte when
    /// it writes (and, with output queued, when it makes room); `Ok(true)` when the caller must
    /// not sleep because something is already there (bytes, room, or the peer's goodbye).
    pub fn prepare_sleep(&mut self) -> Result<bool, NetError> {
        self.drain_socket()?;
        if self.peer_closed {
            return Ok(true);
        }
        if !self.out.is_empty() && (self.flush()? || self.tx.park().map_err(corrupt)?) {
            return Ok(true);
        }
        if self.rx.park().map_err(corrupt)? {
            return Ok(true);
        }
        self.parked = true;
        Ok(false)
    }

    /// Reads every wakeup byte waiting on the socket; notes the peer's end.
    fn drain_socket(&mut self) -> Result<(), NetError> {
        let mut buf = [0u8; 64];
        loop {
            match (&self.sock).read(&mut buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Test hook: publishes `head` as this side's write position, as a broken peer could.
    #[cfg(test)]
    pub(crate) fn corrupt_outgoing_head(&mut self, head: u64) {
        self.tx.corrupt_head(head);
        wake(&self.sock);
    }

    /// Test hook: puts `bytes` into the ring as they are (no framing), and wakes the peer.
    #[cfg(test)]
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) {
        assert_eq!(self.tx.write(bytes).unwrap(), bytes.len());
        wake(&self.sock);
    }
}

/// A ring error as the transport reports it.
fn corrupt(e: ShmError) -> NetError {
    NetError::Io(io::Error::new(io::ErrorKind::InvalidData, e))
}

impl AsRawFd for ShmConn {
    /// The Unix socket: readable when the peer sent a wakeup or went away.
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Sends one wakeup byte. A full socket already holds wakeups the peer has yet to read, and
/// a peer that is gone is noticed by the next read of this side: neither is an error here.
fn wake(sock: &UnixStream) {
    let _ = (&*sock).write(&[1]);
}

/// The reading side of the incoming ring as a non-blocking byte stream for the frame reader.
struct RxStream<'a> {
    ring: &'a mut Consumer,
    sock: &'a UnixStream,
    closed: bool,
}

impl Read for RxStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.ring.read(buf) {
            Ok(0) if self.closed => Ok(0),
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => {
                if self.ring.writer_needs_wakeup() {
                    wake(self.sock);
                }
                Ok(n)
            }
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// The writing side of the outgoing ring as a non-blocking byte stream for the send queue.
struct TxStream<'a> {
    ring: &'a mut Producer,
    sock: &'a UnixStream,
}

impl TxStream<'_> {
    fn finish(&mut self, n: usize) -> io::Result<usize> {
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.ring.reader_needs_wakeup() {
            wake(self.sock);
        }
        Ok(n)
    }
}

impl Write for TxStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.ring.write(buf).map_err(io::Error::other)?;
        self.finish(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for b in bufs {
            let w = self.ring.write(b).map_err(io::Error::other)?;
            n += w;
            if w < b.len() {
                break;
            }
        }
        self.finish(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
