//! The Newton direction against the quadratic model it minimises.

use super::*;
use crate::data::Rows;
use crate::jobs::l1lr::blocks::Shard;
use crate::logistic::scaled_prox_l1;

/// Rows whose features 0, 1 and 2 are strongly correlated (they mostly occur together), and
/// feature 3 alone.
pub(super) fn coupled_rows() -> Rows {
    let mut r = Rows::new();
    for i in 0..40 {
        let label = if i % 3 == 0 { -1.0 } else { 1.0 };
        let mut row = vec![(0u32, 1.0f32), (1, 0.9)];
        if i % 2 == 0 {
            row.push((2, 0.8));
        }
        if i % 5 == 0 {
            row.push((3, 1.0));
        }
        r.labels.push(label);
        for (j, x) in row {
            r.idx.push(j);
            r.val.push(x);
        }
        r.ptr.push(r.idx.len());
    }
    r
}

/// The model's value q(d) = gᵀd + ½ dᵀ(XᵀDX + δI)d + λ(‖w + d‖₁ − ‖w‖₁) with the exact
/// Hessian of `shard` (which holds every row); `d` per feature.
pub(super) fn model(
    shard: &Shard,
    x: &[f32],
    sums: &[f32],
    d: &[f32],
    lambda: f64,
    delta: f64,
) -> f64 {
    let block = &shard.blocks[0];
    let mut xd = vec![0.0f64; shard.labels.len()];
    for (c, &dc) in d.iter().enumerate() {
        for e in block.col_ptr[c]..block.col_ptr[c + 1] {
            xd[block.rows[e] as usize] += f64::from(dc) * f64::from(block.vals[e]);
        }
    }
    let curv = shard.row_curvature();
    let quad: f64 = xd.iter().zip(curv).map(|(v, h)| h * v * v).sum::<f64>()
        + delta * d.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
    let lin: f64 = (0..d.len())
        .map(|c| f64::from(sums[2 * c]) * f64::from(d[c]))
        .sum();
    let l1: f64 = (0..d.len())
        .map(|c| f64::from((x[c] + d[c]).abs()) - f64::from(x[c].abs()))
        .sum();
    lin + 0.5 * quad + lambda * l1
}

/// One block of the rows `keep` selects, at weights `x`; its summed pairs are its own.
pub(super) fn shard_of(rows: &Rows, keep: impl Fn(usize) -> bool, x: &[f32]) -> (Shard, Vec<f32>) {
    let mut part = Rows::new();
    for i in (0..rows.len()).filter(|&i| keep(i)) {
        let (idx, val) = rows.row(i);
        part.labels.push(rows.labels[i]);
        part.idx.extend_from_slice(idx);
        part.val.extend_from_slice(val);
        part.ptr.push(part.idx.len());
    }
    let mut shard = Shard::new(&part, 4, 1, 0);
    shard.set_weights(0, x);
    let mut sums = Vec::new();
    shard.grad_curv(0, &mut sums);
    (shard, sums)
}

/// The summed `(g, h)` pairs of `shards` per column of the 4-column block: each shard's pairs
/// are those of its present columns.
pub(super) fn summed_pairs(shards: &[(Shard, Vec<f32>)]) -> [f32; 8] {
    let mut sums = [0.0f32; 8];
    for (shard, own) in shards.iter() {
        for (p, &c) in shard.blocks[0].present.iter().enumerate() {
            sums[2 * c as usize] += own[2 * p];
            sums[2 * c as usize + 1] += own[2 * p + 1];
        }
    }
    sums
}

