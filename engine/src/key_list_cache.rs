//! Key caching on the wire: once a server holds a key list, the worker sends only its 64-bit
//! signature.
//!
//! Both ends of a worker→server connection keep a [`KeyListCache`] with the same capacity (the
//! worker announces it in its `Hello`) and apply the same operation, [`KeyListCache::access`],
//! to every signed request in the same order (one connection is FIFO and the server handles its
//! frames in arrival order). Their contents are therefore identical, so the worker knows
//! exactly which lists the server holds: it never guesses. A new connection (a restarted
//! server) starts both caches empty. Should the two ever disagree (a server that caps its
//! cache below what the worker asked, `ServerConfig::key_cache_cap_keys`), the server answers a
//! signature it does not hold with `Status::KeysUnknown` rather than applying anything; the
//! worker forgets the list (so both agree again), blocking calls resend to that server alone
//! with the keys (a push under its own sequence number), and asynchronous ones report
//! `EngineError::KeyListMissed`. Caching and packing are per table (`TableSpec::key_caching`,
//! `TableSpec::key_packing`).
//!
//! Both ends also empty their copy at the first request stamped with a newer routing version
//! ([`KeyListCache::follow_routing`]): after a failover every list is sent whole once more.
//!
//! The server's copy holds the key lists alone; their slots live in the table's resolution
//! cache (`store::resolution`), which finds a list handed over from here by its allocation.

use std::collections::{BTreeMap, HashMap};

/// Identifies a cached list: table and signature.
pub type ListId = (u32, u64);

/// A least-recently-used cache of key lists, bounded by the total number of keys.
#[derive(Debug)]
pub struct KeyListCache<V> {
    capacity_keys: u64,
    used_keys: u64,
    entries: HashMap<ListId, Entry<V>>,
    by_age: BTreeMap<u64, ListId>,
    tick: u64,
    /// The newest routing version a request through this cache was stamped with.
    routing_version: u32,
    /// Whether a list too large to cache has been logged (once per cache).
    oversize_logged: bool,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    keys: u64,
    stamp: u64,
}

impl<V> KeyListCache<V> {
    /// A cache holding lists of at most `capacity_keys` keys in total (0 disables caching).
    pub fn new(capacity_keys: u64) -> Self {
        KeyListCache {
            capacity_keys,
            used_keys: 0,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            tick: 0,
            routing_version: 0,
            oversize_logged: false,
        }
    }

    /// Number of lists held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no list is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Called by both ends before `access` (or `hit`) with the routing version the request is
    /// stamped with: the first request under a newer routing (after a failover) empties the
    /// cache, so that lists are sent again and rebuilt rather than trusted across a change of
    /// roles. Requests travel in order and a sender's version never goes down, so both ends
    /// empty their copy at the same request.
    pub fn follow_routing(&mut self, version: u32) {
        if version > self.routing_version {
            self.routing_version = version;
            self.entries.clear();
            self.by_age.clear();
            self.used_keys = 0;
        }
    }

