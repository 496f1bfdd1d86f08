//! Pooled, 8-byte-aligned receive buffers.
//!
//! Large frames (a 10M-key push is 120 MB) would otherwise cost a fresh mmap and a page fault per
//! 4 KiB page on every request. Buffers come back to the pool when dropped and are handed out
//! again by size class (powers of two). The RDMA transport will hand out registered buffers
//! through the same type.

use std::sync::{Arc, Mutex};

use zerocopy::IntoBytes;

/// Smallest class: 2^6 words = 512 bytes.
const MIN_CLASS: u32 = 6;
/// Number of size classes (up to 2^(6+30) words, far beyond any limit).
const CLASSES: usize = 31;
/// Buffers kept per class.
const PER_CLASS: usize = 4;

/// A pool of aligned byte buffers, cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    free: Mutex<Vec<Vec<Vec<u64>>>>,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    /// An empty pool.
    pub fn new() -> BufferPool {
        BufferPool {
            inner: Arc::new(PoolInner {
                free: Mutex::new(vec![Vec::new(); CLASSES]),
            }),
        }
    }

    /// A buffer of exactly `len` visible bytes (contents unspecified: the caller overwrites them).
    pub fn take(&self, len: usize) -> PooledBuf {
        let words = len.div_ceil(8).max(1);
        let class = class_of(words);
        let reused = self
            .inner
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.get_mut(class).and_then(Vec::pop));
        let data = reused.unwrap_or_else(|| vec![0u64; class_words(class)]);
        PooledBuf {
            data,
            len,
            pool: Some(self.inner.clone()),
        }
    }

    /// How many buffers are cached (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.inner
            .free
            .lock()
            .map(|free| free.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }
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
    data: Vec<u64>,
    len: usize,
    pool: Option<Arc<PoolInner>>,
}

impl PooledBuf {
    /// A buffer that belongs to no pool.
    pub fn unpooled(len: usize) -> PooledBuf {
        PooledBuf {
            data: vec![0u64; len.div_ceil(8).max(1)],
            len,
            pool: None,
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
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let words = self.data.len();
        if !words.is_power_of_two() {
            return;
        }
        let class = class_of(words);
        let data = std::mem::take(&mut self.data);
        if let Ok(mut free) = pool.free.lock() {
            if let Some(list) = free.get_mut(class) {
                if list.len() < PER_CLASS {
                    list.push(data);
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
    fn buffers_are_eight_byte_aligned() {
        let pool = BufferPool::new();
        for len in [0, 1, 7, 8, 9, 4096, 70_000] {
            let b = pool.take(len);
            assert_eq!(b.as_bytes().as_ptr() as usize % 8, 0);
            assert_eq!(b.len(), len);
        }
    }
}
