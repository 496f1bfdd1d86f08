//! The key → slot map of a sparse table: open addressing, from a key to the storage slot that
//! holds its values.
//!
//! Slots are handed out in first-seen order and never change, so growing the map (rehashing)
//! never invalidates a slot a request or a cached resolution holds.
//!
//! Layout: one array of 12-byte buckets, each a key next to its slot, so a probe touches one
//! cache line (rarely two) rather than one in a key array and one in a slot array. The bucket
//! count is not a power of two (a hash is mapped onto it by a multiply, not a mask), so the
//! map can be sized to what it holds: up to [`MAX_LOAD_PERCENT`] full, growing by half when it
//! must. A whole key list is resolved in one pass that prefetches the buckets of the keys
//! [`PREFETCH_AHEAD`] positions ahead, so a list of keys whose buckets are all cache misses
//! costs about one memory latency per [`PREFETCH_AHEAD`] keys rather than one per key.
//!
//! Key lists arrive sorted, and the keys of large sparse models are usually spread evenly over
//! the u64 space (hashed feature ids), so evenly over each server's share of it. While they
//! are, the map places each key at its position in that share (its store's key range,
//! [`SlotMap::set_key_range`]) scaled to the buckets ("ordered" placement): a sorted list then
//! walks the buckets front to back, a stream the hardware prefetches, not one cache miss per
//! key.
//! Keys that are not spread evenly crowd together in that placement; the first key that lands
//! more than [`MAX_ORDERED_DISPLACEMENT`] buckets past its place switches the map, for good, to
//! Fibonacci hashing (keys mixed by a multiply), which spreads any keys.

const EMPTY: u32 = u32::MAX;

/// Largest share of buckets in use, in percent, before the map grows.
pub const MAX_LOAD_PERCENT: usize = 85;

/// How many keys ahead of the one being resolved a list's buckets are prefetched.
pub const PREFETCH_AHEAD: usize = 16;

/// How far past its place a key may land while the map keeps keys in order.
pub const MAX_ORDERED_DISPLACEMENT: usize = 256;

/// The multipliers of the two placements: keys in order (kept as they are), and Fibonacci
/// hashing (2^64 / φ).
const ORDERED: u64 = 1;
const HASHED: u64 = 0x9E37_79B9_7F4A_7C15;

/// One key and its slot; `slot == EMPTY` marks a free bucket. Packed to 12 bytes (4-byte
/// aligned) so that five buckets and a third share a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Bucket {
    key: u64,
    slot: u32,
}

const FREE: Bucket = Bucket {
    key: 0,
    slot: EMPTY,
};

/// The key map is full: no slot is left to hand out (slots are `u32`, one value reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no slot left: {0} slots handed out")]
pub struct SlotsExhausted(pub u32);

/// Key → slot map with linear probing.
#[derive(Debug, Clone)]
pub struct SlotMap {
    buckets: Vec<Bucket>,
    len: usize,
    /// Where a key's probe starts.
    place: Placement,
    /// The keys `[first, last]` a map in order spreads over its buckets: the key range its
    /// store holds.
    range: (u64, u64),
}

/// Where keys go among `n` buckets: a key multiplied by `mix` ([`ORDERED`]: kept as it is;
/// [`HASHED`]: Fibonacci hashing), its offset from `lo` (at most `span`) scaled onto
/// `[0, n)` by a multiply (no power-of-two bucket count needed).
#[derive(Debug, Clone, Copy)]
struct Placement {
    mix: u64,
    lo: u64,
    span: u64,
    /// About `n × 2^64 / (span + 1)`, so that `(offset × scale) >> 64 < n`.
    scale: u64,
}

impl Placement {
    /// Keys hashed over the whole u64 space.
    fn hashed(n: usize) -> Placement {
        Placement {
            mix: HASHED,
            lo: 0,
            span: u64::MAX,
            scale: n as u64,
        }
    }

