//! Pooled, 8-byte-aligned receive buffers.
//!
//! Large frames (a 10M-key push is 120 MB) would otherwise cost a fresh mmap and a page fault per
//! 4 KiB page on every request. Buffers come back to the pool when dropped and are handed out
//! again by size class (powers of two); the pool keeps at most [`MAX_CACHED_BYTES`] in all, so a
//! peer that sent one huge frame and left does not leave its memory behind, and a large buffer
//! ([`LARGE_BYTES`] or more) only while frames of its size keep coming: one that sat through
//! [`STALE_AFTER_TAKES`] takes of other large buffers is freed (a job's first push of a key
//! list, keys and values together, is a size its later pushes by signature never need again).
//! The RDMA transport will hand out registered buffers through the same type.
//!
//! Allocation can fail without aborting ([`BufferPool::try_take`], [`PooledBuf::try_grow`]),
//! and a buffer can grow as a frame's bytes arrive, its large part charged to a [`Budget`].

use std::sync::{Arc, Mutex};

use zerocopy::IntoBytes;

use crate::budget::{Budget, Charge};
use crate::WireError;

/// Smallest class: 2^6 words = 512 bytes.
const MIN_CLASS: u32 = 6;
/// Number of size classes (up to 2^(6+30) words, far beyond any limit).
const CLASSES: usize = 31;
/// Buffers kept per class.
const PER_CLASS: usize = 4;
/// Bytes of buffers the pool keeps in all; a buffer that would pass it is freed instead.
pub const MAX_CACHED_BYTES: usize = 256 << 20;
/// Buffers of at least this many bytes are large: kept only while they are being used.
pub const LARGE_BYTES: usize = 8 << 20;
/// A cached large buffer is freed once this many large buffers were taken since it came back
/// without it being one of them (a frame size the peers stopped sending).
pub const STALE_AFTER_TAKES: u64 = 4;

/// A pool of aligned byte buffers, cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    free: Mutex<Free>,
    /// What buffers that grow past their first allocation are charged to.
    budget: Option<Budget>,
    /// Bytes of buffers kept at most ([`MAX_CACHED_BYTES`] but in tests).
    max_cached: usize,
}

#[derive(Debug)]
struct Free {
    classes: Vec<Vec<Cached>>,
    /// Capacity in bytes of every cached buffer.
    bytes: usize,
    /// Large buffers taken so far (the clock that ages cached large buffers).
    large_takes: u64,
}

/// A buffer waiting in the pool, and when it came back (in `large_takes`).
#[derive(Debug)]
struct Cached {
    data: Vec<u64>,
    returned_at: u64,
}

