//! A worker's data shard arranged for block coordinate updates: features are dealt to `B`
//! blocks by a plan every worker shares (`plan.rs`: blocks of about equal nonzeros over the whole
//! data set), each block keeps its features in key order (the order pulls and pushes need) and
//! its columns in compressed sparse column form, and the shard keeps the margins `m_i = wᵀx_i`
//! of its rows up to date as block weights change.
//!
//! A block also lists the features *present* in this shard (columns with at least one entry):
//! only their gradients can be nonzero and only their weights move this shard's margins, so a
//! worker pushes and pulls just those keys. The logistic derivatives are computed once per row
//! and step, not once per nonzero.

use crate::data::Rows;
use crate::synth::feature_key;

use crate::logistic;

/// One block: its features in key order and their columns over this shard's rows.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Server keys of the block's features, sorted.
    pub keys: Vec<u64>,
    /// Feature index of each key.
    pub features: Vec<u32>,
    /// Column `c` has entries `col_ptr[c]..col_ptr[c+1]` of `rows`, `vals` and `curv`.
    pub col_ptr: Vec<usize>,
    pub rows: Vec<u32>,
    pub vals: Vec<f32>,
    /// `n_ib · x_ij²`, where `n_ib` is the number of row `i`'s nonzeros in this block and the
    /// blocks updated concurrently with it (see [`Shard::new`]): with it the diagonal curvature
    /// bounds the Hessian of all those blocks together (Cauchy–Schwarz over the row).
    pub curv: Vec<f32>,
    /// Columns (indices into `keys`) with at least one entry in this shard, ascending.
    pub present: Vec<u32>,
    /// Their keys (sorted, as `keys` is).
    pub present_keys: Vec<u64>,
}

/// The shard: labels, margins and the blocks, plus the weights the margins reflect.
#[derive(Clone, Debug)]
pub struct Shard {
    pub labels: Vec<f32>,
    pub margins: Vec<f64>,
    pub blocks: Vec<Block>,
    /// Per block, the weights (in the block's key order) the margins currently include.
    pub weights: Vec<Vec<f32>>,
    /// Scratch: per row, the loss's first and second derivative at the margin.
    d1: Vec<f64>,
    d2: Vec<f64>,
    /// Scratch of a line search: the margin change of a proposed step, and the rows it moves.
    dm: Vec<f64>,
    touched: Vec<u32>,
}

/// Gradient and curvature of one block, key-major (`[g0, h0, g1, h1, ...]`), as pushed to the
/// accumulator table.
pub type GradCurv = Vec<f32>;

impl Shard {
    /// Arranges `rows` (feature indices below `dim`) into `blocks` blocks. `window` is how many
    /// consecutive blocks may be updated from the same stale margins (τ + 1 under delay τ); the
    /// curvature of a block then counts a row's nonzeros in the block and the `window − 1`
    /// blocks before it, so that the delayed steps together still take a majorised step.
    /// `window` 0 gives the exact diagonal of the Hessian (for steps checked by a line search).
    #[cfg(test)]
    pub fn new(rows: &Rows, dim: usize, blocks: usize, window: usize) -> Shard {
        Shard::with_plan(rows, &super::plan::round_robin(dim, blocks), window)
    }