    /// Keys in order, `[lo, hi]` spread over the buckets (keys outside go to either end).
    fn ordered(lo: u64, hi: u64, n: usize) -> Placement {
        let span = hi.saturating_sub(lo);
        let scale = ((n as u128) << 64) / (u128::from(span) + 1);
        Placement {
            mix: ORDERED,
            lo,
            span,
            scale: u64::try_from(scale).unwrap_or(u64::MAX),
        }
    }

    /// The home bucket of `key`.
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        let offset = key
            .wrapping_mul(self.mix)
            .saturating_sub(self.lo)
            .min(self.span);
        ((u128::from(offset) * u128::from(self.scale)) >> 64) as usize
    }
}

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap::with_capacity(16)
    }
}

/// Buckets that hold `keys` keys at most [`MAX_LOAD_PERCENT`] full.
fn buckets_for(keys: usize) -> usize {
    (keys.max(8) * 100).div_ceil(MAX_LOAD_PERCENT) + 1
}

/// Asks the CPU to bring the cache lines of `bucket` in (a hint; never faults).
#[inline(always)]
fn prefetch(bucket: &Bucket) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (bucket as *const Bucket).cast::<i8>();
        let last = p.wrapping_add(std::mem::size_of::<Bucket>() - 1);
        // SAFETY: SSE is part of x86_64, and a prefetch is a hint that never faults nor changes
        // what the program reads; both addresses lie in the bucket borrowed here. A bucket may
        // straddle two cache lines, hence the line of its last byte too.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bucket;
}

/// `n` free buckets, on transparent hugepages where the kernel gives them.
fn free_buckets(n: usize) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::with_capacity(n);
    let bytes = n * std::mem::size_of::<Bucket>();
    if bytes >= 4 << 20 {
        crate::memory::advise_hugepages_inside(buckets.as_ptr().cast(), bytes);
    }
    buckets.resize(n, FREE);
    buckets
}

impl SlotMap {
    /// A map that holds `n` keys before it grows.
    pub fn with_capacity(n: usize) -> SlotMap {
        let buckets = buckets_for(n);
        SlotMap {
            buckets: free_buckets(buckets),
            len: 0,
            place: Placement::ordered(0, u64::MAX, buckets),
            range: (0, u64::MAX),
        }
    }

    /// Tells the map the keys `[first, last]` it will hold (its store's key range), which a
    /// map in order spreads over its buckets: keys spread evenly over a server's share of the
    /// u64 space then stay in order.
    pub fn set_key_range(&mut self, first: u64, last: u64) {
        self.range = (first, last.max(first));
        self.rehash(self.buckets.len());
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether keys are placed in order (not hashed): see the module's documentation.
    pub fn is_ordered(&self) -> bool {
        self.place.mix == ORDERED
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys the map holds before it grows.
    fn room(&self) -> usize {
        self.buckets.len() * MAX_LOAD_PERCENT / 100
    }

    /// Bytes held by the map.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Every (key, slot) pair, in the map's internal order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buckets
            .iter()
            .filter(|b| b.slot != EMPTY)
            .map(|b| (b.key, b.slot))
    }

    /// The slot of `key`, if present.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.probe(key, self.place.home(key))
    }