impl Free {
    /// Counts one more large take and removes the cached large buffers that have sat through
    /// [`STALE_AFTER_TAKES`] of them (returned, to be freed outside the lock).
    fn age_large(&mut self) -> Vec<Vec<u64>> {
        self.large_takes += 1;
        let now = self.large_takes;
        let mut stale = Vec::new();
        for list in &mut self.classes[class_of(LARGE_BYTES / 8)..] {
            let mut i = 0;
            while i < list.len() {
                if now - list[i].returned_at > STALE_AFTER_TAKES {
                    stale.push(list.swap_remove(i).data);
                } else {
                    i += 1;
                }
            }
        }
        self.bytes -= stale.iter().map(|d| d.capacity() * 8).sum::<usize>();
        stale
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    /// An empty pool whose buffers are charged to no budget.
    pub fn new() -> BufferPool {
        BufferPool::build(None, MAX_CACHED_BYTES)
    }

    /// An empty pool whose growing buffers are charged to `budget`'s frame bytes.
    pub fn with_budget(budget: Budget) -> BufferPool {
        BufferPool::build(Some(budget), MAX_CACHED_BYTES)
    }

    fn build(budget: Option<Budget>, max_cached: usize) -> BufferPool {
        BufferPool {
            inner: Arc::new(PoolInner {
                free: Mutex::new(Free {
                    classes: (0..CLASSES).map(|_| Vec::new()).collect(),
                    bytes: 0,
                    large_takes: 0,
                }),
                budget,
                max_cached,
            }),
        }
    }

    /// A buffer of exactly `len` visible bytes (contents unspecified: the caller overwrites them).
    /// Aborts like any allocation when memory is exhausted; frames from peers use
    /// [`BufferPool::try_take`].
    pub fn take(&self, len: usize) -> PooledBuf {
        match self.try_take(len, len) {
            Ok(buf) => buf,
            Err(_) => std::alloc::handle_alloc_error(
                std::alloc::Layout::array::<u64>(len.div_ceil(8))
                    .unwrap_or(std::alloc::Layout::new::<u64>()),
            ),
        }
    }

    /// A buffer of `len` visible bytes that may later grow to `until` (`PooledBuf::try_grow`):
    /// a cached buffer large enough for `until` is taken when there is one, so that growing it
    /// allocates nothing. Fails instead of aborting when memory cannot be had.
    pub fn try_take(&self, len: usize, until: usize) -> Result<PooledBuf, WireError> {
        let words = len.div_ceil(8).max(1);
        let wanted = until.div_ceil(8).max(words);
        let mut stale = Vec::new();
        let reused = self.inner.free.lock().ok().and_then(|mut free| {
            if wanted * 8 >= LARGE_BYTES {
                stale = free.age_large();
            }
            let data = free
                .classes
                .get_mut(class_of(wanted))
                .and_then(Vec::pop)?
                .data;
            free.bytes -= data.capacity() * 8;
            Some(data)
        });
        drop(stale); // freed outside the lock
        let mut data = match reused {
            Some(data) => data,
            None => alloc_words(class_words(class_of(words)))?,
        };
        if data.len() < words {
            data.resize(words, 0);
        }
        Ok(PooledBuf {
            data,
            len,
            pool: Some(self.inner.clone()),
            charge: Charge::default(),
        })
    }

    /// How many buffers are cached (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.inner
            .free
            .lock()
            .map(|free| free.classes.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Bytes of the buffers cached (for tests and metrics).
    pub fn cached_bytes(&self) -> usize {
        self.inner.free.lock().map(|free| free.bytes).unwrap_or(0)
    }
}

/// An empty vector with room for exactly `words` words, or an error instead of an abort.
fn alloc_words(words: usize) -> Result<Vec<u64>, WireError> {
    let mut data = Vec::new();
    data.try_reserve_exact(words)
        .map_err(|_| WireError::NoMemory(words as u64 * 8))?;
    Ok(data)
}

fn class_of(words: usize) -> usize {
    let bits = usize::BITS - (words - 1).leading_zeros();
    (bits.saturating_sub(MIN_CLASS) as usize).min(CLASSES - 1)
}

fn class_words(class: usize) -> usize {
    1usize << (class as u32 + MIN_CLASS)
}

/// A buffer from a [`BufferPool`], returned to it on drop.
#[derive(Debug)]
pub struct PooledBuf {
    /// Capacity a power of two words for pooled buffers; `len` bytes of it initialised.
    data: Vec<u64>,
    len: usize,
    pool: Option<Arc<PoolInner>>,
    charge: Charge,
}

impl PooledBuf {
    /// A buffer that belongs to no pool.
    pub fn unpooled(len: usize) -> PooledBuf {
        PooledBuf {
            data: vec![0u64; len.div_ceil(8).max(1)],
            len,
            pool: None,
            charge: Charge::default(),
        }
    }

    /// Visible length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no visible bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The visible bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data.as_bytes()[..self.len]
    }

    /// The visible bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data.as_mut_bytes()[..self.len]
    }

