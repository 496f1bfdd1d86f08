//! Which block each feature of the `l1lr` job is in. With several blocks every worker pushes
//! its shard's column counts to the dense `l1lr.nnz` table, and after a barrier every worker
//! derives the same plan from the sums: blocks of about equal nonzeros ([`balanced`]), so that
//! every block step costs about the same. With one block there is nothing to plan.

use anyhow::Result;
use ferrops_engine::{Consistency, TableSpec, Worker};
use ferrops_kernels::Rule;

use crate::data::Rows;

/// The lightest and the heaviest block's nonzeros over the mean (`None` with one block).
pub(super) type Spread = Option<(f64, f64)>;

/// Which block each feature is in: with one block, block 0; otherwise blocks of about equal
/// nonzeros over the whole data set ([`balanced`]), from every worker's column counts
/// summed in the dense `l1lr.nnz` table (keys are feature indices; a barrier makes every
/// count arrive before anyone reads them), and the [`Spread`] of the blocks' nonzeros. A
/// restored job pushes its counts again on top of the restored ones: every count doubles,
/// which leaves the plan as it was.
pub(super) fn block_plan(
    w: &Worker,
    rows: &Rows,
    dim: usize,
    blocks: usize,
) -> Result<(Vec<u32>, Spread)> {
    if blocks <= 1 {
        return Ok((round_robin(dim, 1), None));
    }
    let table = w.declare_table(
        TableSpec::dense("l1lr.nnz", 1, dim as u64)
            .rule(Rule::Sum)
            .consistency(Consistency::Sequential),
    )?;
    let mut local = vec![0u32; dim];
    for &j in &rows.idx {
        local[j as usize] += 1;
    }
    let (keys, counts): (Vec<u64>, Vec<f32>) = local
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(j, &c)| (j as u64, c as f32))
        .unzip();
    if !keys.is_empty() {
        w.push(table, &keys, &counts)?;
    }
    w.barrier()?;
    let all: Vec<u64> = (0..dim as u64).collect();
    let counts = w.pull(table, &all)?;
    let plan = balanced(&counts, blocks);
    let mut per_block = vec![0f64; blocks];
    for (&b, &c) in plan.iter().zip(&counts) {
        per_block[b as usize] += f64::from(c);
    }
    let mean = per_block.iter().sum::<f64>() / blocks as f64;
    let (lo, hi) = per_block
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &n| (l.min(n), h.max(n)));
    Ok((plan, (mean > 0.0).then(|| (lo / mean, hi / mean))))
}

/// Feature `j` in block `j mod blocks` (at least one block).
pub fn round_robin(dim: usize, blocks: usize) -> Vec<u32> {
    let blocks = blocks.max(1);
    (0..dim).map(|j| (j % blocks) as u32).collect()
}

/// Blocks of about equal nonzeros: `counts[j]` is feature j's entries over all shards. Heavy
/// features (over 1/64 of a block's share) go first, most frequent first, each to the lightest
/// block; the rest, in index order, fill the blocks in turn up to their share, so a block ends
/// within one light feature of it and most blocks are runs of neighbouring features. Every
/// block gets at least one feature, and scaling every count by the same factor (a Sum table
/// pushed again after a restore) changes nothing. Every worker computes the same plan from
/// the same counts; the cost is one pass, plus a sort of the heavy features.
pub fn balanced(counts: &[f32], blocks: usize) -> Vec<u32> {
    const UNASSIGNED: u32 = u32::MAX;
    let blocks = blocks.max(1).min(counts.len().max(1));
    let count = |j: usize| f64::from(counts[j]);
    let share = (0..counts.len()).map(count).sum::<f64>() / blocks as f64;
    let mut heavy: Vec<usize> = (0..counts.len())
        .filter(|&j| count(j) > share / 64.0)
        .collect();
    heavy.sort_by(|&a, &b| counts[b].total_cmp(&counts[a]).then(a.cmp(&b)));
    let mut load = vec![0f64; blocks];
    let mut size = vec![0usize; blocks];
    let mut plan = vec![UNASSIGNED; counts.len()];
    for &j in &heavy {
        let lightest = (0..blocks)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one block");
        plan[j] = lightest as u32;
        load[lightest] += count(j);
        size[lightest] += 1;
    }
    let mut light_left = counts.len() - heavy.len();
    let mut b = 0;
    for (j, at) in plan.iter_mut().enumerate() {
        if *at != UNASSIGNED {
            continue;
        }
        // Move on when this block is full, or when the features left are only just enough
        // for the empty blocks after it.
        let scarce = |b: usize| {
            light_left < blocks && light_left <= size[b + 1..].iter().filter(|&&n| n == 0).count()
        };
        while b + 1 < blocks && size[b] > 0 && (load[b] + count(j) / 2.0 > share || scarce(b)) {
            b += 1;
        }
        *at = b as u32;
        load[b] += count(j);
        size[b] += 1;
        light_left -= 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_blocks_even_out_nonzeros_and_spread_empty_features() {
        // A long tail: feature j has about 2000 / √(j + 1) entries; every tenth feature none.
        let counts: Vec<f32> = (0..5000)
            .map(|j| {
                if j % 10 == 9 {
                    0.0
                } else {
                    (2000.0 / ((j + 1) as f32).sqrt()).floor()
                }
            })
            .collect();
        let per_block = |plan: &[u32], b: u32| -> (f32, usize) {
            let js = (0..plan.len()).filter(|&j| plan[j] == b);
            js.fold((0.0, 0), |(n, f), j| (n + counts[j], f + 1))
        };
        let spread = |plan: &[u32]| {
            let loads: Vec<f32> = (0..8).map(|b| per_block(plan, b).0).collect();
            let mean = loads.iter().sum::<f32>() / 8.0;
            let (lo, hi) = loads
                .iter()
                .fold((f32::MAX, 0f32), |(l, h), &n| (l.min(n), h.max(n)));
            (lo / mean, hi / mean)
        };
        let plan = balanced(&counts, 8);
        let (lo, hi) = spread(&plan);
        assert!(lo > 0.97 && hi < 1.03, "{lo}..{hi}");
        // Round robin puts features 0, 8, 16, … (the heaviest of each eight) in block 0.
        let (rr_lo, rr_hi) = spread(&round_robin(counts.len(), 8));
        assert!(
            rr_hi - rr_lo > 4.0 * (hi - lo),
            "round robin {rr_lo}..{rr_hi}"
        );
        // Features no row has are dealt out too, and every block has features.
        let sizes: Vec<usize> = (0..8).map(|b| per_block(&plan, b).1).collect();
        assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
        let empties = |b: u32| {
            (0..plan.len())
                .filter(|&j| plan[j] == b && counts[j] == 0.0)
                .count()
        };
        assert!((0..8).all(|b| empties(b) > 0), "{sizes:?}");
        // The same counts scaled (a Sum table pushed twice) give the same plan.
        let doubled: Vec<f32> = counts.iter().map(|c| 2.0 * c).collect();
        assert_eq!(balanced(&doubled, 8), plan);
        // Never more blocks than features; every block gets one even when one feature holds
        // every entry.
        assert_eq!(balanced(&[3.0, 0.0], 5), vec![0, 1]);
        assert_eq!(balanced(&[10.0, 0.0, 0.0, 0.0], 4), vec![0, 1, 2, 3]);
        assert_eq!(balanced(&[0.0; 6], 3).iter().max(), Some(&2));
    }
}
