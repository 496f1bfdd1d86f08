//! The write side of one TCP connection shared between threads.
//!
//! A node's connection to the scheduler is read by the thread that owns it (a server shard's
//! event loop, a worker's caller thread), which may be busy for seconds applying a push or
//! computing; its heartbeats must not wait for that. [`Peer::share_writes`](crate::Peer) hands
//! out a [`SharedWriter`] that another thread (the heartbeat thread) writes frames through, and
//! from then on the owner's own sends go through the same lock: each frame is written whole
//! under it, so frames from the two threads never interleave on the wire. Reads stay with the
//! owner.

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::writer::{count_sent, frame_slices, write_from};
use crate::{FrameParts, Metrics, NetError};

/// How long a writer waits between two tries while the socket is full.
const FULL_SOCKET_PAUSE: Duration = Duration::from_millis(1);

/// Writes whole frames to a connection from any thread; cheap to clone (one pointer, so that
/// a [`Peer`](crate::Peer) holding one stays small).
#[derive(Clone, Debug)]
pub struct SharedWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stream: Mutex<TcpStream>,
    metrics: Metrics,
    stall_limit: Duration,
}

impl SharedWriter {
    /// Writes through `stream` (a duplicate of the connection's descriptor; non-blocking like
    /// the original, which shares its file status). A send that cannot finish within
    /// `stall_limit` because the peer reads nothing fails.
    pub(crate) fn new(stream: TcpStream, metrics: Metrics, stall_limit: Duration) -> SharedWriter {
        SharedWriter {
            inner: Arc::new(Inner {
                stream: Mutex::new(stream),
                metrics,
                stall_limit,
            }),
        }
    }

    /// Writes a finished frame whole, waiting while the socket is full (these are small control
    /// frames: the socket is full only when the peer has stopped reading). Fails after the
    /// stall limit, or when the connection is gone.
    pub fn send(&self, frame: &FrameParts<'_>) -> Result<(), NetError> {
        let slices = frame_slices(frame);
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let stall_limit = self.inner.stall_limit;
        let mut stream = self.lock();
        count_sent(frame, &self.inner.metrics);
        let started = Instant::now();
        let mut written = 0;
        while written < total {
            let n = write_from(&mut *stream, &slices, written)?;
            written += n;
            if written < total && n == 0 {
                if started.elapsed() >= stall_limit {
                    return Err(NetError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the peer read nothing for {:.1} s; {} of {total} bytes of a frame \
                             could not be sent",
                            stall_limit.as_secs_f64(),
                            total - written
                        ),
                    )));
                }
                std::thread::sleep(FULL_SOCKET_PAUSE);
            }
        }
        Ok(())
    }

    /// Shuts the connection down in both directions (for every descriptor of it), so that a
    /// thread still holding a writer cannot keep it open after its owner closed it.
    pub(crate) fn shutdown(&self) {
        let _ = self.lock().shutdown(std::net::Shutdown::Both);
    }

    fn lock(&self) -> MutexGuard<'_, TcpStream> {
        // A writer that panicked mid-frame leaves the stream in an unknown state; the next
        // frame fails on the peer's checks, which is the honest outcome.
        self.inner.stream.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;
    use crate::{BufferPool, FrameLimits, Header, NoDirectValues, Opcode, Peer, ReadOutcome};

    /// Two threads write frames through one connection at once; the reader sees every frame
    /// whole and in each thread's order.
    #[test]
    fn frames_from_two_threads_never_interleave() {
        const FRAMES: u64 = 2000;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = FrameLimits::default();
        let mut owner = Peer::connect(
            listener.local_addr().unwrap(),
            Duration::from_secs(5),
            limits,
            BufferPool::new(),
            Metrics::new(),
        )
        .unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let shared = owner.share_writes(Duration::from_secs(30)).unwrap();
        let writers = std::thread::spawn(move || {
            let other = std::thread::spawn(move || {
                write_frames(FRAMES, 1 << 40, 0xAB, 3000, |f| shared.send(f).unwrap())
            });
            write_frames(FRAMES, 0, 0xCD, 7000, |f| owner.send(f).unwrap());
            other.join().unwrap();
            // Dropping the owner closes the connection: the reader's end of file.
        });
        // A reader that starts late: the socket fills, so writes are partial and would interleave
        // without the lock.
        std::thread::sleep(Duration::from_millis(300));
        accepted.set_nonblocking(true).unwrap();
        let mut reader = Peer::new(
            mio::net::TcpStream::from_std(accepted),
            limits,
            BufferPool::new(),
            Metrics::new(),
        )
        .unwrap();
        let (mut mine, mut theirs) = (0u64, 0u64);
        loop {
            match reader.read_frame(&mut NoDirectValues).unwrap() {
                ReadOutcome::Frame(frame) => {
                    let id = frame.header.request_id.get();
                    let (count, byte) = if id >> 40 == 1 {
                        (&mut theirs, 0xAB)
                    } else {
                        (&mut mine, 0xCD)
                    };
                    assert_eq!(id & 0xFFFF_FFFF, *count, "frames arrive in order");
                    assert!(frame.extra().iter().all(|&b| b == byte), "frame {id} whole");
                    *count += 1;
                }
                ReadOutcome::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                ReadOutcome::Closed => break,
            }
        }
        writers.join().unwrap();
        assert_eq!((mine, theirs), (FRAMES, FRAMES));
    }

    /// Sends `n` control frames with request ids `tag + i` and `len` bytes of `byte` each.
    fn write_frames(n: u64, tag: u64, byte: u8, len: usize, mut send: impl FnMut(&FrameParts)) {
        let extra = vec![byte; len];
        for i in 0..n {
            let mut h = Header::new(Opcode::Control);
            h.request_id = (tag | i).into();
            let mut frame = FrameParts::with_extra(h, &extra);
            frame.finish(true);
            send(&frame);
        }
    }

    /// Once the owner drops the connection, a writer left in another thread fails instead of
    /// keeping the connection open.
    #[test]
    fn a_dropped_owner_closes_the_connection_for_every_writer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut owner = Peer::connect(
            listener.local_addr().unwrap(),
            Duration::from_secs(5),
            FrameLimits::default(),
            BufferPool::new(),
            Metrics::new(),
        )
        .unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let shared = owner.share_writes(Duration::from_secs(30)).unwrap();
        drop(owner);
        let mut buf = [0u8; 16];
        assert_eq!(
            accepted.read(&mut buf).unwrap(),
            0,
            "the peer sees the close"
        );
        let mut frame = FrameParts::header_only(Header::new(Opcode::Control));
        frame.finish(true);
        assert!(shared.send(&frame).is_err());
    }
}
