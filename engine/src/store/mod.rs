//! One table's storage on a server: values and rule state addressed by slot, each in its own
//! [`Segment`] (pinned, hugepage-backed, NUMA-placed memory that never moves, so it can be
//! registered for RDMA once), the key → slot map ([`slot_map`]), and the cache of resolved key
//! lists ([`resolution`]).
//!
//! Slots are handed out in first-seen order, so the slots of a list pushed before are usually
//! one contiguous run: a pull then replies straight from storage with one slice.

use std::sync::Arc;

use ferrops_kernels::{apply_dense, apply_sparse, Rule, State};
use zerocopy::IntoBytes;

use crate::key_list::{check_sorted_unique, KeyListError};
use crate::memory::{Segment, SegmentOptions};
use crate::table::TableSpec;

mod checkpoint;
mod copy;
pub mod resolution;
#[allow(unsafe_code)] // prefetches the buckets of keys ahead
pub mod slot_map;

pub use checkpoint::SaveAs;
use resolution::ResolutionCache;
pub use resolution::{slot_runs, Resolved, SharedKeys};
use slot_map::SlotMap;

/// Slots of a dense store: each key's offset from `begin` (keys must be sorted, unique and in
/// `[begin, end)`).
fn resolve_dense(begin: u64, end: u64, keys: &[u64]) -> Result<Resolved, StoreError> {
    check_sorted_unique(keys)?;
    if let (Some(&first), Some(&last)) = (keys.first(), keys.last()) {
        if first < begin || last >= end {
            return Err(KeyListError::OutOfRange {
                first,
                last,
                begin,
                end,
            }
            .into());
        }
    }
    let slots = keys.iter().map(|&k| (k - begin) as u32).collect();
    Ok(Resolved::new(slots))
}

/// Why a request could not be served from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Keys(#[from] KeyListError),
    #[error("update failed: {0}")]
    Kernel(#[from] ferrops_kernels::KernelError),
    #[error("table is full: {0} slots")]
    Full(usize),
    #[error("parameter memory: {0}")]
    Memory(#[from] crate::memory::MemoryError),
    #[error("{floats} floats of copied rows for {keys} keys; rows of this table need {expected}")]
    Rows {
        keys: usize,
        floats: usize,
        expected: usize,
    },
}

/// Where a table's arrays live and how large they may grow.
/// Whether a key list is resolved to be written (new keys get slots) or read (they do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Write,
    Read,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub segment: SegmentOptions,
    /// Address space reserved per array (values, each state array).
    pub capacity_bytes: usize,
    /// Bytes of resolved key lists the table may cache at most; within that, the cache holds
    /// no more than the table's own arrays and key map ([`MIN_RESOLUTION_BUDGET`] at least).
    pub cache_bytes: usize,
}

/// Bytes of resolved key lists any table may cache, however small it is.
pub const MIN_RESOLUTION_BUDGET: usize = 16 << 20;

impl StoreOptions {
    /// Plain (unlocked, normal-page) memory with `capacity_bytes` per array: for tests and tools.
    pub fn plain(capacity_bytes: usize) -> StoreOptions {
        StoreOptions {
            segment: SegmentOptions::plain(),
            capacity_bytes,
            cache_bytes: 1 << 30,
        }
    }
}

/// What one table holds in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableMemory {
    pub keys: u64,
    /// Committed bytes of the values segment.
    pub values_bytes: u64,
    /// Committed bytes of the rule's state segments.
    pub state_bytes: u64,
    pub key_map_bytes: u64,
    pub resolution_cache_bytes: u64,
    /// Whether every committed value byte is locked in RAM.
    pub locked: bool,
    /// Whether the values sit on 2 MiB hugetlb pages (else THP advice or normal pages).
    pub hugepages: bool,
}

