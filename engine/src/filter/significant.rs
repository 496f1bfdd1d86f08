//! The significantly-modified filter (worker side): a worker keeps what it has not yet sent as
//! a per-key residual and pushes a key only once its accumulated change is significant.
//!
//! [`SigFilter::offer`] adds the new updates to the residuals of their keys, then selects every
//! key with at least one coordinate where `|accumulated Δ| > θ · max(|w|, ε)` (`w` is the
//! worker's current weight for that coordinate; the test is the kernels'
//! [`ferrops_kernels::significant_indices`], so NaN is always significant). A selected key is
//! sent as a **whole row** (all `dim` coordinates of its residual) and its residual is removed;
//! the other keys keep accumulating. No update is ever dropped, only delayed: the sum of
//! everything sent, after a final [`SigFilter::flush`], equals the sum of everything offered,
//! per coordinate, up to f32 summation rounding.
//!
//! # Memory
//! The residuals hold `dim` f32 for every key offered but not yet sent, plus a hash index —
//! at worst the whole working set of keys. [`SigFilter::with_max_pending`] bounds it: when an
//! offer would leave more pending keys than the bound, all keys of that offer are sent
//! (counted as sent, nothing is lost), so the bound holds after every offer.

use super::rows::RowStore;
use super::stats::FilterCounts;
use super::{check_rows, for_each_row, FilterError};

/// One significantly-modified filter, for one table (one `dim`).
pub struct SigFilter {
    dim: usize,
    theta: f32,
    eps: f32,
    max_pending: usize,
    residual: RowStore,
    acc: Vec<f32>,
    idx: Vec<u32>,
    picked: Vec<bool>,
    present: Vec<bool>,
    counts: FilterCounts,
}

impl SigFilter {
    /// A filter for rows of `dim` values sending changes over `theta` relative to the weight,
    /// with weights below `eps` in magnitude treated as `eps`. `theta = 0` sends every nonzero
    /// change at once.
    pub fn new(dim: usize, theta: f32, eps: f32) -> Result<SigFilter, FilterError> {
        if dim == 0 {
            return Err(FilterError::Param {
                name: "dim",
                reason: "must be at least 1",
            });
        }
        if !(theta >= 0.0 && theta.is_finite()) {
            return Err(FilterError::Param {
                name: "theta",
                reason: "must be finite and non-negative",
            });
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(FilterError::Param {
                name: "eps",
                reason: "must be finite and non-negative",
            });
        }
        Ok(SigFilter {
            dim,
            theta,
            eps,
            max_pending: usize::MAX,
            residual: RowStore::new(dim),
            acc: Vec::new(),
            idx: Vec::new(),
            picked: Vec::new(),
            present: Vec::new(),
            counts: FilterCounts::default(),
        })
    }

    /// Bounds the number of keys with a pending residual (see the [module docs](self)).
    pub fn with_max_pending(mut self, keys: usize) -> SigFilter {
        self.max_pending = keys;
        self
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds `updates` (row-major, `dim` per key) to the residuals of `keys` (strictly
    /// ascending) and returns the keys to send now (ascending, a subset of `keys`) with their
    /// whole accumulated rows. `weights` are the worker's current values of the same rows.
    pub fn offer(
        &mut self,
        keys: &[u64],
        updates: &[f32],
        weights: &[f32],
    ) -> Result<(Vec<u64>, Vec<f32>), FilterError> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        self.offer_into(keys, updates, weights, &mut k, &mut v)?;
        Ok((k, v))
    }

    /// [`SigFilter::offer`] appending to caller buffers (cleared first) so they can be reused.
    pub fn offer_into(
        &mut self,
        keys: &[u64],
        updates: &[f32],
        weights: &[f32],
        send_keys: &mut Vec<u64>,
        send_values: &mut Vec<f32>,
    ) -> Result<(), FilterError> {
        let lens = [("updates", updates.len()), ("weights", weights.len())];
        check_rows(keys, self.dim, &lens)?;
        send_keys.clear();
        send_values.clear();
        let dim = self.dim;
        // Accumulate by lookup only: most keys of an offer have no residual and most are sent
        // at once, so the store changes only for keys that stay behind or leave it.
        self.acc.clear();
        self.acc.reserve(updates.len());
        self.present.clear();
        for (&key, upd) in keys.iter().zip(updates.chunks_exact(dim)) {
            match self.residual.get(key) {
                Some(row) => {
                    self.acc.extend(row.iter().zip(upd).map(|(r, u)| r + u));
                    self.present.push(true);
                }
                None => {
                    self.acc.extend_from_slice(upd);
                    self.present.push(false);
                }
            }
        }
        // Lengths are equal and bounded, so the kernel cannot refuse.
        ferrops_kernels::significant_indices(
            &self.acc,
            weights,
            self.theta,
            self.eps,
            &mut self.idx,
        )?;
        self.picked.clear();
        self.picked.resize(keys.len(), false);
        let mut selected = 0;
        let picked = &mut self.picked;
        for_each_row(&self.idx, dim, |row| {
            picked[row] = true;
            selected += 1;
        });
        // Keys pending if this offer is not forced out: the store's, plus the offer's keys that
        // stay, minus those of its keys that leave.
        let (mut joining, mut leaving) = (0, 0);
        for (&present, &picked) in self.present.iter().zip(&self.picked) {
            joining += usize::from(!present && !picked);
            leaving += usize::from(present && picked);
        }
        let force = self.residual.len() + joining - leaving > self.max_pending;
        send_keys.reserve(if force { keys.len() } else { selected });
        for (i, &key) in keys.iter().enumerate() {
            let row = &self.acc[i * dim..(i + 1) * dim];
            if force || self.picked[i] {
                send_keys.push(key);
                send_values.extend_from_slice(row);
                if self.present[i] {
                    self.residual.remove(key);
                }
            } else {
                self.residual.entry(key).copy_from_slice(row);
            }
        }
        let offered = updates.len() as u64;
        let sent = send_values.len() as u64;
        self.counts.offered += offered;
        self.counts.sent += sent;
        self.counts.delayed += offered - sent.min(offered);
        Ok(())
    }

    /// Everything still pending (ascending keys, whole rows); the filter is empty afterwards.
    /// Call it at the end of training (or of an epoch) so that every update reaches the server.
    pub fn flush(&mut self) -> (Vec<u64>, Vec<f32>) {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        self.residual.drain_sorted(&mut k, &mut v);
        self.counts.sent += v.len() as u64;
        (k, v)
    }

    /// The residual a key is holding back, if any.
    pub fn pending(&self, key: u64) -> Option<&[f32]> {
        self.residual.get(key)
    }

    /// Keys with a pending residual.
    pub fn pending_keys(&self) -> usize {
        self.residual.len()
    }

    /// Bytes of pending residual values.
    pub fn pending_bytes(&self) -> usize {
        self.residual.bytes()
    }

    /// Coordinates offered, sent (including flushes) and delayed (held back by an offer; a
    /// coordinate delayed by several offers counts in each).
    pub fn counts(&self) -> FilterCounts {
        self.counts
    }
}