    /// The one operation both ends apply to every signed request: a hit (same list, same
    /// length) refreshes the entry and returns it; a miss stores `make()` (evicting the least
    /// recently used lists until it fits) and returns `None`. A list larger than the whole
    /// cache is never stored.
    pub fn access(&mut self, id: ListId, keys: u64, make: impl FnOnce() -> V) -> Option<&mut V> {
        self.tick += 1;
        let hit = self.entries.get(&id).is_some_and(|e| e.keys == keys);
        if hit {
            let e = self.entries.get_mut(&id)?;
            self.by_age.remove(&e.stamp);
            e.stamp = self.tick;
            self.by_age.insert(self.tick, id);
            return Some(&mut e.value);
        }
        self.remove(id);
        if keys > self.capacity_keys && self.capacity_keys > 0 && !self.oversize_logged {
            self.oversize_logged = true;
            tracing::warn!(
                "a list of {keys} keys (table {}) is larger than this connection's key cache \
                 ({} keys): it is sent whole with every request and resolved anew each time; \
                 raise the key cache (ClusterConfig::key_cache_keys) to cache it",
                id.0,
                self.capacity_keys
            );
        }
        if keys == 0 || keys > self.capacity_keys {
            return None;
        }
        while self.used_keys + keys > self.capacity_keys {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used_keys -= e.keys;
            }
        }
        self.entries.insert(
            id,
            Entry {
                value: make(),
                keys,
                stamp: self.tick,
            },
        );
        self.by_age.insert(self.tick, id);
        self.used_keys += keys;
        None
    }

    /// A held list's value, refreshed as by a hit; `None` if not held (nothing is inserted).
    pub fn hit(&mut self, id: ListId, keys: u64) -> Option<&mut V> {
        if self.entries.get(&id).is_some_and(|e| e.keys == keys) {
            self.access(id, keys, || unreachable_value())
        } else {
            None
        }
    }

    /// A held list's value without refreshing it (for filling in what a hit left empty).
    pub fn peek_mut(&mut self, id: ListId) -> Option<&mut V> {
        self.entries.get_mut(&id).map(|e| &mut e.value)
    }

    /// Forgets a list (the worker does when the server said it does not hold it, so that the
    /// next request sends the keys and both ends agree again).
    pub fn remove(&mut self, id: ListId) {
        if let Some(e) = self.entries.remove(&id) {
            self.by_age.remove(&e.stamp);
            self.used_keys -= e.keys;
        }
    }
}

/// Never called: `hit` only reaches `access` for an entry that is present.
fn unreachable_value<V>() -> V {
    unreachable!("access on a present entry does not build a value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_caches_fed_the_same_accesses_agree_on_every_hit() {
        let mut worker: KeyListCache<()> = KeyListCache::new(100);
        let mut server: KeyListCache<u64> = KeyListCache::new(100);
        let mut x = 99u64;
        for step in 0..5000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let id = ((x >> 60) as u32 % 2, (x >> 33) % 12);
            let keys = 10 + (x >> 40) % 50;
            let worker_hit = worker.access(id, keys, || ()).is_some();
            let server_hit = if worker_hit {
                server.hit(id, keys).is_some()
            } else {
                server.access(id, keys, || step).is_some()
            };
            assert_eq!(worker_hit, server_hit, "step {step}");
            assert!(worker.used_keys <= 100);
        }
    }

    #[test]
    fn evicts_the_least_recently_used_and_never_stores_oversized_lists() {
        let mut c: KeyListCache<&str> = KeyListCache::new(10);
        assert!(c.access((0, 1), 4, || "a").is_none());
        assert!(c.access((0, 2), 4, || "b").is_none());
        assert_eq!(c.access((0, 1), 4, || "x").copied(), Some("a"));
        assert!(
            c.access((0, 3), 4, || "c").is_none(),
            "evicts list 2, the least recent"
        );
        assert!(c.hit((0, 2), 4).is_none());
        assert!(c.hit((0, 1), 4).is_some());
        assert!(!c.oversize_logged);
        assert!(c.access((0, 4), 11, || "big").is_none());
        assert!(c.oversize_logged, "a list too large to cache is logged");
        assert!(c.hit((0, 4), 11).is_none());
        assert!(
            c.hit((0, 1), 5).is_none(),
            "same signature, other length: not the same list"
        );
        assert!(KeyListCache::<()>::new(0)
            .access((0, 1), 1, || ())
            .is_none());
    }

    #[test]
    fn a_newer_routing_empties_the_cache_once_and_an_older_one_never() {
        let mut c: KeyListCache<()> = KeyListCache::new(10);
        c.follow_routing(1);
        c.access((0, 1), 4, || ());
        c.follow_routing(1);
        assert!(
            c.hit((0, 1), 4).is_some(),
            "the same routing keeps the list"
        );
        c.follow_routing(2);
        assert!(
            c.is_empty(),
            "the first request under a newer routing starts empty"
        );
        c.access((0, 1), 4, || ());
        c.follow_routing(1);
        assert!(c.hit((0, 1), 4).is_some(), "an older stamp empties nothing");
        assert_eq!(c.used_keys, 4);
    }
}