    /// The slot of `key`, probing one bucket at a time from bucket `i` on.
    #[inline(always)]
    fn probe(&self, key: u64, mut i: usize) -> Option<u32> {
        let n = self.buckets.len();
        loop {
            let b = self.buckets[i];
            if b.slot == EMPTY {
                return None;
            }
            if b.key == key {
                return Some(b.slot);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// The slots of `keys`, in order, `None` for each key not present; the same as [`get`] on
    /// each key, with the buckets of keys ahead prefetched.
    ///
    /// [`get`]: SlotMap::get
    pub fn get_all(&self, keys: &[u64], mut each: impl FnMut(Option<u32>)) {
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                prefetch(&self.buckets[self.place.home(ahead)]);
            }
            each(self.probe(key, self.place.home(key)));
        }
    }

    /// The slot of `key`, inserting it with slot `next` if absent. Returns (slot, inserted).
    pub fn get_or_insert(&mut self, key: u64, next: u32) -> (u32, bool) {
        if self.len >= self.room() {
            self.grow_to(self.len + 1);
        }
        self.get_or_insert_with_room(key, next)
    }

    /// [`SlotMap::get_or_insert`] where the caller made sure one more key fits.
    #[inline]
    fn get_or_insert_with_room(&mut self, key: u64, next: u32) -> (u32, bool) {
        match self.get(key) {
            Some(slot) => (slot, false),
            None => self.insert_absent(key, next),
        }
    }

    /// Puts `key`, known to be absent, with slot `next` into the first free bucket from its
    /// home (room for it made sure of).
    fn insert_absent(&mut self, key: u64, next: u32) -> (u32, bool) {
        let n = self.buckets.len();
        let mut i = self.place.home(key);
        let mut displacement = 0;
        loop {
            let b = self.buckets[i];
            if displacement > MAX_ORDERED_DISPLACEMENT && self.is_ordered() {
                self.uncrowd();
                return self.insert_absent(key, next);
            }
            displacement += 1;
            if b.slot == EMPTY {
                self.buckets[i] = Bucket { key, slot: next };
                self.len += 1;
                return (next, true);
            }
            if b.key == key {
                return (b.slot, false);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// The slots of `keys` in order, giving each key not present the next slot from `*next`
    /// (then counting it up): [`SlotMap::get_or_insert`] on each key, with the buckets of keys
    /// ahead prefetched. When the map must grow partway, it grows to fit the rest of the list
    /// at the share of new keys seen so far (a first bulk list sizes it once, exactly).
    pub fn get_or_insert_all(
        &mut self,
        keys: &[u64],
        next: &mut u32,
        slots: &mut Vec<u32>,
    ) -> Result<(), SlotsExhausted> {
        slots.reserve(keys.len());
        let mut inserted = 0usize;
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                prefetch(&self.buckets[self.place.home(ahead)]);
            }
            let slot = match self.probe(key, self.place.home(key)) {
                Some(slot) => slot,
                None if *next == EMPTY => return Err(SlotsExhausted(*next)),
                None => {
                    if self.len >= self.room() {
                        self.grow_for_rest(keys.len() - i, inserted, i);
                    }
                    self.insert_absent(key, *next);
                    *next += 1;
                    inserted += 1;
                    *next - 1
                }
            };
            slots.push(slot);
        }
        Ok(())
    }

    /// Grows for the `rest` keys of a list not resolved yet, `inserted` of the `done` keys
    /// before them having been new: it guesses the rest hold new keys in the same share (all
    /// of them while too few were seen to tell), so a first bulk list sizes the map once. (A
    /// map in order must not guess low early: the keys of a sorted list fill the buckets of
    /// their part of the range as densely as the whole list will.)
    fn grow_for_rest(&mut self, rest: usize, inserted: usize, done: usize) {
        const SEEN_TO_TELL: usize = 1024;
        let new_rest = if done < SEEN_TO_TELL {
            rest
        } else {
            (rest as u128 * inserted as u128).div_ceil(done as u128) as usize
        };
        self.grow_to(self.len + new_rest.max(1));
    }

    /// Makes room for `n` more keys without growing again.
    pub fn reserve(&mut self, n: usize) {
        let keys = self.len + n;
        if keys > self.room() {
            self.rehash(buckets_for(keys));
        }
    }

    /// Grows to hold at least `keys` keys, and at least half as many buckets again as now (so
    /// that growing one key at a time costs a constant per key).
    fn grow_to(&mut self, keys: usize) {
        let buckets = buckets_for(keys).max(self.buckets.len() + self.buckets.len() / 2);
        self.rehash(buckets);
    }

    /// Keys crowd in order: they are not spread evenly over the map's range, so hash them
    /// from now on.
    fn uncrowd(&mut self) {
        self.place = Placement::hashed(self.buckets.len());
        self.rehash(self.buckets.len());
    }

    /// Moves every key into a map of `n` buckets.
    fn rehash(&mut self, n: usize) {
        self.place = match self.is_ordered() {
            true => Placement::ordered(self.range.0, self.range.1, n),
            false => Placement::hashed(n),
        };
        let old = std::mem::replace(&mut self.buckets, free_buckets(n));
        for b in old.into_iter().filter(|b| b.slot != EMPTY) {
            let mut i = self.place.home(b.key);
            while self.buckets[i].slot != EMPTY {
                i += 1;
                if i == n {
                    i = 0;
                }
            }
            self.buckets[i] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lcg(x: &mut u64) -> u64 {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *x
    }

    #[test]
    fn agrees_with_a_hash_map_across_growth() {
        let mut map = SlotMap::with_capacity(4);
        let mut reference = HashMap::new();
        let mut next = 0u32;
        let mut x = 12345u64;
        for _ in 0..20_000 {
            let key = lcg(&mut x) % 5000 * 0x1_0000_0001; // repeats, and keys with equal low bits
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
        let before = map.memory_bytes();
        map.reserve(0);
        assert_eq!(map.memory_bytes(), before, "room enough already");
        let mut reserved = SlotMap::default();
        reserved.reserve(reference.len());
        for (k, s) in &reference {
            reserved.get_or_insert(*k, *s);
        }
        assert!(
            reserved.memory_bytes() <= before,
            "reserving sizes the map for what it holds"
        );
        assert!(reserved.len() * 12 * 100 <= reserved.memory_bytes() * MAX_LOAD_PERCENT);
        let mut pairs: Vec<(u64, u32)> = map.iter().collect();
        pairs.sort_unstable();
        let mut expected: Vec<(u64, u32)> = reference.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn a_bucket_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 12);
    }

    #[test]
    fn resolving_a_list_at_once_equals_key_by_key() {
        let (mut batch, mut single) = (SlotMap::default(), SlotMap::default());
        let (mut next_batch, mut next_single) = (0u32, 0u32);
        let mut x = 7u64;
        for round in 0..6 {
            // Lists of sizes around the prefetch distance and growth points, overlapping the
            // keys already held (about half of each list is new after the first).
            let len = [1, PREFETCH_AHEAD + 1, 1000, 4099, 12_000, 20_000][round];
            let mut keys: Vec<u64> = (0..len).map(|_| lcg(&mut x) % 60_000).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut slots = Vec::new();
            batch
                .get_or_insert_all(&keys, &mut next_batch, &mut slots)
                .unwrap();
            let expected: Vec<u32> = keys
                .iter()
                .map(|&k| {
                    let (s, new) = single.get_or_insert(k, next_single);
                    next_single += u32::from(new);
                    s
                })
                .collect();
            assert_eq!(slots, expected, "round {round}");
            assert_eq!(next_batch, next_single);
            assert_eq!(batch.len(), single.len());
            let mut found = Vec::new();
            let probe: Vec<u64> = (0..len as u64).map(|k| k * 3).collect();
            batch.get_all(&probe, |s| found.push(s));
            let one_by_one: Vec<Option<u32>> = probe.iter().map(|&k| single.get(k)).collect();
            assert_eq!(found, one_by_one);
            if len > 1000 {
                assert!(found.iter().any(Option::is_none) && found.iter().any(Option::is_some));
            }
        }
    }

    #[test]
    fn a_first_bulk_list_sizes_the_map_once_and_tightly() {
        let mut map = SlotMap::default();
        let keys: Vec<u64> = (0..100_000u64).map(|k| k << 20).collect();
        let mut next = 0;
        let mut slots = Vec::new();
        map.get_or_insert_all(&keys, &mut next, &mut slots).unwrap();
        assert_eq!(slots, (0..100_000).collect::<Vec<u32>>());
        let per_key = map.memory_bytes() as f64 / map.len() as f64;
        assert!(
            per_key <= 12.0 * 100.0 / MAX_LOAD_PERCENT as f64 + 0.1,
            "{per_key} bytes per key"
        );
        // The same list again adds nothing and does not grow the map.
        let bytes = map.memory_bytes();
        slots.clear();
        map.get_or_insert_all(&keys, &mut next, &mut slots).unwrap();
        assert_eq!(next, 100_000);
        assert_eq!(map.memory_bytes(), bytes);
    }

    #[test]
    fn evenly_spread_keys_stay_in_order_and_crowded_keys_switch_to_hashing() {
        let mut map = SlotMap::default();
        let step = u64::MAX / 100_000;
        let spread: Vec<u64> = (0..100_000u64).map(|i| i * step + i % 7).collect();
        let (mut next, mut slots) = (0u32, Vec::new());
        map.get_or_insert_all(&spread, &mut next, &mut slots)
            .unwrap();
        assert!(map.is_ordered(), "evenly spread keys keep their order");
        // In order, a sorted list's buckets come front to back.
        let mut found = Vec::new();
        map.get_all(&spread, |s| found.push(s.unwrap()));
        assert_eq!(found, (0..100_000).collect::<Vec<u32>>());
        // Small ids all belong near bucket 0: they crowd, and the map turns to hashing.
        let crowded: Vec<u64> = (1..=5_000u64).map(|i| i * 3).collect();
        let mut more = Vec::new();
        map.get_or_insert_all(&crowded, &mut next, &mut more)
            .unwrap();
        assert!(!map.is_ordered());
        assert_eq!(more, (100_000..105_000).collect::<Vec<u32>>());
        for (i, &k) in spread.iter().enumerate() {
            assert_eq!(map.get(k), Some(i as u32));
        }
        for (i, &k) in crowded.iter().enumerate() {
            assert_eq!(map.get(k), Some(100_000 + i as u32));
        }
        assert_eq!(map.get(1), None);
        assert_eq!(map.iter().count(), 105_000);
    }

    #[test]
    fn a_server_range_of_evenly_spread_keys_stays_in_order() {
        // A server holding the second quarter of the u64 space, its keys spread evenly.
        let (lo, step) = (1u64 << 62, (1u64 << 62) / 200_000);
        let all: Vec<u64> = (0..200_000u64).map(|i| lo + i * step).collect();
        let mut unranged = SlotMap::default();
        let (mut next, mut slots) = (0u32, Vec::new());
        unranged
            .get_or_insert_all(&all, &mut next, &mut slots)
            .unwrap();
        assert!(
            !unranged.is_ordered(),
            "over the whole space, a quarter of it crowds"
        );
        let mut map = SlotMap::default();
        map.set_key_range(lo, 2 * lo - 1);
        let (mut next, mut ranged) = (0u32, Vec::new());
        // Every other key first (a list as spread as the keys), then all of them.
        let half: Vec<u64> = all.iter().copied().step_by(2).collect();
        map.get_or_insert_all(&half, &mut next, &mut ranged)
            .unwrap();
        ranged.clear();
        map.get_or_insert_all(&all, &mut next, &mut ranged).unwrap();
        assert!(map.is_ordered());
        let slot_of = |i: usize| (i / 2 + i % 2 * 100_000) as u32;
        assert_eq!(ranged, (0..200_000).map(slot_of).collect::<Vec<u32>>());
        for (i, &k) in all.iter().enumerate() {
            assert_eq!(map.get(k), Some(slot_of(i)));
            assert_eq!(unranged.get(k), Some(i as u32));
        }
        for absent in [lo + 1, 0, u64::MAX] {
            assert_eq!(map.get(absent), None);
        }
        // Keys outside the range told still find their place (at its ends).
        let (slot, new) = map.get_or_insert(7, next);
        assert!(new && map.get(7) == Some(slot) && map.len() == 200_001);
    }

    #[test]
    fn the_last_slot_is_never_handed_out() {
        let mut map = SlotMap::default();
        let mut next = EMPTY - 2;
        let mut slots = Vec::new();
        let err = map.get_or_insert_all(&[1, 2, 3], &mut next, &mut slots);
        assert_eq!(err, Err(SlotsExhausted(EMPTY)));
        assert_eq!(slots, vec![EMPTY - 2, EMPTY - 1]);
    }
}
