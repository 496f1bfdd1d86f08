//! Vectored frame writing with a queue for what the socket does not take at once.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use crate::wire::{pad8, ZEROS};
use crate::{BufferPool, FrameParts, Metrics, PooledBuf};

/// Most slices handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 512;
/// A patient send writes on for at most this many times its patience in all (and never more
/// than [`MAX_PATIENT_WRITE`]), however steadily the peer reads: a peer that reads a little
/// before each stall would otherwise hold the thread for as long as it liked.
const PATIENT_ROUNDS: u32 = 64;
/// The most time one patient send writes before it queues the rest.
const MAX_PATIENT_WRITE: Duration = Duration::from_millis(50);

/// Bytes accepted for sending but not yet taken by the socket, oldest first.
///
/// The remainder of a large frame (a 40 MB pull reply the socket took 4 MB of) is copied into a
/// buffer from the queue's pool when it has one, so that the next such reply reuses its pages
/// instead of faulting in fresh ones (a page fault and a cleared page per 4 KiB otherwise,
/// which cost more than the copy itself).
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<PooledBuf>,
    pool: Option<BufferPool>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    queued: usize,
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// An empty queue whose remainders live in buffers of `pool`.
    pub fn with_pool(pool: BufferPool) -> OutQueue {
        OutQueue {
            pool: Some(pool),
            ..OutQueue::default()
        }
    }

    /// Whether everything accepted has been written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Sends a finished frame: written straight from the caller's slices while the socket takes
    /// them; only the remainder is copied into the queue (and counted in `metrics`).
    pub fn send(
        &mut self,
        dst: &mut impl Write,
        frame: &FrameParts<'_>,
        metrics: &Metrics,
    ) -> io::Result<()> {
        self.send_patiently(dst, frame, metrics, Duration::ZERO)
    }

    /// [`OutQueue::send`] that, when the socket fills while nothing else is queued, keeps
    /// writing straight from the frame's slices while the peer keeps reading: it gives up, and
    /// queues (copies) the rest, once the socket took nothing for `patience`, or once it has
    /// written for `PATIENT_ROUNDS` times `patience` in all (at most `MAX_PATIENT_WRITE`).
    /// A 40 MB pull reply to a worker that reads at once then goes out from storage, uncopied,
    /// and no peer, however it reads, holds the thread longer than that bound. Zero patience
    /// queues at the first full socket.
    pub fn send_patiently(
        &mut self,
        dst: &mut impl Write,
        frame: &FrameParts<'_>,
        metrics: &Metrics,
        patience: Duration,
    ) -> io::Result<()> {
        let slices = frame_slices(frame);
        count_sent(frame, metrics);

        let mut written = 0;
        if self.is_empty() {
            let total: usize = slices.iter().map(|s| s.len()).sum();
            written = write_slices(dst, &slices)?;
            if written < total && !patience.is_zero() {
                let started = Instant::now();
                let bound = patience
                    .saturating_mul(PATIENT_ROUNDS)
                    .min(MAX_PATIENT_WRITE);
                let mut progress = started;
                while written < total && started.elapsed() < bound {
                    let n = write_from(dst, &slices, written)?;
                    if n > 0 {
                        written += n;
                        progress = Instant::now();
                    } else if progress.elapsed() >= patience {
                        break;
                    } else {
                        // The reader needs a core to drain the socket (the policy of every
                        // polling loop here: yield between rounds).
                        std::thread::yield_now();
                    }
                }
            }
        }
        self.queue_remainder(&slices, written, frame, metrics);
        Ok(())
    }

    fn queue_remainder(
        &mut self,
        slices: &[&[u8]],
        mut skip: usize,
        frame: &FrameParts<'_>,
        metrics: &Metrics,
    ) {
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if skip >= total {
            return;
        }
        let len = total - skip;
        let mut rest = match &self.pool {
            Some(pool) => pool.take(len),
            None => PooledBuf::unpooled(len),
        };
        let mut at = 0;
        let dest = rest.as_bytes_mut();
        for s in slices {
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let s = &s[skip..];
            dest[at..at + s.len()].copy_from_slice(s);
            at += s.len();
            skip = 0;
        }
        let values_total: usize = frame.values.iter().map(|v| v.len()).sum();
        metrics.values_copied(values_total.min(rest.len()));
        self.queued += rest.len();
        self.chunks.push_back(rest);
    }

    /// Writes queued bytes until done (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub fn flush(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let slices: Vec<&[u8]> = self
                .chunks
                .iter()
                .take(MAX_IOV)
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        &c.as_bytes()[self.front_written..]
                    } else {
                        c.as_bytes()
                    }
                })
                .collect();
            let n = write_slices(dst, &slices)?;
            if n == 0 {
                return Ok(false);
            }
            self.consume(n);
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.len() - self.front_written;
            if n >= left {
                n -= left;
                self.chunks.pop_front();
                self.front_written = 0;
            } else {
                self.front_written += n;
                n = 0;
            }
        }
    }
}

