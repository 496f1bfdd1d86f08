//! A single-producer single-consumer byte ring in memory shared with the peer.
//!
//! Layout of one ring (all offsets from the ring's start):
//! * `0`: `head`, a `u64` byte count the producer has written (only it stores);
//! * `64`: `tail`, a `u64` byte count the consumer has read (only it stores);
//! * `128`: `reader_parked`, `132`: `writer_parked`, `u32` flags: a side about to sleep sets
//!   its flag; the other side clears it and sends a wakeup byte;
//! * [`CTRL_BYTES`]: the data, `capacity` bytes (a power of two), byte `n` of the stream at
//!   `n % capacity`.
//!
//! Each side keeps its own counter in local memory and only publishes it: the one it reads
//! from shared memory is the peer's and is untrusted. A counter that claims more bytes than
//! the ring holds (or that went backwards) is [`ShmError::Corrupt`], never an access outside
//! the ring.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::ShmError;

/// Bytes of a ring's control block before its data.
pub(crate) const CTRL_BYTES: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
const READER_PARKED: usize = 128;
const WRITER_PARKED: usize = 132;

/// The most bytes one [`Producer::write`] or [`Consumer::read`] moves before it publishes its
/// position: a large frame then streams through the ring, the consumer copying out one piece
/// while the producer copies in the next, instead of the two taking turns a whole ring at a
/// time (a reader that sees nothing until the writer has filled the ring, and a writer that
/// then waits for all of it to be read).
pub(crate) const PUBLISH_EVERY: usize = 256 << 10;

/// One ring of a mapping: its control block and data.
#[derive(Debug)]
struct RingPtr {
    base: *mut u8,
    capacity: usize,
}

// SAFETY: the pointer refers to a shared mapping that the owning connection keeps alive; the
// ring is only reached through `&mut` of the connection that owns it (one producer and one
// consumer per ring in this process).
unsafe impl Send for RingPtr {}

impl RingPtr {
    fn atomic64(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is HEAD or TAIL, 8-aligned inside the control block of a mapping that
        // lives as long as `self` (see `Ring::new`); shared memory is only ever accessed
        // atomically at these offsets.
        unsafe { &*(self.base.add(at) as *const AtomicU64) }
    }

    fn atomic32(&self, at: usize) -> &AtomicU32 {
        // SAFETY: as `atomic64`, for the 4-aligned flag offsets.
        unsafe { &*(self.base.add(at) as *const AtomicU32) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data follows the control block inside the mapping.
        unsafe { self.base.add(CTRL_BYTES) }
    }
}

/// Bytes of the mapping one ring of `capacity` takes.
pub(crate) fn ring_bytes(capacity: usize) -> usize {
    CTRL_BYTES + capacity
}

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: RingPtr,
    head: u64,
}

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: RingPtr,
    tail: u64,
}

/// Makes the two ends of the ring at `base`.
///
/// # Safety
/// `base` is 64-aligned and points to [`ring_bytes`]`(capacity)` bytes of a mapping that
/// outlives the returned end; `capacity` is a power of two. At most one producer and one
/// consumer exist per ring across the processes sharing it (the peer may break that rule;
/// it can then only corrupt the bytes, which this side checks).
pub(crate) unsafe fn producer(base: *mut u8, capacity: usize) -> Producer {
    let ring = RingPtr { base, capacity };
    let head = ring.atomic64(HEAD).load(Ordering::Acquire);
    Producer { ring, head }
}

/// See [`producer`].
///
/// # Safety
/// As for [`producer`].
pub(crate) unsafe fn consumer(base: *mut u8, capacity: usize) -> Consumer {
    let ring = RingPtr { base, capacity };
    let tail = ring.atomic64(TAIL).load(Ordering::Acquire);
    Consumer { ring, tail }
}

/// Copies between the ring's data and local memory, in at most two pieces around the end.
fn split(capacity: usize, at: u64, len: usize) -> (usize, usize, usize) {
    let start = (at % capacity as u64) as usize;
    let first = len.min(capacity - start);
    (start, first, len - first)
}

