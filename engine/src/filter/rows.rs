//! A map from key to a fixed-width row of f32, backed by one slab with a free list so that
//! rows are reused instead of reallocated. Memory is `len() · dim · 4` bytes of rows plus the
//! hash index, and shrinks back only through [`RowStore::clear`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for u64 keys: a multiply-xorshift mix (keys may be sequential or already hashed).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, k: u64) {
        let x = (k ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

pub(crate) struct RowStore {
    dim: usize,
    index: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    data: Vec<f32>,
    free: Vec<u32>,
}

impl RowStore {
    pub(crate) fn new(dim: usize) -> RowStore {
        RowStore {
            dim,
            index: HashMap::default(),
            data: Vec::new(),
            free: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes held by rows in use (excluding the index and free slots).
    pub(crate) fn bytes(&self) -> usize {
        self.index.len() * self.dim * 4
    }

    pub(crate) fn get(&self, key: u64) -> Option<&[f32]> {
        let r = *self.index.get(&key)? as usize;
        Some(&self.data[r * self.dim..(r + 1) * self.dim])
    }

    /// The key's row, inserted as zeros if absent.
    pub(crate) fn entry(&mut self, key: u64) -> &mut [f32] {
        let dim = self.dim;
        let r = match self.index.get(&key) {
            Some(&r) => r as usize,
            None => {
                let r = match self.free.pop() {
                    Some(r) => {
                        let r = r as usize;
                        self.data[r * dim..(r + 1) * dim].fill(0.0);
                        r
                    }
                    None => {
                        let r = self.data.len() / dim.max(1);
                        self.data.resize(self.data.len() + dim, 0.0);
                        r
                    }
                };
                self.index.insert(key, r as u32);
                r
            }
        };
        &mut self.data[r * dim..(r + 1) * dim]
    }

    pub(crate) fn remove(&mut self, key: u64) {
        if let Some(r) = self.index.remove(&key) {
            self.free.push(r);
        }
    }

    /// Every key (ascending) with its row appended to `values`; the store is left empty.
    pub(crate) fn drain_sorted(&mut self, keys: &mut Vec<u64>, values: &mut Vec<f32>) {
        let mut entries: Vec<(u64, u32)> = self.index.drain().collect();
        entries.sort_unstable_by_key(|e| e.0);
        keys.reserve(entries.len());
        values.reserve(entries.len() * self.dim);
        for (k, r) in entries {
            let r = r as usize;
            keys.push(k);
            values.extend_from_slice(&self.data[r * self.dim..(r + 1) * self.dim]);
        }
        self.clear();
    }

    /// Forgets everything and releases the memory.
    pub(crate) fn clear(&mut self) {
        self.index = HashMap::default();
        self.data = Vec::new();
        self.free = Vec::new();
    }
}
