//! The key → slot map of a sparse table: open addressing, from a key to the storage slot that
//! holds its values.
//!
//! Slots are handed out in first-seen order and never change, so growing the map (rehashing)
//! never invalidates a slot a request or a cached resolution holds.

const EMPTY: u32 = u32::MAX;

/// Key → slot map with linear probing.
#[derive(Debug, Clone)]
pub struct SlotMap {
    keys: Vec<u64>,
    slots: Vec<u32>,
    len: usize,
    mask: usize,
}

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap::with_capacity(16)
    }
}

#[inline]
fn bucket_of(key: u64, mask: usize) -> usize {
    // Fibonacci hashing: multiply by 2^64/φ and keep the high bits.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & mask
}

impl SlotMap {
    /// A map that holds `n` keys before it grows.
    pub fn with_capacity(n: usize) -> SlotMap {
        let buckets = (n.max(8) * 2).next_power_of_two();
        SlotMap {
            keys: vec![0; buckets],
            slots: vec![EMPTY; buckets],
            len: 0,
            mask: buckets - 1,
        }
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the map.
    pub fn memory_bytes(&self) -> usize {
        self.keys.len() * 12
    }

    /// Every (key, slot) pair, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.keys
            .iter()
            .zip(&self.slots)
            .filter(|(_, &s)| s != EMPTY)
            .map(|(&k, &s)| (k, s))
    }

    /// The slot of `key`, if present.
    pub fn get(&self, key: u64) -> Option<u32> {
        let mut b = bucket_of(key, self.mask);
        loop {
            let slot = self.slots[b];
            if slot == EMPTY {
                return None;
            }
            if self.keys[b] == key {
                return Some(slot);
            }
            b = (b + 1) & self.mask;
        }
    }

    /// The slot of `key`, inserting it with slot `next` if absent. Returns (slot, inserted).
    pub fn get_or_insert(&mut self, key: u64, next: u32) -> (u32, bool) {
        if (self.len + 1) * 10 > self.keys.len() * 7 {
            self.grow();
        }
        let mut b = bucket_of(key, self.mask);
        loop {
            let slot = self.slots[b];
            if slot == EMPTY {
                self.keys[b] = key;
                self.slots[b] = next;
                self.len += 1;
                return (next, true);
            }
            if self.keys[b] == key {
                return (slot, false);
            }
            b = (b + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let mut bigger = SlotMap::with_capacity(self.keys.len());
        for (k, &s) in self.keys.iter().zip(&self.slots) {
            if s != EMPTY {
                let mut b = bucket_of(*k, bigger.mask);
                while bigger.slots[b] != EMPTY {
                    b = (b + 1) & bigger.mask;
                }
                bigger.keys[b] = *k;
                bigger.slots[b] = s;
            }
        }
        bigger.len = self.len;
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map_across_growth() {
        let mut map = SlotMap::with_capacity(4);
        let mut reference = HashMap::new();
        let mut next = 0u32;
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = x % 5000 * 0x1_0000_0001; // repeats, and keys with equal low bits
            let (slot, inserted) = map.get_or_insert(key, next);
            let expected = *reference.entry(key).or_insert(next);
            assert_eq!(slot, expected);
            if inserted {
                next += 1;
            }
        }
        assert_eq!(map.len(), reference.len());
        for (k, s) in &reference {
            assert_eq!(map.get(*k), Some(*s));
        }
        assert_eq!(map.get(7), None);
    }
}