/// The byte slices of a finished frame in wire order (header, sections, padding).
pub fn frame_slices<'a>(frame: &'a FrameParts<'a>) -> Vec<&'a [u8]> {
    let values_len: usize = frame.values.iter().map(|v| v.len()).sum();
    let header = zerocopy::IntoBytes::as_bytes(&frame.header);
    let mut slices: Vec<&[u8]> = Vec::with_capacity(frame.values.len() + 5);
    slices.push(header);
    push_nonempty(&mut slices, frame.keys);
    push_nonempty(
        &mut slices,
        &ZEROS[..pad8(frame.keys.len()) - frame.keys.len()],
    );
    for v in frame.values {
        push_nonempty(&mut slices, v);
    }
    push_nonempty(&mut slices, &ZEROS[..pad8(values_len) - values_len]);
    push_nonempty(&mut slices, frame.extra);
    slices
}

/// Counts a frame in the sent-bytes metrics.
pub(crate) fn count_sent(frame: &FrameParts<'_>, metrics: &Metrics) {
    let values_len: usize = frame.values.iter().map(|v| v.len()).sum();
    metrics.frame_sent(frame.keys.len(), values_len, frame.extra.len());
}

/// Writes the part of `slices` after the first `skip` bytes, as far as the socket takes it
/// without blocking; returns how many bytes were written now.
pub fn write_from(dst: &mut impl Write, slices: &[&[u8]], mut skip: usize) -> io::Result<usize> {
    let mut rest: Vec<&[u8]> = Vec::with_capacity(slices.len());
    for s in slices {
        if skip >= s.len() {
            skip -= s.len();
        } else {
            rest.push(&s[skip..]);
            skip = 0;
        }
    }
    write_slices(dst, &rest)
}

fn push_nonempty<'a>(slices: &mut Vec<&'a [u8]>, s: &'a [u8]) {
    if !s.is_empty() {
        slices.push(s);
    }
}

