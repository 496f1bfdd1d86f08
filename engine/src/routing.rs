//! Key ranges and which servers hold each: the versioned routing table. Each range has a
//! chain of R distinct server processes (R, the replication factor, is 1 by default); the
//! chain's head serves the range and forwards its pushes down the chain.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::table::KeyLayout;

/// One server's share of the key space: keys in `[begin, end]` (inclusive end, so that the last
/// range can include `u64::MAX`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub begin: u64,
    pub last: u64,
    /// Server rank (index into the cluster's server list) of the chain's head, which serves
    /// the range.
    pub server: u32,
    /// The range's replication chain, head first (`chain[0] == server`): ranks of distinct
    /// server processes; each applies a push and forwards it to the next.
    pub chain: Vec<u32>,
    /// Address workers connect to over TCP (the head's).
    pub addr: String,
    /// Address of the server's RDMA listener, if it has one (workers that can use RDMA dial
    /// it; the others use `addr`, so a cluster may mix both).
    pub rdma_addr: Option<String>,
    /// The chain's last server while it takes its copy ([`KeyRange::copies`]).
    pub learner: Option<u32>,
}

impl KeyRange {
    /// Whether `key` falls in this range.
    pub fn contains(&self, key: u64) -> bool {
        self.begin <= key && key <= self.last
    }

    /// The servers that hold a whole copy of the range: the chain without its learner, which
    /// applies and acknowledges forwarded pushes like any replica but is no copy yet (never
    /// promoted, not counted towards R) until its copy completes and the scheduler publishes a
    /// routing without the mark.
    pub fn copies(&self) -> impl Iterator<Item = u32> + '_ {
        self.chain
            .iter()
            .copied()
            .filter(move |&r| Some(r) != self.learner)
    }
}

/// The routing table the scheduler publishes; `version` grows with every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    pub version: u32,
    /// Sorted, contiguous and covering all of u64.
    pub ranges: Vec<KeyRange>,
    /// Every server's (shard's) TCP address, by rank: where a chain's members reach each other.
    pub server_addrs: Vec<String>,
}