/// Storage of one table.
#[derive(Debug)]
pub struct TableStore {
    spec: TableSpec,
    map: SlotMap,
    values: Segment,
    state: [Option<Segment>; 2],
    slots_used: u32,
    resolutions: ResolutionCache,
    /// The most bytes of resolutions the table may cache, whatever its size.
    cache_bytes: usize,
    adam_step: u32,
    /// For a dense table, the keys `[begin, end)` this store holds: key k is slot k − begin.
    dense: Option<(u64, u64)>,
    /// A slot no key owns and nothing writes (so it holds the initial value, zero): what a
    /// pull of a key never pushed reads. Taken the first time such a pull comes.
    unset_slot: Option<u32>,
}

impl TableStore {
    /// An empty sparse table: address space for its arrays is reserved now, memory is committed
    /// as keys arrive.
    pub fn new(spec: TableSpec, opts: &StoreOptions) -> Result<TableStore, StoreError> {
        TableStore::with_dense_range(spec, opts, None)
    }

    /// A table holding the dense keys `[begin, end)`: their memory is committed (zeroed) now and
    /// a key indexes it directly, with no key map.
    pub fn dense(
        spec: TableSpec,
        opts: &StoreOptions,
        begin: u64,
        end: u64,
    ) -> Result<TableStore, StoreError> {
        let len = end.saturating_sub(begin);
        if len > u64::from(u32::MAX) {
            return Err(StoreError::Full(len as usize));
        }
        let mut store = TableStore::with_dense_range(spec, opts, Some((begin, end)))?;
        store.slots_used = len as u32;
        store.grow_storage()?;
        Ok(store)
    }

    fn with_dense_range(
        spec: TableSpec,
        opts: &StoreOptions,
        dense: Option<(u64, u64)>,
    ) -> Result<TableStore, StoreError> {
        let reserve = || Segment::reserve(opts.capacity_bytes, &opts.segment);
        let states = spec.rule.state_len();
        let state = [
            if states >= 1 { Some(reserve()?) } else { None },
            if states >= 2 { Some(reserve()?) } else { None },
        ];
        Ok(TableStore {
            spec,
            map: SlotMap::default(),
            values: reserve()?,
            state,
            slots_used: 0,
            resolutions: ResolutionCache::new(opts.cache_bytes.min(MIN_RESOLUTION_BUDGET)),
            cache_bytes: opts.cache_bytes,
            adam_step: 0,
            dense,
            unset_slot: None,
        })
    }

    /// Tells a sparse store the keys `[first, last]` of its range, over which its key map
    /// spreads evenly spread keys in order (`SlotMap::set_key_range`); a dense store ignores it.
    pub fn set_key_range(&mut self, first: u64, last: u64) {
        if self.dense.is_none() {
            self.map.set_key_range(first, last);
        }
    }

