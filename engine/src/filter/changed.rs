//! Pull filtering (server side): per worker, remember the values that worker last received and
//! answer a pull with only the keys that changed significantly since.
//!
//! A key has changed when one of its coordinates satisfies `|current − last| > θ·max(|current|, ε)`
//! (the kernels' [`ferrops_kernels::significant_indices`]; NaN counts as changed), or when the
//! worker has never received it. The whole row is then sent and remembered. So after every
//! [`ChangedSince::select`], the worker's copy of each requested coordinate is within
//! `θ·max(|current|, ε)` of the server's value.
//!
//! # Memory
//! One `ChangedSince` holds `dim` f32 for every key its worker has received — the size of that
//! worker's copy of the model. [`ChangedSince::forget`] drops keys (for example when the worker
//! evicts them), [`ChangedSince::reset`] everything (a reconnecting worker starts empty).

use super::rows::RowStore;
use super::stats::FilterCounts;
use super::{check_rows, FilterError};

/// The rows (indices into the `dim`-wide rows of `current`) whose value moved away from `last`
/// by more than `θ·max(|current|, ε)` in some coordinate, ascending, into `out` (cleared first).
/// `delta` is scratch space.
pub fn changed_rows(
    current: &[f32],
    last: &[f32],
    dim: usize,
    theta: f32,
    eps: f32,
    delta: &mut Vec<f32>,
    out: &mut Vec<u32>,
) -> Result<(), FilterError> {
    if dim == 0 {
        return Err(FilterError::Param {
            name: "dim",
            reason: "must be at least 1",
        });
    }
    if !current.len().is_multiple_of(dim) {
        return Err(FilterError::Length {
            what: "current",
            got: current.len(),
            expected: current.len() / dim * dim,
        });
    }
    if last.len() != current.len() {
        return Err(FilterError::Length {
            what: "last",
            got: last.len(),
            expected: current.len(),
        });
    }
    delta.clear();
    delta.extend(current.iter().zip(last).map(|(c, l)| c - l));
    let mut idx = Vec::new();
    ferrops_kernels::significant_indices(delta, current, theta, eps, &mut idx)?;
    out.clear();
    super::for_each_row(&idx, dim, |row| out.push(row as u32));
    Ok(())
}

/// What one worker last received of one table.
pub struct ChangedSince {
    dim: usize,
    theta: f32,
    eps: f32,
    seen: RowStore,
    delta: Vec<f32>,
    idx: Vec<u32>,
    counts: FilterCounts,
}

impl ChangedSince {
    /// A tracker for rows of `dim` values with relative threshold `theta ≥ 0` and floor
    /// `eps ≥ 0` (`theta = 0`: every change is sent).
    pub fn new(dim: usize, theta: f32, eps: f32) -> Result<ChangedSince, FilterError> {
        let param = |name, reason| Err(FilterError::Param { name, reason });
        if dim == 0 {
            return param("dim", "must be at least 1");
        }
        if !(theta >= 0.0 && theta.is_finite()) {
            return param("theta", "must be finite and non-negative");
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return param("eps", "must be finite and non-negative");
        }
        Ok(ChangedSince {
            dim,
            theta,
            eps,
            seen: RowStore::new(dim),
            delta: Vec::new(),
            idx: Vec::new(),
            counts: FilterCounts::default(),
        })
    }

    /// For a pull of `keys` (strictly ascending) whose server values are `current` (row-major),
    /// the indices into `keys` to send (ascending). Those rows are recorded as what the worker
    /// now holds; the caller must send them.
    pub fn select(&mut self, keys: &[u64], current: &[f32]) -> Result<Vec<u32>, FilterError> {
        let mut out = Vec::new();
        self.select_into(keys, current, &mut out)?;
        Ok(out)
    }

    /// [`ChangedSince::select`] into a caller buffer (cleared first).
    pub fn select_into(
        &mut self,
        keys: &[u64],
        current: &[f32],
        out: &mut Vec<u32>,
    ) -> Result<(), FilterError> {
        check_rows(keys, self.dim, &[("current", current.len())])?;
        let dim = self.dim;
        // Never-seen keys get a NaN delta, which the kernel always lists.
        self.delta.clear();
        for (&k, cur) in keys.iter().zip(current.chunks_exact(dim)) {
            match self.seen.get(k) {
                Some(last) => self.delta.extend(cur.iter().zip(last).map(|(c, l)| c - l)),
                None => self.delta.extend(std::iter::repeat_n(f32::NAN, dim)),
            }
        }
        ferrops_kernels::significant_indices(
            &self.delta,
            current,
            self.theta,
            self.eps,
            &mut self.idx,
        )?;
        out.clear();
        super::for_each_row(&self.idx, dim, |row| out.push(row as u32));
        for &row in out.iter() {
            let row = row as usize;
            self.seen
                .entry(keys[row])
                .copy_from_slice(&current[row * dim..(row + 1) * dim]);
        }
        let offered = current.len() as u64;
        let sent = (out.len() * dim) as u64;
        self.counts.offered += offered;
        self.counts.sent += sent;
        self.counts.dropped += offered - sent;
        Ok(())
    }

    /// Forgets what the worker holds of `keys` (they count as changed on the next pull).
    pub fn forget(&mut self, keys: &[u64]) {
        for &k in keys {
            self.seen.remove(k);
        }
    }

    /// Forgets everything and releases the memory.
    pub fn reset(&mut self) {
        self.seen.clear();
    }

    /// Keys the worker is known to hold.
    pub fn tracked_keys(&self) -> usize {
        self.seen.len()
    }

    /// Coordinates requested (`offered`), sent, and left out of replies (`dropped`).
    pub fn counts(&self) -> FilterCounts {
        self.counts
    }
}