impl RoutingTable {
    /// Splits the key space evenly among servers whose addresses are given in rank order.
    pub fn even(version: u32, server_addrs: &[String]) -> RoutingTable {
        let n = server_addrs.len().max(1) as u128;
        let span = (u64::MAX as u128 + 1) / n;
        let ranges = server_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let begin = (i as u128 * span) as u64;
                let last = if i + 1 == server_addrs.len() {
                    u64::MAX
                } else {
                    ((i as u128 + 1) * span - 1) as u64
                };
                KeyRange {
                    begin,
                    last,
                    server: i as u32,
                    chain: vec![i as u32],
                    addr: addr.clone(),
                    rdma_addr: None,
                    learner: None,
                }
            })
            .collect();
        RoutingTable {
            version,
            ranges,
            server_addrs: server_addrs.to_vec(),
        }
    }

    /// [`RoutingTable::even`] with a chain of `replication` servers per range: range i is
    /// headed by rank i, followed by the next ranks (in ring order) of other server processes
    /// (`shards` consecutive ranks are one process), those on other hosts first. The caller
    /// checks `replication` against the number of processes; a chain is cut short only if
    /// there are fewer.
    pub fn chained(
        version: u32,
        server_addrs: &[String],
        replication: usize,
        shards: usize,
    ) -> RoutingTable {
        let mut table = RoutingTable::even(version, server_addrs);
        let n = server_addrs.len();
        let shards = shards.max(1);
        let host = |rank: usize| host_of(&server_addrs[rank]);
        for (i, range) in table.ranges.iter_mut().enumerate() {
            // The same shard of the following processes first (spreads the copies of a
            // process's ranges over the others), then every rank in ring order.
            let candidates: Vec<usize> = (1..n.div_ceil(shards))
                .map(|k| (i + k * shards) % n)
                .chain((1..n).map(|k| (i + k) % n))
                .collect();
            for distinct_hosts in [true, false] {
                for &c in &candidates {
                    if range.chain.len() >= replication {
                        break;
                    }
                    let process_taken = range
                        .chain
                        .iter()
                        .any(|&r| r as usize / shards == c / shards);
                    let host_taken = range.chain.iter().any(|&r| host(r as usize) == host(c));
                    let refused = process_taken || (distinct_hosts && host_taken);
                    if !refused {
                        range.chain.push(c as u32);
                    }
                }
            }
        }
        table
    }

    /// The chain of range `index`, head first.
    pub fn chain(&self, index: usize) -> &[u32] {
        self.ranges.get(index).map_or(&[], |r| &r.chain)
    }

    /// The server after `rank` in range `index`'s chain (`None` at the tail or outside it).
    pub fn successor(&self, index: usize, rank: u32) -> Option<u32> {
        let chain = self.chain(index);
        let at = chain.iter().position(|&r| r == rank)?;
        chain.get(at + 1).copied()
    }

    /// The server before `rank` in range `index`'s chain (`None` at the head or outside it).
    pub fn predecessor(&self, index: usize, rank: u32) -> Option<u32> {
        let chain = self.chain(index);
        let at = chain.iter().position(|&r| r == rank)?;
        at.checked_sub(1).map(|p| chain[p])
    }

    /// The indices of the ranges whose chain holds `rank` (as head or replica).
    pub fn held_by(&self, rank: u32) -> impl Iterator<Item = usize> + '_ {
        self.ranges
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.chain.contains(&rank))
            .map(|(i, _)| i)
    }

    /// Whether servers `a` and `b` share a chain (are neighbours in one, or could become so).
    pub fn share_a_chain(&self, a: u32, b: u32) -> bool {
        self.ranges
            .iter()
            .any(|r| r.chain.contains(&a) && r.chain.contains(&b))
    }

    /// The index of the range that holds every key of the sorted list `[first, last]` in a
    /// table of `layout`; `None` when no single range does.
    pub fn range_holding(&self, layout: KeyLayout, first: u64, last: u64) -> Option<usize> {
        if first > last || self.ranges.is_empty() {
            return None;
        }
        let index = match layout {
            KeyLayout::Sparse => self.ranges.partition_point(|r| r.last < first),
            KeyLayout::Dense { keys } => {
                (0..self.ranges.len()).find(|&i| first < self.dense_bounds(i, keys).1)?
            }
        };
        let holds = match layout {
            KeyLayout::Sparse => self.ranges.get(index)?.contains(last),
            KeyLayout::Dense { keys } => {
                let (begin, end) = self.dense_bounds(index, keys);
                begin <= first && last < end
            }
        };
        holds.then_some(index)
    }

    /// Sets each range's RDMA address (given in rank order, like the TCP addresses).
    pub fn with_rdma_addrs(mut self, rdma_addrs: &[Option<String>]) -> RoutingTable {
        for (range, rdma) in self.ranges.iter_mut().zip(rdma_addrs) {
            range.rdma_addr = rdma.clone();
        }
        self
    }

    /// Splits a sorted key list into per-range index ranges without copying keys: one
    /// `(range index, keys[start..end])` entry per range that receives at least one key.
    pub fn slice(&self, keys: &[u64]) -> Vec<(usize, Range<usize>)> {
        let mut out = Vec::with_capacity(self.ranges.len().min(keys.len()));
        let mut start = 0;
        for (i, range) in self.ranges.iter().enumerate() {
            if start == keys.len() {
                break;
            }
            let end = start + keys[start..].partition_point(|&k| k <= range.last);
            if end > start {
                out.push((i, start..end));
            }
            start = end;
        }
        out
    }

    /// The keys of a dense table of `keys` keys that range `index` holds: `[begin, end)`.
    pub fn dense_bounds(&self, index: usize, keys: u64) -> (u64, u64) {
        let n = self.ranges.len().max(1) as u128;
        let at = |i: usize| (i as u128 * keys as u128 / n) as u64;
        (at(index), at(index + 1))
    }

    /// Like [`RoutingTable::slice`], for a table's layout.
    pub fn slice_for(&self, layout: KeyLayout, keys: &[u64]) -> Vec<(usize, Range<usize>)> {
        let KeyLayout::Dense { keys: n } = layout else {
            return self.slice(keys);
        };
        let mut out = Vec::with_capacity(self.ranges.len().min(keys.len()));
        let mut start = 0;
        for i in 0..self.ranges.len() {
            if start == keys.len() {
                break;
            }
            let (_, end_key) = self.dense_bounds(i, n);
            let last = i + 1 == self.ranges.len();
            let end = if last {
                keys.len()
            } else {
                start + keys[start..].partition_point(|&k| k < end_key)
            };
            if end > start {
                out.push((i, start..end));
            }
            start = end;
        }
        out
    }

    /// The index of the (first) range served by server (shard) `rank`.
    pub fn index_of(&self, rank: u32) -> Option<usize> {
        self.ranges.iter().position(|r| r.server == rank)
    }

    /// The ranges owned by server `rank`.
    pub fn owned_by(&self, rank: u32) -> impl Iterator<Item = &KeyRange> {
        self.ranges.iter().filter(move |r| r.server == rank)
    }
}

