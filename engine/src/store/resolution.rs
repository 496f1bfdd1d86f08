//! Key lists resolved to slots, and the table's one resolution cache.
//!
//! A server turns each request's key list into storage slots. A list it has resolved before
//! (same signature, same keys) is reused from [`ResolutionCache`], so a 10M-key push costs a
//! comparison of the key bytes rather than 10M hash probes, and a list the connection's key
//! cache handed over (the same shared allocation the cache was filled from) costs not even
//! that. This is the server's only resolution cache: the connection's key cache
//! (`key_list_cache`) holds key lists, which the wire protocol needs it to mirror exactly, and
//! no slots. The two are bounded separately (keys per connection there, bytes per table here)
//! and either may drop a list the other holds: a list this cache dropped is resolved again
//! from the keys the connection still holds.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A key list in a shared allocation (held by a connection's key cache and this cache alike).
pub type SharedKeys = Arc<Vec<u64>>;

/// A list of keys per run of slots at least, for a resolution to be kept as its runs alone.
pub const KEYS_PER_RUN: usize = 64;

/// A key list resolved to slots, with its contiguous runs. A list whose slots form few runs
/// (one key in [`KEYS_PER_RUN`] starts a run, or fewer: the usual case for a list pushed
/// before, whose keys got consecutive slots) keeps its runs alone, and its slots are
/// recomputed from them when asked for.
#[derive(Debug)]
pub struct Resolved {
    /// Each key's slot in request order; empty when the runs say it all.
    slots: Vec<u32>,
    /// `(first slot, count)` for each run of consecutive slots, in request order.
    pub runs: Vec<(u32, u32)>,
    len: usize,
}

impl Resolved {
    /// The slots of a list, grouped into runs.
    pub fn new(mut slots: Vec<u32>) -> Resolved {
        let runs = slot_runs(&slots);
        let len = slots.len();
        if runs.len() * KEYS_PER_RUN <= len {
            slots = Vec::new();
        }
        Resolved { slots, runs, len }
    }

    /// Number of keys (and slots).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the slots form few runs ([`KEYS_PER_RUN`] keys a run or more): then work run
    /// by run pays.
    pub fn few_runs(&self) -> bool {
        self.runs.len() * KEYS_PER_RUN <= self.len
    }

    /// Each key's slot, in request order (recomputed from the runs when only they are kept).
    pub fn slots(&self) -> Cow<'_, [u32]> {
        if self.slots.len() == self.len {
            return Cow::Borrowed(&self.slots);
        }
        let mut slots = Vec::with_capacity(self.len);
        for &(first, count) in &self.runs {
            slots.extend(first..first + count);
        }
        Cow::Owned(slots)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.slots.len() * 4 + self.runs.len() * 8
    }
}

/// Groups consecutive slots into runs.
pub fn slot_runs(slots: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &s in slots {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == s => *len += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs
}

/// One cached list: its keys (to tell it from another list of the same signature) and slots.
#[derive(Debug)]
struct Entry {
    keys: SharedKeys,
    resolved: Arc<Resolved>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.keys.len() * 8 + self.resolved.bytes()
    }

    /// Whether `keys` is this entry's list: the very allocation it holds (a list a connection's
    /// key cache shares with this one), or equal keys.
    fn holds(&self, keys: &[u64]) -> bool {
        let same_allocation =
            std::ptr::eq(self.keys.as_ptr(), keys.as_ptr()) && self.keys.len() == keys.len();
        same_allocation || self.keys.as_slice() == keys
    }
}

/// Resolved key lists of one table by signature, first in first out within a byte budget.
#[derive(Debug)]
pub struct ResolutionCache {
    entries: HashMap<u64, Entry>,
    order: VecDeque<u64>,
    bytes: usize,
    limit: usize,
}

impl ResolutionCache {
    /// An empty cache that holds at most `limit` bytes of keys, slots and runs.
    pub fn new(limit: usize) -> ResolutionCache {
        ResolutionCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Forgets every resolution.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets the budget, dropping the oldest lists until what is held fits it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.evict_until(0);
    }

