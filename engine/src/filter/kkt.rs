//! The KKT filter for L1-regularised problems (worker side): a coordinate whose weight is zero
//! and whose gradient lies safely inside the L1 subdifferential, `|g| ≤ λ·(1 − margin)`, would
//! not move under a proximal step, so the worker need not push it.
//!
//! [`KktFilter::select`] counts rounds (one per call). On a **recheck round** — the first call
//! and every `recheck_every`-th call after it — it keeps everything, so the server periodically
//! sees every coordinate. On the other rounds it keeps a key if any of its coordinates is not
//! skippable (the kernels' [`ferrops_kernels::kkt_active_indices`]; NaN is never skippable),
//! and drops the key (all its coordinates) otherwise. It never drops a coordinate with `w ≠ 0`
//! or `|g| > λ`.

use super::stats::FilterCounts;
use super::{check_rows, for_each_row, FilterError};

/// One KKT filter, for one table (one `dim`).
pub struct KktFilter {
    dim: usize,
    l1: f32,
    margin: f32,
    recheck_every: u64,
    round: u64,
    idx: Vec<u32>,
    counts: FilterCounts,
}

impl KktFilter {
    /// A filter for rows of `dim` values, L1 strength `l1 ≥ 0`, safety `margin` in `[0, 1]`
    /// (0: skip right up to the boundary) and a full recheck every `recheck_every ≥ 1` rounds
    /// (1 disables skipping).
    pub fn new(
        dim: usize,
        l1: f32,
        margin: f32,
        recheck_every: u64,
    ) -> Result<KktFilter, FilterError> {
        let param = |name, reason| Err(FilterError::Param { name, reason });
        if dim == 0 {
            return param("dim", "must be at least 1");
        }
        if !(l1 >= 0.0 && l1.is_finite()) {
            return param("l1", "must be finite and non-negative");
        }
        if !(0.0..=1.0).contains(&margin) {
            return param("margin", "must be in [0, 1]");
        }
        if recheck_every == 0 {
            return param("recheck_every", "must be at least 1");
        }
        Ok(KktFilter {
            dim,
            l1,
            margin,
            recheck_every,
            round: 0,
            idx: Vec::new(),
            counts: FilterCounts::default(),
        })
    }

    /// Whether the next [`KktFilter::select`] is a recheck round.
    pub fn next_is_recheck(&self) -> bool {
        self.round.is_multiple_of(self.recheck_every)
    }

    /// Rounds completed so far.
    pub fn rounds(&self) -> u64 {
        self.round
    }

    /// One round: the indices (into `keys`, ascending) of the keys to push. `weights` and
    /// `grads` are row-major, `dim` per key; `keys` strictly ascending.
    pub fn select(
        &mut self,
        keys: &[u64],
        weights: &[f32],
        grads: &[f32],
    ) -> Result<Vec<u32>, FilterError> {
        let mut out = Vec::new();
        self.select_into(keys, weights, grads, &mut out)?;
        Ok(out)
    }

    /// [`KktFilter::select`] into a caller buffer (cleared first).
    pub fn select_into(
        &mut self,
        keys: &[u64],
        weights: &[f32],
        grads: &[f32],
        out: &mut Vec<u32>,
    ) -> Result<(), FilterError> {
        let lens = [("weights", weights.len()), ("grads", grads.len())];
        check_rows(keys, self.dim, &lens)?;
        out.clear();
        if self.next_is_recheck() {
            out.extend(0..keys.len() as u32);
        } else {
            ferrops_kernels::kkt_active_indices(
                weights,
                grads,
                self.l1,
                self.margin,
                &mut self.idx,
            )?;
            for_each_row(&self.idx, self.dim, |row| out.push(row as u32));
        }
        self.round += 1;
        let offered = weights.len() as u64;
        let kept = (out.len() * self.dim) as u64;
        self.counts.offered += offered;
        self.counts.sent += kept;
        self.counts.dropped += offered - kept;
        Ok(())
    }

    /// Coordinates offered, kept (`sent`) and dropped.
    pub fn counts(&self) -> FilterCounts {
        self.counts
    }
}