    /// Shortens the visible bytes to `len` (no-op when it is not shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes `len` bytes visible (keeping the visible ones), growing the allocation by size
    /// class when needed and charging the whole buffer to the pool's budget once it is larger
    /// than `free_below` bytes. Fails, leaving the buffer as it was, when the budget or the
    /// memory says no.
    pub(crate) fn try_grow(&mut self, len: usize, free_below: usize) -> Result<(), WireError> {
        if len <= self.len {
            return Ok(());
        }
        if len > free_below {
            if let Some(budget) = self.pool.as_ref().and_then(|p| p.budget.as_ref()) {
                self.charge.grow_to(budget, len)?;
            }
        }
        let words = len.div_ceil(8);
        if words > self.data.capacity() {
            let target = class_words(class_of(words)).max(words);
            self.data
                .try_reserve_exact(target - self.data.len())
                .map_err(|_| WireError::NoMemory(target as u64 * 8))?;
        }
        if words > self.data.len() {
            self.data.resize(words, 0);
        }
        self.len = len;
        Ok(())
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let words = self.data.capacity();
        if !words.is_power_of_two() {
            return;
        }
        let bytes = words * 8;
        let class = class_of(words);
        let data = std::mem::take(&mut self.data);
        if let Ok(mut free) = pool.free.lock() {
            let room = free.bytes + bytes <= pool.max_cached;
            let returned_at = free.large_takes;
            if let Some(list) = free.classes.get_mut(class).filter(|l| l.len() < PER_CLASS) {
                if room {
                    list.push(Cached { data, returned_at });
                    free.bytes += bytes;
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_class() {
        let pool = BufferPool::new();
        let a = pool.take(1000);
        let ptr = a.as_bytes().as_ptr();
        assert_eq!(a.len(), 1000);
        drop(a);
        assert_eq!(pool.cached(), 1);
        let b = pool.take(900);
        assert_eq!(b.as_bytes().as_ptr(), ptr, "same class reuses the buffer");
        let c = pool.take(5000);
        assert_ne!(c.as_bytes().as_ptr(), ptr);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_bytes() {
        let cap = 1 << 20;
        let pool = BufferPool::build(None, cap);
        drop(pool.take(cap + 1));
        assert_eq!(pool.cached(), 0, "a buffer over the cap is freed, not kept");
        let bufs: Vec<_> = [cap / 2, cap / 2, cap / 4].map(|n| pool.take(n)).into();
        drop(bufs);
        assert_eq!(pool.cached(), 2, "the third would pass the cap");
        assert_eq!(pool.cached_bytes(), cap);
    }

    #[test]
    fn a_large_buffer_no_longer_asked_for_is_freed() {
        let pool = BufferPool::new();
        // One huge frame (a first push: keys and values), then frames of another size.
        drop(pool.take(3 * LARGE_BYTES));
        let huge = pool.cached_bytes();
        assert!(huge >= 3 * LARGE_BYTES);
        for _ in 0..STALE_AFTER_TAKES {
            drop(pool.take(LARGE_BYTES));
            assert!(pool.cached_bytes() >= huge, "not yet stale");
        }
        drop(pool.take(LARGE_BYTES));
        assert!(
            pool.cached_bytes() < huge,
            "{} bytes still cached",
            pool.cached_bytes()
        );
        assert_eq!(pool.cached(), 1, "the buffer in use stays");
        // Small buffers do not age the large ones.
        drop(pool.take(3 * LARGE_BYTES));
        for _ in 0..100 {
            drop(pool.take(1000));
        }
        assert!(pool.cached_bytes() >= 3 * LARGE_BYTES);
    }

    #[test]
    fn growing_keeps_the_bytes_and_charges_the_budget() {
        let budget = Budget::new(crate::Budgets {
            frame_bytes_total: 1 << 20,
            ..crate::Budgets::default()
        });
        let pool = BufferPool::with_budget(budget.clone());
        let mut b = pool.try_take(1000, 900_000).unwrap();
        b.as_bytes_mut()[..4].copy_from_slice(b"abcd");
        b.try_grow(4000, 2000).unwrap();
        assert_eq!(&b.as_bytes()[..4], b"abcd");
        assert_eq!(b.len(), 4000);
        assert_eq!(budget.frame_bytes(), 4000);
        let err = b.try_grow(2 << 20, 2000).unwrap_err();
        assert!(matches!(err, WireError::OverBudget { .. }), "{err}");
        assert_eq!(
            b.len(),
            4000,
            "a refused growth leaves the buffer as it was"
        );
        drop(b);
        assert_eq!(budget.frame_bytes(), 0);
    }

    #[test]
    fn an_impossible_allocation_is_an_error_not_an_abort() {
        let pool = BufferPool::new();
        let mut b = pool.try_take(8, 8).unwrap();
        let err = b.try_grow(usize::MAX / 2, usize::MAX).unwrap_err();
        assert!(matches!(err, WireError::NoMemory(_)), "{err}");
    }

    #[test]
    fn buffers_are_eight_byte_aligned() {
        let pool = BufferPool::new();
        for len in [0, 1, 7, 8, 9, 4096, 70_000] {
            let b = pool.take(len);
            assert_eq!(b.as_bytes().as_ptr() as usize % 8, 0);
            assert_eq!(b.len(), len);
        }
    }
}
