//! The exact Newton direction against the quadratic model it minimises, and the Hessian shares
//! it is assembled from.

use super::super::tests::{coupled_rows, model, shard_of, summed_pairs};
use super::*;
use crate::jobs::l1lr::blocks::Shard;
use crate::logistic::scaled_prox_l1;

/// The direction the job computes for `shards` at `x`: every shard's Hessian share assigned to
/// a map (the Hessian table), worker 0's pull of every pair of the working set, coordinate
/// descent; per column of the block, zero outside the working set.
fn newton_direction(shards: &[(Shard, Vec<f32>)], x: &[f32], model: (f32, f32)) -> Vec<f32> {
    let sums = summed_pairs(shards);
    let workers = shards.len();
    let keys = PairKeys::new(4, workers).unwrap();
    let mut table = std::collections::HashMap::new();
    for (k, (shard, _)) in shards.iter().enumerate() {
        // A worker sees its present columns only (the odd rows lack one feature).
        let block = &shard.blocks[0];
        let xs: Vec<f32> = block.present.iter().map(|&c| x[c as usize]).collect();
        let at = |c: u32| [sums[2 * c as usize], sums[2 * c as usize + 1]];
        let own_sums: Vec<f32> = block.present.iter().flat_map(|&c| at(c)).collect();
        let working = working_set(&xs, &own_sums, model, 0.0);
        let (ks, vs) = hessian_share(
            (block, shard.row_curvature()),
            &working,
            (keys, k),
            &mut Scratch::default(),
        );
        assert!(ks.windows(2).all(|p| p[0] < p[1]), "sorted, unique keys");
        table.extend(ks.into_iter().zip(vs));
    }
    let block = &shards[0].0.blocks[0];
    let working = working_set(x, &sums, model, 0.0);
    let features: Vec<u32> = working.iter().map(|&c| block.features[c]).collect();
    let (pull, at) = hessian_keys(&features, keys, workers);
    let hessian: Vec<f32> = pull
        .iter()
        .map(|k| table.get(k).copied().unwrap_or(0.0))
        .collect();
    let wx: Vec<f32> = working.iter().map(|&c| x[c]).collect();
    let ws: Vec<f32> = working
        .iter()
        .flat_map(|&c| [sums[2 * c], sums[2 * c + 1]])
        .collect();
    let dw = direction(&wx, &ws, (&hessian, &at), model);
    let mut d = vec![0.0f32; x.len()];
    for (&c, &v) in working.iter().zip(&dw) {
        d[c] = v as f32;
    }
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
    let d = newton_direction(&one, &x, (lambda, delta));
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
fn two_workers_shares_give_a_descent_direction() {
    let rows = coupled_rows();
    let x = [0.1f32, 0.0, -0.2, 0.0];
    let (lambda, delta) = (0.5f32, 1e-2f32);
    let whole = shard_of(&rows, |_| true, &x);
    let halves = [
        shard_of(&rows, |i| i % 2 == 0, &x),
        shard_of(&rows, |i| i % 2 == 1, &x),
    ];
    assert_eq!(halves[1].0.blocks[0].present.len(), 3);
    let d = newton_direction(&halves, &x, (lambda, delta));
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
    let d = newton_direction(&one, &x, (lambda, 1.0));
    assert_eq!(d, vec![0.0; 4]);
}

#[test]
fn the_split_hessian_is_the_whole_one() {
    // Rows split across two workers give the same direction as one worker holding them all:
    // the shares add up to the exact Hessian (to f32 rounding of the shares).
    let rows = coupled_rows();
    let x = [0.1f32, 0.0, -0.2, 0.0];
    let (lambda, delta) = (0.05f32, 1e-2f32);
    let one = [shard_of(&rows, |_| true, &x)];
    let halves = [
        shard_of(&rows, |i| i % 2 == 0, &x),
        shard_of(&rows, |i| i % 2 == 1, &x),
    ];
    let whole = newton_direction(&one, &x, (lambda, delta));
    let split = newton_direction(&halves, &x, (lambda, delta));
    assert!(whole.iter().any(|&v| v != 0.0));
    for (a, b) in whole.iter().zip(&split) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1e-3),
            "{whole:?} vs {split:?}"
        );
    }
}