    /// As [`Shard::new`], with feature `j` in block `plan[j]` (every worker must use the same
    /// plan: `plan::balanced` of the summed column counts, or `plan::round_robin`).
    pub fn with_plan(rows: &Rows, plan: &[u32], window: usize) -> Shard {
        let dim = plan.len();
        let blocks_n = plan.iter().max().map_or(1, |&b| b as usize + 1);
        // Count each feature's entries, then lay out columns block by block in key order.
        let mut counts = vec![0usize; dim];
        for &j in &rows.idx {
            counts[j as usize] += 1;
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); blocks_n];
        for (j, &b) in plan.iter().enumerate() {
            members[b as usize].push(j as u32);
        }
        let mut out: Vec<Block> = members
            .into_iter()
            .map(|features| {
                let mut pairs: Vec<(u64, u32)> = features
                    .into_iter()
                    .map(|j| (feature_key(u64::from(j)), j))
                    .collect();
                pairs.sort_unstable();
                let mut col_ptr = Vec::with_capacity(pairs.len() + 1);
                col_ptr.push(0);
                for &(_, j) in &pairs {
                    col_ptr.push(col_ptr.last().unwrap() + counts[j as usize]);
                }
                let nnz = *col_ptr.last().unwrap();
                Block {
                    keys: pairs.iter().map(|p| p.0).collect(),
                    features: pairs.iter().map(|p| p.1).collect(),
                    col_ptr,
                    rows: vec![0; nnz],
                    vals: vec![0.0; nnz],
                    curv: vec![0.0; nnz],
                    present: Vec::new(),
                    present_keys: Vec::new(),
                }
            })
            .collect();
        // Where feature j's column starts inside its block.
        let mut next = vec![0usize; dim];
        for block in &out {
            for (c, &j) in block.features.iter().enumerate() {
                next[j as usize] = block.col_ptr[c];
            }
        }
        let mut per_block = vec![0u32; blocks_n];
        for i in 0..rows.len() {
            let (idx, val) = rows.row(i);
            per_block.fill(0);
            for &j in idx {
                per_block[plan[j as usize] as usize] += 1;
            }
            for (&j, &x) in idx.iter().zip(val) {
                let b = plan[j as usize] as usize;
                let together: u32 = if window == 0 {
                    1
                } else {
                    (0..window.min(blocks_n))
                        .map(|k| per_block[(b + blocks_n - k) % blocks_n])
                        .sum()
                };
                let at = next[j as usize];
                next[j as usize] += 1;
                let block = &mut out[b];
                block.rows[at] = i as u32;
                block.vals[at] = x;
                block.curv[at] = together as f32 * x * x;
            }
        }
        for block in &mut out {
            block.present = (0..block.keys.len())
                .filter(|&c| block.col_ptr[c + 1] > block.col_ptr[c])
                .map(|c| c as u32)
                .collect();
            block.present_keys = block
                .present
                .iter()
                .map(|&c| block.keys[c as usize])
                .collect();
        }
        let weights = out.iter().map(|b| vec![0.0; b.keys.len()]).collect();
        Shard {
            labels: rows.labels.clone(),
            margins: vec![0.0; rows.len()],
            blocks: out,
            weights,
            d1: Vec::new(),
            d2: Vec::new(),
            dm: vec![0.0; rows.len()],
            touched: Vec::new(),
        }
    }

    /// Moves block `b`'s present features to `new` (one value per entry of `present`).
    pub fn set_present_weights(&mut self, b: usize, new: &[f32]) {
        let block = &self.blocks[b];
        let old = &mut self.weights[b];
        for (&c, &n) in block.present.iter().zip(new) {
            let c = c as usize;
            if n != old[c] {
                let d = f64::from(n) - f64::from(old[c]);
                for e in block.col_ptr[c]..block.col_ptr[c + 1] {
                    self.margins[block.rows[e] as usize] += d * f64::from(block.vals[e]);
                }
                old[c] = n;
            }
        }
    }

    /// The loss change on this shard of moving block `b`'s present features by `alpha · d`
    /// (`d` per entry of `present`), for each of `alphas`: Σ_i loss(m_i + α·Δm_i) − loss(m_i)
    /// over the rows the step moves. Keeps `Δm` for [`Shard::take_step`].
    pub fn probe_step(&mut self, b: usize, d: &[f32], alphas: &[f32]) -> Vec<f64> {
        let block = &self.blocks[b];
        for &i in &self.touched {
            self.dm[i as usize] = 0.0;
        }
        self.touched.clear();
        for (&c, &dc) in block.present.iter().zip(d) {
            if dc == 0.0 {
                continue;
            }
            let c = c as usize;
            for e in block.col_ptr[c]..block.col_ptr[c + 1] {
                let i = block.rows[e] as usize;
                if self.dm[i] == 0.0 {
                    self.touched.push(i as u32);
                }
                self.dm[i] += f64::from(dc) * f64::from(block.vals[e]);
            }
        }
        let mut out = vec![0.0; alphas.len()];
        for &i in &self.touched {
            let i = i as usize;
            let (y, m, dm) = (self.labels[i], self.margins[i], self.dm[i]);
            let base = logistic::loss(y, m);
            for (o, &a) in out.iter_mut().zip(alphas) {
                *o += logistic::loss(y, m + f64::from(a) * dm) - base;
            }
        }
        out
    }

    /// The change in rows classified correctly on this shard of the step probed last, for each
    /// of `alphas` (the rows it moves only).
    pub fn probed_correct_change(&self, alphas: &[f32]) -> Vec<f64> {
        // As `loss_and_correct` counts: a row is right when y·m > 0.
        let right = |y: f32, m: f64| f64::from(u8::from(f64::from(y) * m > 0.0));
        let mut out = vec![0.0; alphas.len()];
        for &i in &self.touched {
            let i = i as usize;
            let (y, m, dm) = (self.labels[i], self.margins[i], self.dm[i]);
            let before = right(y, m);
            for (o, &a) in out.iter_mut().zip(alphas) {
                *o += right(y, m + f64::from(a) * dm) - before;
            }
        }
        out
    }

    /// Takes the step probed last: block `b`'s present weights become `w + alpha · d` (in f32,
    /// as worker 0 computes them) and the margins move by `alpha · Δm`.
    pub fn take_step(&mut self, b: usize, d: &[f32], alpha: f32) {
        if alpha == 0.0 {
            return;
        }
        let block = &self.blocks[b];
        let w = &mut self.weights[b];
        for (&c, &dc) in block.present.iter().zip(d) {
            w[c as usize] = step(w[c as usize], dc, alpha);
        }
        for &i in &self.touched {
            self.margins[i as usize] += f64::from(alpha) * self.dm[i as usize];
        }
    }

    /// Moves block `b`'s weights to `new` (in key order), updating the margins of the rows
    /// that use the changed features.
    pub fn set_weights(&mut self, b: usize, new: &[f32]) {
        let block = &self.blocks[b];
        let old = &mut self.weights[b];
        for (c, (&n, o)) in new.iter().zip(old.iter_mut()).enumerate() {
            if n != *o {
                let d = f64::from(n) - f64::from(*o);
                for e in block.col_ptr[c]..block.col_ptr[c + 1] {
                    self.margins[block.rows[e] as usize] += d * f64::from(block.vals[e]);
                }
                *o = n;
            }
        }
    }

    /// Gradient and curvature of block `b`'s present features over this shard at the current
    /// margins, into `out` (key-major pairs, one per entry of `present`).
    pub fn grad_curv(&mut self, b: usize, out: &mut GradCurv) {
        self.d1.clear();
        self.d2.clear();
        for (&y, &m) in self.labels.iter().zip(&self.margins) {
            let (d1, d2) = logistic::derivatives(y, m);
            self.d1.push(d1);
            self.d2.push(d2);
        }
        let block = &self.blocks[b];
        out.clear();
        out.reserve(2 * block.present.len());
        for &c in &block.present {
            let c = c as usize;
            let (mut g, mut h) = (0.0f64, 0.0f64);
            for e in block.col_ptr[c]..block.col_ptr[c + 1] {
                let i = block.rows[e] as usize;
                g += self.d1[i] * f64::from(block.vals[e]);
                h += self.d2[i] * f64::from(block.curv[e]);
            }
            out.push(g as f32);
            out.push(h as f32);
        }
    }

    /// The loss's second derivative per row at the margins of the last [`Shard::grad_curv`].
    pub fn row_curvature(&self) -> &[f64] {
        &self.d2
    }

    /// Logistic loss summed over the shard's rows, and how many rows the margins classify
    /// correctly.
    pub fn loss_and_correct(&self) -> (f64, usize) {
        let loss = self
            .labels
            .iter()
            .zip(&self.margins)
            .map(|(&y, &m)| logistic::loss(y, m))
            .sum();
        let correct = self
            .labels
            .iter()
            .zip(&self.margins)
            .filter(|(&y, &m)| f64::from(y) * m > 0.0)
            .count();
        (loss, correct)
    }
}