/// The host part of `ip:port` (the whole text when it has no port).
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect()
    }

    #[test]
    fn even_ranges_cover_the_key_space_without_gaps() {
        for n in 1..6 {
            let t = RoutingTable::even(1, &addrs(n));
            assert_eq!(t.ranges.first().unwrap().begin, 0);
            assert_eq!(t.ranges.last().unwrap().last, u64::MAX);
            for w in t.ranges.windows(2) {
                assert_eq!(w[0].last + 1, w[1].begin);
            }
        }
    }

    #[test]
    fn slicing_sends_each_key_to_its_owner() {
        let t = RoutingTable::even(1, &addrs(3));
        let keys: Vec<u64> = vec![0, 5, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        let parts = t.slice(&keys);
        let mut seen = 0;
        for (range, idx) in &parts {
            for &k in &keys[idx.clone()] {
                assert!(
                    t.ranges[*range].contains(k),
                    "key {k} sent to range {range}"
                );
            }
            seen += idx.len();
        }
        assert_eq!(seen, keys.len());
        assert!(t.slice(&[]).is_empty());
    }

    #[test]
    fn dense_tables_split_their_keys_evenly_and_completely() {
        let t = RoutingTable::even(1, &addrs(3));
        let layout = KeyLayout::Dense { keys: 10 };
        assert_eq!(t.dense_bounds(0, 10), (0, 3));
        assert_eq!(t.dense_bounds(1, 10), (3, 6));
        assert_eq!(t.dense_bounds(2, 10), (6, 10));
        let keys: Vec<u64> = (0..10).collect();
        let parts = t.slice_for(layout, &keys);
        assert_eq!(parts, vec![(0, 0..3), (1, 3..6), (2, 6..10)]);
        assert_eq!(t.slice_for(layout, &[4, 9]), vec![(1, 0..1), (2, 1..2)]);
    }

    fn hosts(spec: &[(&str, usize)]) -> Vec<String> {
        spec.iter()
            .flat_map(|&(host, n)| (0..n).map(move |i| format!("{host}:{}", 7000 + i)))
            .collect()
    }

    #[test]
    fn chains_hold_distinct_processes_and_prefer_other_hosts() {
        // Four server processes, two on each of two hosts, one shard each.
        let addrs = hosts(&[("10.0.0.1", 2), ("10.0.0.2", 2)]);
        let t = RoutingTable::chained(1, &addrs, 2, 1);
        for (i, r) in t.ranges.iter().enumerate() {
            assert_eq!(r.chain[0], i as u32, "rank i heads range i");
            assert_eq!(r.chain.len(), 2);
            let h: Vec<_> = r
                .chain
                .iter()
                .map(|&c| host_of(&addrs[c as usize]))
                .collect();
            assert_ne!(
                h[0], h[1],
                "range {i}'s copies are on different hosts: {:?}",
                r.chain
            );
        }
        // Three processes of two shards each: no chain holds two shards of one process.
        let t = RoutingTable::chained(1, &hosts(&[("10.0.0.1", 6)]), 3, 2);
        for r in &t.ranges {
            let mut procs: Vec<_> = r.chain.iter().map(|&c| c / 2).collect();
            procs.dedup();
            assert_eq!(procs.len(), 3, "{:?}", r.chain);
        }
        // R = 1 is today's table.
        assert_eq!(
            RoutingTable::chained(1, &addrs, 1, 1),
            RoutingTable::even(1, &addrs)
        );
    }

    #[test]
    fn neighbours_and_holders_follow_the_chain() {
        let t = RoutingTable::chained(1, &addrs(3), 3, 1);
        assert_eq!(t.chain(1), &[1, 2, 0]);
        assert_eq!(t.successor(1, 1), Some(2));
        assert_eq!(t.successor(1, 0), None, "the tail has none");
        assert_eq!(t.predecessor(1, 0), Some(2));
        assert_eq!(t.predecessor(1, 1), None, "the head has none");
        assert_eq!(t.held_by(0).count(), 3);
        let layout = KeyLayout::Sparse;
        assert_eq!(t.range_holding(layout, 5, 6), Some(0));
        assert_eq!(t.range_holding(layout, 5, u64::MAX), None);
        let dense = KeyLayout::Dense { keys: 10 };
        assert_eq!(t.range_holding(dense, 3, 5), Some(1));
        assert_eq!(t.range_holding(dense, 2, 3), None);
    }
}