/// Writes as much of `slices` as the socket takes without blocking; returns the byte count.
fn write_slices(dst: &mut impl Write, slices: &[&[u8]]) -> io::Result<usize> {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut done = 0;
    let mut first = 0;
    let mut offset = 0;
    while done < total {
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity((slices.len() - first).min(MAX_IOV));
        iov.push(IoSlice::new(&slices[first][offset..]));
        for s in slices[first + 1..].iter().take(MAX_IOV - 1) {
            iov.push(IoSlice::new(s));
        }
        match dst.write_vectored(&iov) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket took 0 bytes",
                ))
            }
            Ok(mut n) => {
                done += n;
                while n > 0 {
                    let left = slices[first].len() - offset;
                    if n >= left {
                        n -= left;
                        first += 1;
                        offset = 0;
                    } else {
                        offset += n;
                        n = 0;
                    }
                }
                while first < slices.len() && slices[first].len() == offset {
                    first += 1;
                    offset = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, Opcode};

    /// A socket that takes at most `room` bytes, then would block until `room` is raised.
    struct Narrow {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_remainder_lives_in_a_pool_buffer_that_the_next_one_reuses() {
        let pool = BufferPool::new();
        let mut queue = OutQueue::with_pool(pool.clone());
        let metrics = Metrics::new();
        let values: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut expected = Vec::new();
        for round in 0..2 {
            let v = [values.as_slice()];
            let mut frame = FrameParts {
                header: Header::new(Opcode::PullReply),
                keys: &[],
                values: &v,
                extra: &[],
            };
            frame.finish(false);
            let mut socket = Narrow {
                got: Vec::new(),
                room: 1000,
            };
            queue.send(&mut socket, &frame, &metrics).unwrap();
            assert_eq!(queue.queued_bytes(), frame.wire_len() - 1000);
            // While queued the buffer is out of the pool; the second round took the first's.
            assert_eq!(pool.cached(), 0, "round {round}");
            socket.room = usize::MAX;
            assert!(queue.flush(&mut socket).unwrap());
            assert!(queue.is_empty());
            assert_eq!(pool.cached(), 1, "round {round}: the buffer went back");
            expected.clear();
            frame_slices(&frame)
                .iter()
                .for_each(|s| expected.extend(*s));
            assert_eq!(socket.got, expected, "round {round}: the bytes, in order");
        }
    }

    /// A socket that takes `step` bytes per write (after `pause`), then nothing once `limit`
    /// bytes are in.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        limit: usize,
        pause: Duration,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.limit - self.got.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            std::thread::sleep(self.pause);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_patient_send_writes_while_the_peer_reads_and_queues_only_after_a_stall() {
        let metrics = Metrics::new();
        let values = vec![7u8; 50_000];
        let v = [values.as_slice()];
        let mut frame = FrameParts {
            header: Header::new(Opcode::PullReply),
            keys: &[],
            values: &v,
            extra: &[],
        };
        frame.finish(false);
        let total = frame.wire_len();
        let patience = Duration::from_secs(1);
        // A peer that keeps reading: everything goes out, nothing is copied.
        let mut queue = OutQueue::new();
        let mut reading = Trickle {
            got: Vec::new(),
            step: 1000,
            limit: usize::MAX,
            pause: Duration::ZERO,
        };
        queue
            .send_patiently(&mut reading, &frame, &metrics, patience)
            .unwrap();
        assert!(queue.is_empty());
        assert_eq!(reading.got.len(), total);
        assert_eq!(metrics.snapshot().value_bytes_copied, 0);
        // A peer that stops: the rest is queued after the patience ran out.
        let mut stalled = Trickle {
            got: Vec::new(),
            step: 1000,
            limit: 5000,
            pause: Duration::ZERO,
        };
        let patience = Duration::from_millis(20);
        queue
            .send_patiently(&mut stalled, &frame, &metrics, patience)
            .unwrap();
        assert_eq!(queue.queued_bytes(), total - 5000);
        // Zero patience queues at the first full socket, as `send` always did.
        let mut queue = OutQueue::new();
        let mut full = Trickle {
            got: Vec::new(),
            step: usize::MAX,
            limit: 0,
            pause: Duration::ZERO,
        };
        queue.send(&mut full, &frame, &metrics).unwrap();
        assert_eq!(queue.queued_bytes(), total);
    }

    #[test]
    fn a_peer_that_reads_a_little_at_a_time_cannot_hold_a_patient_send() {
        let metrics = Metrics::new();
        let values = vec![7u8; 50_000];
        let v = [values.as_slice()];
        let mut frame = FrameParts {
            header: Header::new(Opcode::PullReply),
            keys: &[],
            values: &v,
            extra: &[],
        };
        frame.finish(false);
        // 10 bytes per 100 µs never stalls for the 1 ms patience, but would take 0.5 s in all;
        // the send gives up after 64 ms of writing and queues the rest.
        let mut queue = OutQueue::new();
        let mut trickle = Trickle {
            got: Vec::new(),
            step: 10,
            limit: usize::MAX,
            pause: Duration::from_micros(100),
        };
        queue
            .send_patiently(&mut trickle, &frame, &metrics, Duration::from_millis(1))
            .unwrap();
        assert!(!trickle.got.is_empty());
        assert_eq!(queue.queued_bytes(), frame.wire_len() - trickle.got.len());
    }
}