impl Producer {
    /// Copies as much of `buf` as fits; `Ok(0)` when the ring is full.
    pub(crate) fn write(&mut self, buf: &[u8]) -> Result<usize, ShmError> {
        let cap = self.ring.capacity;
        let tail = self.ring.atomic64(TAIL).load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > cap as u64 {
            return Err(ShmError::Corrupt(format!(
                "the peer's read position {tail} is not within {cap} bytes before this side's \
                 write position {}",
                self.head
            )));
        }
        let n = buf.len().min(cap - used as usize).min(PUBLISH_EVERY);
        if n == 0 {
            return Ok(0);
        }
        let (start, first, second) = split(cap, self.head, n);
        // SAFETY: `start + first <= cap` and `second <= start` (n <= cap), so both copies stay
        // inside the data area; the bytes [head, head + n) are free (the consumer has read up
        // to `tail`), and `buf` is local memory that cannot overlap the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ring.data().add(start), first);
            std::ptr::copy_nonoverlapping(buf.as_ptr().add(first), self.ring.data(), second);
        }
        self.head = self.head.wrapping_add(n as u64);
        self.ring.atomic64(HEAD).store(self.head, Ordering::Release);
        Ok(n)
    }

    /// Test hook: publishes `head` as the write position, as a broken producer could.
    #[cfg(test)]
    pub(crate) fn corrupt_head(&self, head: u64) {
        self.ring.atomic64(HEAD).store(head, Ordering::Release);
    }

    /// After a write: whether the consumer sleeps and must be woken (clears its flag).
    pub(crate) fn reader_needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        let parked = self.ring.atomic32(READER_PARKED);
        parked.load(Ordering::Relaxed) != 0 && parked.swap(0, Ordering::SeqCst) != 0
    }

    /// Before sleeping on a full ring: sets the flag the consumer clears (waking this side)
    /// once it has read; `Ok(true)` when space appeared meanwhile (do not sleep).
    pub(crate) fn park(&self) -> Result<bool, ShmError> {
        self.ring.atomic32(WRITER_PARKED).store(1, Ordering::SeqCst);
        let tail = self.ring.atomic64(TAIL).load(Ordering::SeqCst);
        let used = self.head.wrapping_sub(tail);
        if used > self.ring.capacity as u64 {
            return Err(ShmError::Corrupt(format!(
                "the peer's read position {tail} is past this side's write position {}",
                self.head
            )));
        }
        Ok(used < self.ring.capacity as u64)
    }
}