    /// The table's spec.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        match self.dense {
            Some(_) => self.slots_used as usize,
            None => self.map.len(),
        }
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the table holds in memory.
    pub fn memory(&self) -> TableMemory {
        let backing = self.values.backing();
        TableMemory {
            keys: self.len() as u64,
            values_bytes: self.values.committed_bytes() as u64,
            state_bytes: self
                .state
                .iter()
                .flatten()
                .map(|s| s.committed_bytes() as u64)
                .sum(),
            key_map_bytes: self.map.memory_bytes() as u64,
            resolution_cache_bytes: self.resolutions.bytes() as u64,
            locked: backing.locked,
            hugepages: backing.hugepages_2m,
        }
    }

    /// Resolves a sorted, unique key list to slots, creating zero-initialised slots for new keys.
    /// `signature` is the list's signature (0 if the sender did not compute one); a signed list
    /// is resolved once and then found in the table's resolution cache.
    pub fn resolve(&mut self, signature: u64, keys: &[u64]) -> Result<Arc<Resolved>, StoreError> {
        self.resolve_with(signature, keys, Access::Write, || Arc::new(keys.to_vec()))
            .map(|(resolved, _)| resolved)
    }

    /// Resolves a key list for reading: keys never pushed get no storage of their own but a
    /// slot that holds the initial value (zero) and that nothing writes. Such a resolution is
    /// not cached (a later push may create those keys).
    pub fn resolve_for_read(
        &mut self,
        signature: u64,
        keys: &[u64],
    ) -> Result<Arc<Resolved>, StoreError> {
        self.resolve_with(signature, keys, Access::Read, || Arc::new(keys.to_vec()))
            .map(|(resolved, _)| resolved)
    }

    /// [`TableStore::resolve`] for a list held in a shared allocation (a connection's key
    /// cache): a cached resolution is recognised by that allocation without comparing keys, and
    /// a new one keeps the allocation rather than a copy. Also returns the allocation the cache
    /// holds for the list, which the caller should hold from now on: it may be an equal list
    /// another connection sent first.
    pub fn resolve_shared(
        &mut self,
        signature: u64,
        keys: &SharedKeys,
        access: Access,
    ) -> Result<(Arc<Resolved>, Option<SharedKeys>), StoreError> {
        self.resolve_with(signature, keys, access, || keys.clone())
    }

    /// Bytes of resolutions the table may cache now: as much as its values, rule state and
    /// key map take ([`MIN_RESOLUTION_BUDGET`] at least), never more than the options allow.
    fn resolution_budget(&self) -> usize {
        let m = self.memory();
        let table = m.values_bytes + m.state_bytes + m.key_map_bytes;
        (table as usize)
            .max(MIN_RESOLUTION_BUDGET)
            .min(self.cache_bytes)
    }

    /// Forgets every cached resolution (a server promoted to head of this range after a
    /// failover rebuilds them from the key map rather than trusting them).
    pub fn forget_resolutions(&mut self) {
        self.resolutions.clear();
    }

    fn resolve_with(
        &mut self,
        signature: u64,
        keys: &[u64],
        access: Access,
        shared: impl FnOnce() -> SharedKeys,
    ) -> Result<(Arc<Resolved>, Option<SharedKeys>), StoreError> {
        if signature != 0 {
            if let Some((resolved, held)) = self.resolutions.get(signature, keys) {
                return Ok((resolved.clone(), Some(held.clone())));
            }
        }
        let resolved = Arc::new(match (self.dense, access) {
            (Some((begin, end)), _) => resolve_dense(begin, end, keys)?,
            (None, Access::Write) => self.resolve_sparse(keys)?,
            (None, Access::Read) => match self.lookup_sparse(keys)? {
                Some(resolved) => resolved,
                None => return Ok((Arc::new(self.resolve_unset(keys)?), None)),
            },
        });
        if signature == 0 {
            return Ok((resolved, None));
        }
        let held = shared();
        self.resolutions.set_limit(self.resolution_budget());
        self.resolutions
            .insert(signature, held.clone(), resolved.clone());
        Ok((resolved, Some(held)))
    }

    /// Slots of a sparse table's keys from the key map, handing out new slots to new keys.
    fn resolve_sparse(&mut self, keys: &[u64]) -> Result<Resolved, StoreError> {
        check_sorted_unique(keys)?;
        let mut slots = Vec::new();
        let resolved = self
            .map
            .get_or_insert_all(keys, &mut self.slots_used, &mut slots);
        // Slots handed out before running out are kept: commit their memory either way.
        self.grow_storage()?;
        resolved.map_err(|_| StoreError::Full(u32::MAX as usize))?;
        Ok(Resolved::new(slots))
    }

    /// Slots of a sparse table's keys when every key has one (`None` otherwise); assigns none.
    fn lookup_sparse(&self, keys: &[u64]) -> Result<Option<Resolved>, StoreError> {
        check_sorted_unique(keys)?;
        let mut slots = Vec::with_capacity(keys.len());
        let mut all = true;
        self.map.get_all(keys, |s| match s {
            Some(s) => slots.push(s),
            None => all = false,
        });
        Ok(all.then(|| Resolved::new(slots)))
    }

    /// Slots of a sparse table's keys, the unset slot standing for each key without one.
    fn resolve_unset(&mut self, keys: &[u64]) -> Result<Resolved, StoreError> {
        let unset = match self.unset_slot {
            Some(slot) => slot,
            None => {
                let slot = self.slots_used;
                self.slots_used = slot
                    .checked_add(1)
                    .ok_or(StoreError::Full(u32::MAX as usize))?;
                self.grow_storage()?;
                self.unset_slot = Some(slot);
                slot
            }
        };
        let mut slots = Vec::with_capacity(keys.len());
        self.map.get_all(keys, |s| slots.push(s.unwrap_or(unset)));
        Ok(Resolved::new(slots))
    }

    /// Commits memory for every slot handed out (growing by half again at least, so that
    /// commits are rare; never past the reserved capacity). New memory is zero.
    fn grow_storage(&mut self) -> Result<(), StoreError> {
        let need = self.slots_used as usize * self.spec.dim as usize * 4;
        if self.values.len() < need {
            let target = need
                .max(self.values.len() * 3 / 2)
                .min(self.values.capacity())
                .max(need);
            self.values.grow_to(target)?;
            for s in self.state.iter_mut().flatten() {
                s.grow_to(target)?;
            }
        }
        Ok(())
    }

    /// The values and the rule's state arrays, split for the kernels.
    fn arrays(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let [a, b] = &mut self.state;
        (
            self.values.as_f32_mut(),
            a.as_mut().map_or(&mut [][..], |s| s.as_f32_mut()),
            b.as_mut().map_or(&mut [][..], |s| s.as_f32_mut()),
        )
    }

    /// Applies a push's inputs to a resolved key list with the table's rule: run by run with the
    /// dense kernels when the slots form a few contiguous runs (the usual case for a list pushed
    /// before), slot by slot otherwise. `inputs` holds `spec().push_floats_per_key()` floats for
    /// each slot: the server checks that count once, where it decodes the push, so it is not
    /// counted again here; inputs that run short are refused by the kernels.
    pub fn apply_resolved(
        &mut self,
        resolved: &Resolved,
        inputs: &[f32],
    ) -> Result<(), StoreError> {
        if !resolved.few_runs() || self.spec.rule.inputs() != 1 {
            return self.apply(&resolved.slots(), inputs);
        }
        let dim = self.spec.dim as usize;
        let rule = self.next_rule();
        let (values, a, b) = self.arrays();
        let mut offset = 0;
        for &(first, count) in &resolved.runs {
            let (start, len) = (first as usize * dim, count as usize * dim);
            let w = values
                .get_mut(start..start + len)
                .ok_or(StoreError::Full(start + len))?;
            let state = match rule.state_len() {
                0 => State::none(),
                1 => State::one(&mut a[start..start + len]),
                _ => State::two(&mut a[start..start + len], &mut b[start..start + len]),
            };
            let input = inputs.get(offset..offset + len).unwrap_or_default();
            apply_dense(rule, w, state, input)?;
            offset += len;
        }
        Ok(())
    }

    /// Applies a push's inputs to the resolved slots with the table's rule (`inputs` as for
    /// [`TableStore::apply_resolved`]; the kernels refuse any other count).
    pub fn apply(&mut self, slots: &[u32], inputs: &[f32]) -> Result<(), StoreError> {
        let dim = self.spec.dim as usize;
        let rule = self.next_rule();
        let (values, a, b) = self.arrays();
        let state = match rule.state_len() {
            0 => State::none(),
            1 => State::one(a),
            _ => State::two(a, b),
        };
        apply_sparse(rule, values, state, slots, dim, inputs)?;
        Ok(())
    }

    /// The rule for the next push (Adam's step counts pushes to this table).
    fn next_rule(&mut self) -> Rule {
        match self.spec.rule {
            Rule::Adam {
                lr,
                beta1,
                beta2,
                eps,
                ..
            } => {
                self.adam_step = self.adam_step.saturating_add(1);
                Rule::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    step: self.adam_step,
                }
            }
            rule => rule,
        }
    }

    /// The stored values of a run of slots, as bytes ready for the wire.
    pub fn run_bytes(&self, first: u32, count: u32) -> &[u8] {
        let dim = self.spec.dim as usize;
        let start = first as usize * dim;
        self.values.as_f32()[start..start + count as usize * dim].as_bytes()
    }

    /// The committed memory of the values segment, which holds every [`TableStore::run_bytes`]
    /// slice and stays at its address for the table's life.
    pub fn values_region(&self) -> &[u8] {
        self.values.committed_region()
    }

    /// A digest of what the table holds: every key with the bits of its values and rule state.
    /// Two stores that applied the same pushes in the same order have the same digest, whatever
    /// slots their keys got (a replica's slots may differ from its head's, which also serves
    /// pulls of keys never pushed). Each entry is hashed on its own and the hashes are added,
    /// so the digest needs no sorted copy of the keys: one pass, no allocation, at every
    /// server's exit whatever the table's size.
    pub fn digest(&self) -> u64 {
        let dim = self.spec.dim as usize;
        let entry = |key: u64, slot: u32| {
            let at = slot as usize * dim..(slot as usize + 1) * dim;
            let mut h = mix64(key);
            let rows = std::iter::once(&self.values).chain(self.state.iter().flatten());
            for bits in rows.flat_map(|r| r.as_f32()[at.clone()].iter().map(|v| v.to_bits())) {
                h = mix64(h ^ u64::from(bits));
            }
            h
        };
        match self.dense {
            Some((begin, _)) => (0..self.slots_used)
                .map(|s| entry(begin + u64::from(s), s))
                .fold(0u64, u64::wrapping_add),
            None => self
                .map
                .iter()
                .map(|(key, slot)| entry(key, slot))
                .fold(0u64, u64::wrapping_add),
        }
    }

    /// Copies the values of `slots` into `out` (for lists whose slots are scattered).
    pub fn gather(&self, slots: &[u32], out: &mut Vec<f32>) {
        let dim = self.spec.dim as usize;
        out.clear();
        out.reserve(slots.len() * dim);
        for &s in slots {
            let start = s as usize * dim;
            out.extend_from_slice(&self.values.as_f32()[start..start + dim]);
        }
    }
}