/// The combined direction of `shards` at `x` (per column of the block), from the summed pairs
/// of all of them.
fn combined(shards: &[(Shard, Vec<f32>)], x: &[f32], model: (f32, f32)) -> Vec<f32> {
    let sums = summed_pairs(shards);
    let mut pairs = vec![0.0f32; 8];
    let workers = shards.len();
    for (shard, _) in shards.iter() {
        // A worker sees its present columns only (the odd rows lack one feature).
        let present = &shard.blocks[0].present;
        let xs: Vec<f32> = present.iter().map(|&c| x[c as usize]).collect();
        let at = |c: u32| [sums[2 * c as usize], sums[2 * c as usize + 1]];
        let own_sums: Vec<f32> = present.iter().flat_map(|&c| at(c)).collect();
        let on_shard = (&shard.blocks[0], shard.row_curvature(), workers);
        let own = weighted_direction(on_shard, &xs, &own_sums, model, &mut Scratch::default());
        for (p, &c) in present.iter().enumerate() {
            pairs[2 * c as usize] += own[2 * p];
            pairs[2 * c as usize + 1] += own[2 * p + 1];
        }
    }
    let mut d = Vec::new();
    combine(&pairs, &mut d);
    d
}

fn slope(sums: &[f32], x: &[f32], d: &[f32], lambda: f64) -> f64 {
    (0..d.len())
        .map(|c| {
            f64::from(sums[2 * c]) * f64::from(d[c])
                + lambda * (f64::from((x[c] + d[c]).abs()) - f64::from(x[c].abs()))
        })
        .sum()
}

#[test]
fn one_workers_direction_lowers_the_model_below_the_diagonal_step() {
    let rows = coupled_rows();
    let x = [0.0f32; 4];
    let (lambda, delta) = (0.5f32, 1e-3f32);
    let one = [shard_of(&rows, |_| true, &x)];
    let d = combined(&one, &x, (lambda, delta));
    let (shard, sums) = &one[0];
    let diagonal: Vec<f32> = (0..4)
        .map(|c| scaled_prox_l1(x[c], sums[2 * c], sums[2 * c + 1], lambda, delta) - x[c])
        .collect();
    let (l, dl) = (f64::from(lambda), f64::from(delta));
    let q_newton = model(shard, &x, sums, &d, l, dl);
    let q_diagonal = model(shard, &x, sums, &diagonal, l, dl);
    assert!(q_newton < 0.0, "q = {q_newton}");
    // The diagonal step ignores that features 0–2 move the same margins: it overshoots.
    assert!(q_newton < q_diagonal, "{q_newton} vs {q_diagonal}");
    assert!(slope(sums, &x, &d, l) < 0.0);
}

#[test]
fn two_workers_directions_combine_into_a_descent_direction() {
    let rows = coupled_rows();
    let x = [0.1f32, 0.0, -0.2, 0.0];
    let (lambda, delta) = (0.5f32, 1e-2f32);
    let whole = shard_of(&rows, |_| true, &x);
    let halves = [
        shard_of(&rows, |i| i % 2 == 0, &x),
        shard_of(&rows, |i| i % 2 == 1, &x),
    ];
    assert_eq!(halves[1].0.blocks[0].present.len(), 3);
    let d = combined(&halves, &x, (lambda, delta));
    let (l, dl) = (f64::from(lambda), f64::from(delta));
    let q = model(&whole.0, &x, &whole.1, &d, l, dl);
    assert!(q < 0.0, "q = {q}");
    assert!(slope(&whole.1, &x, &d, l) < 0.0);
}

#[test]
fn zero_weights_with_a_small_gradient_stay_out_of_the_working_set() {
    let rows = coupled_rows();
    let x = [0.0f32; 4];
    let one = [shard_of(&rows, |_| true, &x)];
    // λ above every |g|: nothing may move.
    let lambda = one[0].1.chunks(2).map(|gh| gh[0].abs()).fold(0.0, f32::max) * 1.01;
    let d = combined(&one, &x, (lambda, 1.0));
    assert_eq!(d, vec![0.0; 4]);
}

#[test]
fn combining_weights_each_proposal_by_its_share() {
    let mut d = Vec::new();
    // Feature 0: proposals 1 (weight 3) and −1 (weight 1); feature 1: nobody's.
    combine(&[3.0 * 1.0 + -1.0, 4.0, 0.0, 0.0], &mut d);
    assert_eq!(d, vec![0.5, 0.0]);
}