    /// Drops the oldest lists until `more` bytes fit the budget (or nothing is left).
    fn evict_until(&mut self, more: usize) {
        while self.bytes + more > self.limit {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.bytes();
            }
        }
    }

    /// The resolution of `keys` cached under `signature`, with the shared key list it was
    /// cached with; `None` if another list (or none) is cached under that signature.
    pub fn get(&self, signature: u64, keys: &[u64]) -> Option<(&Arc<Resolved>, &SharedKeys)> {
        self.entries
            .get(&signature)
            .filter(|e| e.holds(keys))
            .map(|e| (&e.resolved, &e.keys))
    }

    /// Caches a resolution, replacing any list of the same signature and dropping the oldest
    /// lists until it fits. A list larger than the whole budget is not cached.
    pub fn insert(&mut self, signature: u64, keys: SharedKeys, resolved: Arc<Resolved>) {
        let entry = Entry { keys, resolved };
        let bytes = entry.bytes();
        if bytes > self.limit {
            return;
        }
        self.evict_until(bytes);
        if let Some(old) = self.entries.insert(signature, entry) {
            self.bytes -= old.bytes();
            self.order.retain(|s| *s != signature);
        }
        self.bytes += bytes;
        self.order.push_back(signature);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(n: u32) -> Arc<Resolved> {
        Arc::new(Resolved::new((0..n).collect()))
    }

    #[test]
    fn a_list_is_found_by_signature_and_keys_and_the_oldest_goes_first() {
        // Each list: 10 keys (80 bytes), 10 slots (40), one run (8): 128 bytes.
        let mut c = ResolutionCache::new(300);
        let a = Arc::new((0..10u64).collect::<Vec<_>>());
        c.insert(1, a.clone(), resolved(10));
        assert!(c.get(1, &a).is_some(), "the shared allocation");
        assert!(
            c.get(1, &(0..10u64).collect::<Vec<_>>()).is_some(),
            "equal keys"
        );
        assert!(
            c.get(1, &(1..11u64).collect::<Vec<_>>()).is_none(),
            "same signature"
        );
        c.insert(2, Arc::new((10..20).collect()), resolved(10));
        c.insert(3, Arc::new((20..30).collect()), resolved(10));
        assert!(c.get(1, &a).is_none(), "list 1 made room for list 3");
        assert_eq!(c.bytes(), 256);
        c.insert(4, Arc::new((0..100).collect()), resolved(100));
        assert!(
            c.get(4, &(0..100u64).collect::<Vec<_>>()).is_none(),
            "over the budget"
        );
        c.set_limit(130);
        assert_eq!(c.bytes(), 128, "a smaller budget drops the oldest");
        assert!(c.get(3, &(20..30u64).collect::<Vec<_>>()).is_some());
        c.set_limit(100);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_list_of_few_runs_keeps_its_runs_alone_and_gives_the_same_slots() {
        let contiguous = Resolved::new((100..1100).collect());
        assert_eq!(contiguous.bytes(), 8, "one run, no slot array");
        assert_eq!(*contiguous.slots(), *(100..1100).collect::<Vec<u32>>());
        assert!(contiguous.few_runs() && contiguous.len() == 1000);
        let two: Vec<u32> = (500..600).chain(0..100).collect();
        let r = Resolved::new(two.clone());
        assert_eq!(r.runs, vec![(500, 100), (0, 100)]);
        assert_eq!(*r.slots(), *two);
        let scattered: Vec<u32> = (0..1000).map(|i| i * 7 % 1000).collect();
        let r = Resolved::new(scattered.clone());
        assert!(!r.few_runs());
        assert_eq!(r.bytes(), 1000 * 4 + r.runs.len() * 8, "slots kept");
        assert_eq!(*r.slots(), *scattered);
        assert!(Resolved::new(Vec::new()).slots().is_empty());
    }
}