/// A 64-bit mixing function (the splitmix64 finaliser): every input bit affects every output
/// bit, so a sum of mixed entries tells tables apart.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(rule: Rule, dim: u32) -> TableStore {
        TableStore::new(
            TableSpec::new("t", dim).rule(rule),
            &StoreOptions::plain(64 << 20),
        )
        .unwrap()
    }

    #[test]
    fn resolution_is_cached_and_checked_against_the_keys() {
        let mut s = store(Rule::Sum, 1);
        let keys: Vec<u64> = (0..1000).map(|i| i * 7).collect();
        let a = s.resolve(42, &keys).unwrap();
        let b = s.resolve(42, &keys).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "second resolution comes from the cache"
        );
        assert_eq!(a.runs, vec![(0, 1000)]);
        // Same signature, different keys: must not be mistaken for the cached list.
        let other: Vec<u64> = (0..1000).map(|i| i * 7 + 1).collect();
        let c = s.resolve(42, &other).unwrap();
        assert_eq!(c.slots()[0], 1000);
        assert_eq!(s.len(), 2000);
    }

    #[test]
    fn digest_follows_contents_not_slots() {
        let rule = Rule::AdaGrad { lr: 0.1, eps: 1e-6 };
        let (mut a, mut b) = (store(rule, 2), store(rule, 2));
        // The same keys and pushes, the keys arriving in another order: other slots.
        let ra = a.resolve(1, &[1, 2, 3]).unwrap();
        a.apply(&ra.slots(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap();
        let first = b.resolve(1, &[3]).unwrap();
        b.apply(&first.slots(), &[5.0, 6.0]).unwrap();
        let rest = b.resolve(2, &[1, 2]).unwrap();
        b.apply(&rest.slots(), &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let rb = b.resolve(4, &[1, 2, 3]).unwrap();
        assert_ne!(*ra.slots(), *rb.slots());
        assert_eq!(a.digest(), b.digest());
        // One value's bits differ: the digest differs; so does a key holding another's values.
        let one = b.resolve(5, &[2]).unwrap();
        b.apply(&one.slots(), &[0.0, 1e-3]).unwrap();
        assert_ne!(a.digest(), b.digest());
        let mut c = store(rule, 2);
        let rc = c.resolve(1, &[1, 2, 4]).unwrap();
        c.apply(&rc.slots(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap();
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn sum_accumulates_and_scattered_slots_gather_in_request_order() {
        let mut s = store(Rule::Sum, 2);
        let r1 = s.resolve(0, &[10, 20, 30]).unwrap();
        s.apply(&r1.slots(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap();
        let r2 = s.resolve(0, &[5, 20]).unwrap();
        assert_eq!(*r2.slots(), [3, 1]);
        s.apply(&r2.slots(), &[1.0, 1.0, 1.0, 1.0]).unwrap();
        let mut out = Vec::new();
        s.gather(&r2.slots(), &mut out);
        assert_eq!(out, vec![1.0, 1.0, 4.0, 5.0]);
        assert_eq!(slot_runs(&r2.slots()), vec![(3, 1), (1, 1)]);
    }

    #[test]
    fn run_by_run_dense_apply_matches_slot_by_slot() {
        let rule = Rule::AdaGrad { lr: 0.3, eps: 1e-6 };
        let (mut runs, mut slots) = (store(rule, 3), store(rule, 3));
        let keys: Vec<u64> = (0..5000).map(|i| i * 11).collect();
        let inputs: Vec<f32> = (0..15_000)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.25)
            .collect();
        for _ in 0..3 {
            let a = runs.resolve(9, &keys).unwrap();
            assert_eq!(a.runs.len(), 1);
            runs.apply_resolved(&a, &inputs).unwrap();
            let b = slots.resolve(9, &keys).unwrap();
            slots.apply(&b.slots(), &inputs).unwrap();
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let (ra, rb) = (
            runs.resolve(9, &keys).unwrap(),
            slots.resolve(9, &keys).unwrap(),
        );
        runs.gather(&ra.slots(), &mut x);
        slots.gather(&rb.slots(), &mut y);
        assert_eq!(x, y);
        assert!(x.iter().any(|&v| v != 0.0));
        let r = runs.resolve(9, &keys).unwrap();
        assert!(
            runs.apply_resolved(&r, &inputs[1..]).is_err(),
            "short input is refused"
        );
    }

    #[test]
    fn memory_is_committed_as_keys_arrive_and_accounted() {
        let mut s = store(Rule::AdaGrad { lr: 0.1, eps: 1e-6 }, 4);
        assert_eq!(
            s.memory().values_bytes,
            0,
            "nothing committed before the first key"
        );
        let keys: Vec<u64> = (0..1_000_000).map(|i| i * 5).collect();
        s.resolve(1, &keys).unwrap();
        let m = s.memory();
        let raw = 1_000_000 * 4 * 4;
        assert_eq!(m.keys, 1_000_000);
        assert!(
            m.values_bytes >= raw && m.values_bytes <= raw + (2 << 20),
            "{m:?}"
        );
        assert_eq!(
            m.state_bytes, m.values_bytes,
            "adagrad keeps one state array"
        );
        assert!(m.key_map_bytes >= 1_000_000 * 12);
        let small = TableStore::new(TableSpec::new("s", 1), &StoreOptions::plain(1 << 20)).unwrap();
        let mut small = small;
        let too_many: Vec<u64> = (0..300_000).collect();
        assert!(
            matches!(small.resolve(0, &too_many), Err(StoreError::Memory(_))),
            "past the reserved capacity is an error, not a crash"
        );
    }

    #[test]
    fn dense_tables_index_their_segment_directly() {
        let opts = StoreOptions::plain(64 << 20);
        let mut d = TableStore::dense(TableSpec::dense("d", 2, 1000), &opts, 500, 1000).unwrap();
        assert_eq!(d.len(), 500);
        let m = d.memory();
        assert_eq!(
            m.key_map_bytes,
            store(Rule::Sum, 1).memory().key_map_bytes,
            "unused map"
        );
        assert!(m.values_bytes >= 500 * 2 * 4);
        let r = d.resolve(0, &[500, 501, 502, 900]).unwrap();
        assert_eq!(*r.slots(), [0, 1, 2, 400]);
        assert_eq!(r.runs, vec![(0, 3), (400, 1)]);
        d.apply_resolved(&r, &[1.0; 8]).unwrap();
        let mut out = Vec::new();
        d.gather(&r.slots(), &mut out);
        assert_eq!(out, vec![1.0; 8]);
        assert!(matches!(d.resolve(0, &[499]), Err(StoreError::Keys(_))));
        assert!(matches!(
            d.resolve(0, &[999, 1000]),
            Err(StoreError::Keys(_))
        ));
    }

    #[test]
    fn a_hundred_million_dense_parameters_cost_their_size() {
        let opts = StoreOptions::plain(1 << 30);
        let spec =
            TableSpec::dense("big", 1, 100_000_000).rule(Rule::AdaGrad { lr: 0.1, eps: 1e-6 });
        let d = TableStore::dense(spec, &opts, 0, 100_000_000).unwrap();
        let m = d.memory();
        let raw = 100_000_000 * 4;
        let total = m.values_bytes + m.state_bytes + m.key_map_bytes + m.resolution_cache_bytes;
        assert!(
            total <= (2 * raw) * 11 / 10,
            "{m:?}: values + one state array, within 10%"
        );
        assert!(total >= 2 * raw);
    }

    #[test]
    fn a_list_pushed_whole_is_cached_as_its_runs_and_the_cache_follows_the_table() {
        let mut s = store(Rule::Sum, 1);
        let keys: Vec<u64> = (0..100_000).map(|i| i * 3).collect();
        let r = s.resolve(5, &keys).unwrap();
        assert_eq!(r.runs, vec![(0, 100_000)]);
        assert_eq!(
            s.memory().resolution_cache_bytes,
            100_000 * 8 + 8,
            "the keys and one run: no slot per key"
        );
        assert_eq!(*r.slots(), *(0..100_000).collect::<Vec<u32>>());
        // Scattered lists (every other key of the table: every other slot) keep their
        // slots; the cache never holds more than its budget and drops the oldest lists.
        let budget = s.resolution_budget();
        assert_eq!(
            budget, MIN_RESOLUTION_BUDGET,
            "a small table gets the minimum"
        );
        let lists: Vec<Vec<u64>> = (0..40u64)
            .map(|j| (0..50_000).map(|i| (i * 2 + j % 2) * 3).collect())
            .collect();
        let first = s.resolve(100, &lists[0]).unwrap();
        assert!(!first.few_runs());
        for (j, list) in lists.iter().enumerate().skip(1) {
            s.resolve(100 + j as u64, list).unwrap();
            assert!(s.memory().resolution_cache_bytes as usize <= budget);
        }
        let again = s.resolve(100, &lists[0]).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "the oldest list was dropped");
        assert_eq!(
            *again.slots(),
            *first.slots(),
            "and resolves the same again"
        );
        let newest = s.resolve(139, &lists[39]).unwrap();
        assert!(
            Arc::ptr_eq(&newest, &s.resolve(139, &lists[39]).unwrap()),
            "the newest lists stay cached"
        );
        let small = StoreOptions {
            cache_bytes: 1 << 20,
            ..StoreOptions::plain(64 << 20)
        };
        let mut capped = TableStore::new(TableSpec::new("c", 1), &small).unwrap();
        capped.resolve(1, &keys).unwrap();
        assert!(
            capped.resolution_budget() <= 1 << 20,
            "the options cap the budget"
        );
        assert_eq!(capped.memory().resolution_cache_bytes, 800_008);
    }

    #[test]
    fn bad_lists_are_refused() {
        let mut s = store(Rule::Sum, 1);
        assert!(matches!(s.resolve(0, &[3, 2]), Err(StoreError::Keys(_))));
        let r = s.resolve(0, &[1, 2]).unwrap();
        assert!(s.apply(&r.slots(), &[1.0]).is_err(), "too few values");
    }
}