/// One weight moved by `alpha` along `d`, in f32: the one formula worker 0 and every worker use,
/// so that their copies of the weights stay equal bit for bit.
pub fn step(w: f32, d: f32, alpha: f32) -> f32 {
    if alpha == 1.0 {
        w + d
    } else {
        w + alpha * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Rows {
        let mut r = Rows::new();
        for (label, row) in [
            (1.0, vec![(0u32, 1.0f32), (3, 2.0), (4, 1.0)]),
            (-1.0, vec![(1, 1.0), (3, -1.0)]),
            (1.0, vec![(2, 0.5), (4, 1.5)]),
        ] {
            r.labels.push(label);
            for (j, x) in row {
                r.idx.push(j);
                r.val.push(x);
            }
            r.ptr.push(r.idx.len());
        }
        r
    }

    #[test]
    fn margins_follow_block_weights_and_every_entry_lands_once() {
        let rows = rows();
        let mut shard = Shard::new(&rows, 5, 2, 1);
        let total: usize = shard.blocks.iter().map(|b| b.rows.len()).sum();
        assert_eq!(total, rows.idx.len());
        for block in &shard.blocks {
            assert!(block.keys.windows(2).all(|k| k[0] < k[1]));
        }
        let w = [0.5f32, -1.0, 2.0, 0.25, 1.0]; // weight of feature j
        for b in 0..2 {
            let new: Vec<f32> = shard.blocks[b]
                .features
                .iter()
                .map(|&j| w[j as usize])
                .collect();
            shard.set_weights(b, &new);
        }
        for i in 0..rows.len() {
            let (idx, val) = rows.row(i);
            let m: f64 = idx
                .iter()
                .zip(val)
                .map(|(&j, &x)| f64::from(w[j as usize] * x))
                .sum();
            assert!((shard.margins[i] - m).abs() < 1e-9, "row {i}");
        }
    }

    #[test]
    fn block_gradient_matches_a_finite_difference_of_the_loss() {
        let rows = rows();
        let mut shard = Shard::new(&rows, 5, 2, 1);
        shard.set_weights(0, &vec![0.3; shard.blocks[0].keys.len()]);
        let mut gc = Vec::new();
        for b in 0..2 {
            shard.grad_curv(b, &mut gc);
            for c in 0..shard.blocks[b].keys.len() {
                let base = shard.loss_and_correct().0;
                let mut probe = shard.clone();
                let mut w = probe.weights[b].clone();
                w[c] += 1e-4;
                probe.set_weights(b, &w);
                let numeric = (probe.loss_and_correct().0 - base) / 1e-4;
                assert!(
                    (numeric - f64::from(gc[2 * c])).abs() < 1e-3,
                    "block {b} col {c}"
                );
                assert!(gc[2 * c + 1] >= 0.0);
            }
        }
    }

    #[test]
    fn present_features_are_exactly_the_columns_with_entries() {
        let rows = rows();
        // Features 0..8 in 3 blocks; this shard has 0, 1, 2, 3, 4 only.
        let shard = Shard::new(&rows, 9, 3, 1);
        let mut seen = Vec::new();
        for block in &shard.blocks {
            for (&c, &k) in block.present.iter().zip(&block.present_keys) {
                assert_eq!(block.keys[c as usize], k);
                assert!(block.col_ptr[c as usize + 1] > block.col_ptr[c as usize]);
                seen.push(block.features[c as usize]);
            }
            assert!(block.present_keys.windows(2).all(|k| k[0] < k[1]));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_probed_step_matches_the_loss_after_taking_it() {
        let rows = rows();
        let mut shard = Shard::new(&rows, 5, 2, 0);
        let mut gc = Vec::new();
        shard.grad_curv(1, &mut gc);
        let d: Vec<f32> = (0..shard.blocks[1].present.len())
            .map(|p| -gc[2 * p] / (gc[2 * p + 1] + 1.0))
            .collect();
        let before = shard.loss_and_correct().0;
        let change = shard.probe_step(1, &d, &[1.0, 0.5]);
        shard.take_step(1, &d, 0.5);
        let after = shard.loss_and_correct().0;
        assert!((after - before - change[1]).abs() < 1e-9);
        // The margins equal those of the new weights set from scratch.
        let mut fresh = Shard::new(&rows, 5, 2, 0);
        let w = shard.weights[1].clone();
        fresh.set_weights(1, &w);
        for (a, b) in shard.margins.iter().zip(&fresh.margins) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