#[test]
fn pair_keys_are_distinct_per_pair_and_worker_and_refuse_what_does_not_fit() {
    let keys = PairKeys::new(1000, 3).unwrap();
    let mut seen = std::collections::HashSet::new();
    for a in (0..1000).step_by(37) {
        for b in (a..1000).step_by(41) {
            for k in 0..3 {
                assert_eq!(keys.key(a, b, k), keys.key(b, a, k));
                assert!(seen.insert(keys.key(a, b, k)), "({a}, {b}, {k})");
            }
        }
    }
    assert!(PairKeys::new(1 << 31, 2).is_some());
    assert!(PairKeys::new(1 << 32, 2).is_none());
}

#[test]
fn a_working_set_above_the_cap_sends_no_share() {
    let rows = coupled_rows();
    let (shard, _) = shard_of(&rows, |_| true, &[0.0; 4]);
    let keys = PairKeys::new(4, 1).unwrap();
    let too_many: Vec<usize> = (0..MAX_COUPLED + 1).map(|p| p % 4).collect();
    let (ks, _) = hessian_share(
        (&shard.blocks[0], shard.row_curvature()),
        &too_many,
        (keys, 0),
        &mut Scratch::default(),
    );
    assert!(ks.is_empty());
}

#[test]
fn combining_reads_back_the_published_direction() {
    let mut d = Vec::new();
    super::super::combine(&[-0.25, 1.0, 0.0, 0.0], &mut d);
    assert_eq!(d, vec![-0.25, 0.0]);
}

#[test]
fn the_threshold_keeps_the_farthest_diagonal_moves_within_the_cap() {
    // Zero weights whose diagonal moves are 1, 2, …, n (|g| − λ = move, h + δ = 1), and a few
    // nonzero weights that always stay in the set.
    let n = MAX_COUPLED + 100;
    let nonzero = 10;
    let (lambda, delta) = (1.0f32, 0.5f32);
    let mut x = vec![0.0f32; n + nonzero];
    let mut sums = Vec::new();
    for p in 0..n {
        sums.extend([-(lambda + (p + 1) as f32), 0.5]);
    }
    for p in 0..nonzero {
        x[n + p] = 1.0;
        sums.extend([0.0, 0.5]);
    }
    let theta = threshold(&x, &sums, (lambda, delta)).unwrap();
    let set = working_set(&x, &sums, (lambda, delta), theta);
    assert_eq!(set.len(), MAX_COUPLED);
    // Moves that differ below f32's precision near the threshold still leave at most the cap.
    let mut close = sums.clone();
    for p in 0..n {
        close[2 * p] = -(lambda + 1000.0 + p as f32 * 1e-4);
    }
    let theta = threshold(&x, &close, (lambda, delta)).unwrap();
    assert!(working_set(&x, &close, (lambda, delta), theta).len() <= MAX_COUPLED);
    // The farthest moves and every nonzero weight, nothing nearer.
    assert!(set.contains(&(n - 1)) && set.contains(&(n + nonzero - 1)));
    assert!(!set.contains(&0));
    // Everything fits: θ = 0, the whole diagonal working set.
    let few = &sums[..2 * 20];
    assert_eq!(threshold(&x[..20], few, (lambda, delta)), Some(0.0));
    // More nonzero weights than the cap: no threshold.
    let dense = vec![1.0f32; MAX_COUPLED + 1];
    let flat = vec![0.0f32; 2 * (MAX_COUPLED + 1)];
    assert_eq!(threshold(&dense, &flat, (lambda, delta)), None);
}
