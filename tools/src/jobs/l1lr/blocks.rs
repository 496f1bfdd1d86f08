//! A worker's data shard arranged for block coordinate updates: features are dealt to `B`
//! blocks round-robin (feature `j` is in block `j mod B`, which spreads the frequent features
//! of a power-law set over every block), each block keeps its features in key order (the order
//! pulls and pushes need) and its columns in compressed sparse column form, and the shard keeps
//! the margins `m_i = wᵀx_i` of its rows up to date as block weights change.

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
}

/// The shard: labels, margins and the blocks, plus the weights the margins reflect.
#[derive(Clone, Debug)]
pub struct Shard {
    pub labels: Vec<f32>,
    pub margins: Vec<f64>,
    pub blocks: Vec<Block>,
    /// Per block, the weights (in the block's key order) the margins currently include.
    pub weights: Vec<Vec<f32>>,
}

/// Gradient and curvature of one block, key-major (`[g0, h0, g1, h1, ...]`), as pushed to the
/// accumulator table.
pub type GradCurv = Vec<f32>;

impl Shard {
    /// Arranges `rows` (feature indices below `dim`) into `blocks` blocks. `window` is how many
    /// consecutive blocks may be updated from the same stale margins (τ + 1 under delay τ); the
    /// curvature of a block then counts a row's nonzeros in the block and the `window − 1`
    /// blocks before it, so that the delayed steps together still take a majorised step.
    pub fn new(rows: &Rows, dim: usize, blocks: usize, window: usize) -> Shard {
        let blocks_n = blocks.max(1);
        // Count each feature's entries, then lay out columns block by block in key order.
        let mut counts = vec![0usize; dim];
        for &j in &rows.idx {
            counts[j as usize] += 1;
        }
        let mut out: Vec<Block> = (0..blocks_n)
            .map(|b| {
                let mut pairs: Vec<(u64, u32)> = (b..dim)
                    .step_by(blocks_n)
                    .map(|j| (feature_key(j as u64), j as u32))
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
                per_block[j as usize % blocks_n] += 1;
            }
            for (&j, &x) in idx.iter().zip(val) {
                let b = j as usize % blocks_n;
                let together: u32 = (0..window.clamp(1, blocks_n))
                    .map(|k| per_block[(b + blocks_n - k) % blocks_n])
                    .sum();
                let at = next[j as usize];
                next[j as usize] += 1;
                let block = &mut out[b];
                block.rows[at] = i as u32;
                block.vals[at] = x;
                block.curv[at] = together as f32 * x * x;
            }
        }
        let weights = out.iter().map(|b| vec![0.0; b.keys.len()]).collect();
        Shard {
            labels: rows.labels.clone(),
            margins: vec![0.0; rows.len()],
            blocks: out,
            weights,
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

    /// Gradient and curvature of block `b` over this shard at the current margins, into `out`
    /// (key-major pairs).
    pub fn grad_curv(&self, b: usize, out: &mut GradCurv) {
        let block = &self.blocks[b];
        out.clear();
        out.reserve(2 * block.keys.len());
        for c in 0..block.keys.len() {
            let (mut g, mut h) = (0.0f64, 0.0f64);
            for e in block.col_ptr[c]..block.col_ptr[c + 1] {
                let i = block.rows[e] as usize;
                let (d1, d2) = logistic::derivatives(self.labels[i], self.margins[i]);
                g += d1 * f64::from(block.vals[e]);
                h += d2 * f64::from(block.curv[e]);
            }
            out.push(g as f32);
            out.push(h as f32);
        }
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
}
