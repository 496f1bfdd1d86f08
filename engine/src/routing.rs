//! Key ranges and which server owns each: the versioned routing table.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::table::KeyLayout;

/// One server's share of the key space: keys in `[begin, end]` (inclusive end, so that the last
/// range can include `u64::MAX`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub begin: u64,
    pub last: u64,
    /// Server rank (index into the cluster's server list).
    pub server: u32,
    /// Address workers connect to over TCP.
    pub addr: String,
    /// Address of the server's RDMA listener, if it has one (workers that can use RDMA dial
    /// it; the others use `addr`, so a cluster may mix both).
    pub rdma_addr: Option<String>,
}

impl KeyRange {
    /// Whether `key` falls in this range.
    pub fn contains(&self, key: u64) -> bool {
        self.begin <= key && key <= self.last
    }
}

/// The routing table the scheduler publishes; `version` grows with every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    pub version: u32,
    /// Sorted, contiguous and covering all of u64.
    pub ranges: Vec<KeyRange>,
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
                    addr: addr.clone(),
                    rdma_addr: None,
                }
            })
            .collect();
        RoutingTable { version, ranges }
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

    /// The index of the range served by server (shard) `rank`.
    pub fn index_of(&self, rank: u32) -> Option<usize> {
        self.ranges.iter().position(|r| r.server == rank)
    }

    /// The ranges owned by server `rank`.
    pub fn owned_by(&self, rank: u32) -> impl Iterator<Item = &KeyRange> {
        self.ranges.iter().filter(move |r| r.server == rank)
    }
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
}
