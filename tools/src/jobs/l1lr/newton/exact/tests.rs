//! The exact Newton direction against the quadratic model it minimises, and the Hessian shares
//! it is assembled from.

use super::super::tests::{coupled_rows, model, shard_of, summed_pairs};
use super::*;
use crate::jobs::l1lr::blocks::Shard;
use crate::logistic::scaled_prox_l1;

/// The Hessian table as the job uses it: key → the slot's floats (assignment).
type Table = std::collections::HashMap<u64, [f32; ENTRY_FLOATS]>;

/// Assigns `keys` and their `values` as a push to the Hessian table does.
fn assign(table: &mut Table, keys: &[u64], values: &[f32]) {
    for (k, v) in keys.iter().zip(values.chunks(ENTRY_FLOATS)) {
        table.insert(*k, v.try_into().unwrap());
    }
}

/// Worker 0's two pulls: the counts, then the entries; what `direction` takes, for the
/// working set whose features are `features`.
fn pull_shares(
    table: &Table,
    workers: usize,
    (working, columns): (&[usize], usize),
) -> Result<Assembled, String> {
    let keys = EntryKeys::new(workers);
    let read = |ks: &[u64]| -> Vec<f32> { ks.iter().flat_map(|k| table[k]).collect() };
    let count_keys = count_keys(keys, workers);
    assert!(
        count_keys.windows(2).all(|p| p[0] < p[1]),
        "sorted, unique keys"
    );
    let counts = counts(&read(&count_keys))?;
    let entries = entry_keys(keys, &counts);
    assert!(
        entries.windows(2).all(|p| p[0] < p[1]),
        "sorted, unique keys"
    );
    assemble(&read(&entries), working, columns)
}

/// The direction the job computes for `shards` at `x`: every shard's Hessian share assigned to
/// a map (the Hessian table), worker 0's pulls of the counts and the entries, coordinate
/// descent; per column of the block, zero outside the working set.
fn newton_direction(shards: &[(Shard, Vec<f32>)], x: &[f32], model: (f32, f32)) -> Vec<f32> {
    let sums = summed_pairs(shards);
    let workers = shards.len();
    let mut table = Table::new();
    for (k, (shard, _)) in shards.iter().enumerate() {
        // A worker sees its present columns only (the odd rows lack one feature).
        let block = &shard.blocks[0];
        let xs: Vec<f32> = block.present.iter().map(|&c| x[c as usize]).collect();
        let at = |c: u32| [sums[2 * c as usize], sums[2 * c as usize + 1]];
        let own_sums: Vec<f32> = block.present.iter().flat_map(|&c| at(c)).collect();
        let working = working_set(&xs, &own_sums, model, 0.0);
        let entries = hessian_share(
            (block, shard.row_curvature()),
            &working,
            &mut Scratch::default(),
        );
        let (ks, vs) = share_slots(&entries, EntryKeys::new(workers), k);
        assert!(ks.windows(2).all(|p| p[0] < p[1]), "sorted, unique keys");
        assign(&mut table, &ks, &vs);
    }
    let block = &shards[0].0.blocks[0];
    let working = working_set(x, &sums, model, 0.0);
    let (hessian, at) = pull_shares(&table, workers, (&working, block.keys.len())).unwrap();
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
fn entry_keys_are_distinct_in_slot_then_worker_order_and_spread_over_the_key_space() {
    let keys = EntryKeys::new(3);
    let largest = (MAX_COUPLED * (MAX_COUPLED + 1) / 2) as u64;
    let mut previous = None;
    for slot in (0..5000).chain(largest - 5..=largest) {
        for k in 0..3 {
            let key = keys.key(k, slot);
            assert!(previous.is_none_or(|p| p < key), "({k}, {slot})");
            previous = Some(key);
        }
    }
    // The longest list reaches the upper half of the key space: every server holds a share.
    assert!(keys.key(0, largest) > u64::MAX / 2);
}

#[test]
fn entries_travel_exactly_and_a_longer_list_left_from_before_is_not_read() {
    let workers = 2;
    let keys = EntryKeys::new(workers);
    // A column above 2^16, so that both halves of its number matter.
    let big = 70_000;
    let mut table = Table::new();
    // Worker 1's list of an earlier step: three entries, one of them a pair no longer wanted.
    let before = [(5, 9, 1.0), (9, 9, 2.0), (7, big, 3.0)];
    let (ks, vs) = share_slots(&before, keys, 1);
    assign(&mut table, &ks, &vs);
    // This step: worker 0 writes two entries, worker 1 one, over columns {5, 9, big}.
    let (ks, vs) = share_slots(&[(5, 9, 0.5), (big, big, 0.25)], keys, 0);
    assert!(ks.windows(2).all(|p| p[0] < p[1]), "sorted, unique keys");
    assign(&mut table, &ks, &vs);
    let (ks, vs) = share_slots(&[(5, 9, 1.5)], keys, 1);
    assign(&mut table, &ks, &vs);
    let working = [5, 9, big as usize];
    let (hessian, at) = pull_shares(&table, workers, (&working, 80_000)).unwrap();
    let mut got: Vec<((u32, u32), f32)> = at.into_iter().zip(hessian).collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, vec![((0, 1), 0.5), ((0, 1), 1.5), ((2, 2), 0.25)]);
}

#[test]
fn a_count_or_an_entry_no_worker_can_have_written_is_refused() {
    let err = counts(&[0.0, 0.0, 0.0, 0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 0.0]).unwrap_err();
    assert!(err.contains("worker 1") && err.contains("2.5"), "{err}");
    assert!(counts(&[-1.0, 0.0, 0.0, 0.0, 0.0]).is_err());
    assert!(counts(&[1e9, 0.0, 0.0, 0.0, 0.0]).is_err());
    let outside = assemble(&[0.0, 6.0, 0.0, 9.0, 1.0], &[5, 9], 10).unwrap_err();
    assert!(outside.contains("outside the working set"), "{outside}");
    assert!(assemble(&[0.5, 5.0, 0.0, 9.0, 1.0], &[5, 9], 10).is_err());
    assert!(assemble(&[1.0, 5.0, 0.0, 9.0, 1.0], &[5, 9], 10).is_err());
}

#[test]
fn a_working_set_above_the_cap_sends_no_share() {
    let rows = coupled_rows();
    let (shard, _) = shard_of(&rows, |_| true, &[0.0; 4]);
    let too_many: Vec<usize> = (0..MAX_COUPLED + 1).map(|p| p % 4).collect();
    let entries = hessian_share(
        (&shard.blocks[0], shard.row_curvature()),
        &too_many,
        &mut Scratch::default(),
    );
    assert!(entries.is_empty());
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