impl Consumer {
    /// Copies up to `buf.len()` bytes out; `Ok(0)` when the ring is empty.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, ShmError> {
        let cap = self.ring.capacity;
        let head = self.ring.atomic64(HEAD).load(Ordering::Acquire);
        let avail = head.wrapping_sub(self.tail);
        if avail > cap as u64 {
            return Err(ShmError::Corrupt(format!(
                "the peer's write position {head} is not within {cap} bytes after this side's \
                 read position {}",
                self.tail
            )));
        }
        let n = buf.len().min(avail as usize).min(PUBLISH_EVERY);
        if n == 0 {
            return Ok(0);
        }
        let (start, first, second) = split(cap, self.tail, n);
        // SAFETY: both pieces lie inside the data area (as in `Producer::write`), and the bytes
        // [tail, tail + n) were published by the producer's release store of `head`. The
        // peer may still scribble on them; they are then only wrong bytes, which the frame
        // reader's checks reject.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring.data().add(start), buf.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.ring.data(), buf.as_mut_ptr().add(first), second);
        }
        self.tail = self.tail.wrapping_add(n as u64);
        self.ring.atomic64(TAIL).store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// After a read: whether the producer sleeps on a full ring and must be woken.
    pub(crate) fn writer_needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        let parked = self.ring.atomic32(WRITER_PARKED);
        parked.load(Ordering::Relaxed) != 0 && parked.swap(0, Ordering::SeqCst) != 0
    }

    /// Before sleeping: sets the flag the producer clears (waking this side) with its next
    /// write; `Ok(true)` when bytes arrived meanwhile (do not sleep).
    pub(crate) fn park(&self) -> Result<bool, ShmError> {
        self.ring.atomic32(READER_PARKED).store(1, Ordering::SeqCst);
        let head = self.ring.atomic64(HEAD).load(Ordering::SeqCst);
        let avail = head.wrapping_sub(self.tail);
        if avail > self.ring.capacity as u64 {
            return Err(ShmError::Corrupt(format!(
                "the peer's write position {head} is past the ring's end (read position {})",
                self.tail
            )));
        }
        Ok(avail > 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ring of `capacity` in local memory, 64-aligned.
    pub(crate) fn local_ring(capacity: usize) -> (Vec<u64>, Producer, Consumer) {
        let mut mem = vec![0u64; ring_bytes(capacity).div_ceil(8) + 8];
        let base = mem.as_mut_ptr() as *mut u8;
        let base = base.wrapping_add(base.align_offset(64));
        // SAFETY: `mem` outlives the ends in every test (returned with them), is 64-aligned
        // at `base` and large enough.
        let (p, c) = unsafe { (producer(base, capacity), consumer(base, capacity)) };
        (mem, p, c)
    }

    #[test]
    fn bytes_come_out_in_order_across_the_end_of_the_ring() {
        let (_mem, mut p, mut c) = local_ring(64);
        let mut next = 0u8;
        let mut expect = 0u8;
        for round in 0..50 {
            let chunk: Vec<u8> = (0..(round % 50 + 1))
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            let mut sent = 0;
            while sent < chunk.len() {
                sent += p.write(&chunk[sent..]).unwrap();
                let mut out = [0u8; 40];
                let n = c.read(&mut out).unwrap();
                for b in &out[..n] {
                    expect = expect.wrapping_add(1);
                    assert_eq!(*b, expect);
                }
            }
        }
        let mut out = [0u8; 64];
        let n = c.read(&mut out).unwrap();
        for b in &out[..n] {
            expect = expect.wrapping_add(1);
            assert_eq!(*b, expect);
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn a_full_ring_takes_nothing_and_parks_until_read() {
        let (_mem, mut p, mut c) = local_ring(64);
        assert_eq!(p.write(&[7; 100]).unwrap(), 64);
        assert_eq!(p.write(&[7; 1]).unwrap(), 0);
        assert!(!p.park().unwrap(), "no space: the writer may sleep");
        let mut out = [0u8; 10];
        assert_eq!(c.read(&mut out).unwrap(), 10);
        assert!(c.writer_needs_wakeup(), "the parked writer is woken once");
        assert!(!c.writer_needs_wakeup());
        assert!(c.park().unwrap(), "bytes wait: the reader must not sleep");
    }

    #[test]
    fn a_large_write_is_published_piece_by_piece_so_the_reader_starts_at_once() {
        let cap = 4 * PUBLISH_EVERY;
        let (_mem, mut p, mut c) = local_ring(cap);
        let frame: Vec<u8> = (0..cap).map(|i| (i % 251) as u8).collect();
        // One call moves one piece and makes it visible: the reader need not wait for the
        // writer to fill the ring, and the writer need not wait for the whole ring to drain.
        assert_eq!(p.write(&frame).unwrap(), PUBLISH_EVERY);
        let mut out = vec![0u8; cap];
        assert_eq!(c.read(&mut out).unwrap(), PUBLISH_EVERY);
        assert_eq!(c.read(&mut out[PUBLISH_EVERY..]).unwrap(), 0);
        let mut sent = PUBLISH_EVERY;
        let mut got = PUBLISH_EVERY;
        while got < cap {
            sent += p.write(&frame[sent..]).unwrap();
            let n = c.read(&mut out[got..]).unwrap();
            assert!(n <= PUBLISH_EVERY, "a read takes one piece at a time");
            got += n;
        }
        assert!(out == frame, "the pieces come out whole and in order");
    }

    #[test]
    fn a_head_beyond_the_ring_is_an_error_not_a_read() {
        let (_mem, mut p, mut c) = local_ring(64);
        p.write(&[1; 8]).unwrap();
        p.ring.atomic64(HEAD).store(1 << 40, Ordering::Release);
        let err = c.read(&mut [0u8; 16]).unwrap_err().to_string();
        assert!(err.contains("write position"), "{err}");
        assert!(c.park().is_err());
        // A tail the consumer never wrote (moved past the head) is the producer's error.
        p.ring.atomic64(TAIL).store(1 << 50, Ordering::Release);
        assert!(p.write(&[1]).is_err());
    }
}
