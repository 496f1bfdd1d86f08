//! Every combination of bandwidth reducers, through real connections: key caching and packing
//! on or off, each value codec, the significantly-modified filter, the KKT filter and
//! changed-only pulls, with plain and masked pushes — and after a final flush the servers hold
//! exactly the sum of what the workers pushed, up to the value codec's rounding.

mod common;

use ferrops_engine::filter::{KktFilter, SigFilter};
use ferrops_engine::{TableSpec, Worker};
use ferrops_net::codec::ValueCodec;

const KEYS: u64 = 2000;
const DIM: usize = 2;
const ROUNDS: usize = 30;
/// Relative threshold of the changed-only pulls.
const CHANGED_THETA: f32 = 0.1;

/// A small deterministic generator for the test's keys and updates.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// The key of index `i`: odd indices in the upper half of the key space, so both servers get
/// keys while each server's part stays dense enough to pack.
fn key_of(i: u64) -> u64 {
    ((i & 1) << 63) | (i >> 1)
}

/// The index of `key` (inverse of [`key_of`]).
fn index_of(key: u64) -> usize {
    (((key & !(1 << 63)) << 1) | (key >> 63)) as usize
}

/// Every key, ascending.
fn all_keys() -> Vec<u64> {
    let mut all: Vec<u64> = (0..KEYS).map(key_of).collect();
    all.sort_unstable();
    all
}

/// One table's reducers (key caching is per connection, so it is per job).
#[derive(Clone, Copy, Debug)]
struct Combo {
    codec: ValueCodec,
    significant: bool,
    kkt: bool,
    changed: bool,
}

fn combos() -> Vec<Combo> {
    let mut all = Vec::new();
    for codec in [
        ValueCodec::Raw,
        ValueCodec::Fp16,
        ValueCodec::Bf16,
        ValueCodec::Lz4,
    ] {
        for bits in 0..8u8 {
            all.push(Combo {
                codec,
                significant: bits & 1 != 0,
                kkt: bits & 2 != 0,
                changed: bits & 4 != 0,
            });
        }
    }
    all
}

/// Largest relative error of one value through `codec` (normal range).
fn rounding(codec: ValueCodec) -> f64 {
    match codec {
        ValueCodec::Fp16 => 2f64.powi(-11),
        ValueCodec::Bf16 => 2f64.powi(-8),
        _ => 0.0,
    }
}

/// What one worker did to one table.
struct Outcome {
    /// Per coordinate: the sum of the values this worker pushed.
    pushed: Vec<f64>,
    /// Per coordinate: the sum of the magnitudes of those values (bounds codec rounding).
    magnitude: Vec<f64>,
    /// The worker's copy after a last changed-only pull of every key (changed pulls only).
    copy: Option<Vec<f32>>,
    delayed: u64,
    dropped: u64,
}

/// The positions in `keys` of `subset` (both ascending).
fn positions(keys: &[u64], subset: &[u64]) -> Vec<u32> {
    subset
        .iter()
        .map(|k| keys.binary_search(k).expect("subset of keys") as u32)
        .collect()
}

/// Rows in the order of `keys` rearranged by key index.
fn by_index(keys: &[u64], rows: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; rows.len()];
    for (&k, row) in keys.iter().zip(rows.chunks_exact(DIM)) {
        out[index_of(k) * DIM..][..DIM].copy_from_slice(row);
    }
    out
}

fn train(w: &Worker, c: Combo, name: &str, seed: u64) -> Outcome {
    let t = w
        .declare_table(TableSpec::new(name, DIM as u32).value_codec(c.codec))
        .unwrap();
    let mut significant = c
        .significant
        .then(|| SigFilter::new(DIM, 0.5, 1e-3).unwrap());
    let mut kkt = c.kkt.then(|| KktFilter::new(DIM, 0.2, 0.0, 4).unwrap());
    let mut rng = seed;
    let n = KEYS as usize * DIM;
    let (mut pushed, mut magnitude) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut copy = vec![0.0f32; n];
    let mut record = |keys: &[u64], values: &[f32]| {
        for (k, row) in keys.iter().zip(values.chunks_exact(DIM)) {
            for (d, &v) in row.iter().enumerate() {
                pushed[index_of(*k) * DIM + d] += f64::from(v);
                magnitude[index_of(*k) * DIM + d] += f64::from(v.abs());
            }
        }
    };
    for round in 0..ROUNDS {
        // A random subset of a power-law-ish key range, sorted and unique.
        let mut keys: Vec<u64> = (0..300)
            .map(|_| key_of(next(&mut rng) % (next(&mut rng) % KEYS + 1)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut weights = vec![0.0f32; keys.len() * DIM];
        if c.changed {
            for (row, &k) in weights.chunks_exact_mut(DIM).zip(&keys) {
                row.copy_from_slice(&copy[index_of(k) * DIM..][..DIM]);
            }
            w.pull_changed_into(t, &keys, &mut weights, CHANGED_THETA)
                .unwrap();
            for (row, &k) in weights.chunks_exact(DIM).zip(&keys) {
                copy[index_of(k) * DIM..][..DIM].copy_from_slice(row);
            }
        } else {
            w.pull_into(t, &keys, &mut weights).unwrap();
        }
        // Magnitudes over several octaves, so that codecs round.
        let updates: Vec<f32> = (0..keys.len() * DIM)
            .map(|_| (next(&mut rng) % 100_000) as f32 / 100_000.0 - 0.5)
            .collect();
        let chosen: Vec<u32> = match kkt.as_mut() {
            Some(f) => f.select(&keys, &weights, &updates).unwrap(),
            None => (0..keys.len() as u32).collect(),
        };
        let rows = |x: &[f32]| -> Vec<f32> {
            chosen
                .iter()
                .flat_map(|&i| x[i as usize * DIM..][..DIM].iter().copied())
                .collect()
        };
        let mut send_keys: Vec<u64> = chosen.iter().map(|&i| keys[i as usize]).collect();
        let mut send_values = rows(&updates);
        if let Some(f) = significant.as_mut() {
            (send_keys, send_values) = f.offer(&send_keys, &send_values, &rows(&weights)).unwrap();
        }
        if send_keys.is_empty() {
            continue;
        }
        record(&send_keys, &send_values);
        if round % 2 == 0 {
            // Masked: the whole list travels (cached or packed), values for a selection.
            let at = positions(&keys, &send_keys);
            w.push_selected(t, &keys, &at, &send_values).unwrap();
        } else {
            w.push(t, &send_keys, &send_values).unwrap();
        }
    }
    if let Some(f) = significant.as_mut() {
        let (rest, values) = f.flush();
        if !rest.is_empty() {
            record(&rest, &values);
            w.push(t, &rest, &values).unwrap();
        }
    }
    w.barrier().unwrap();
    let copy = c.changed.then(|| {
        // In key order for the pull, then back in index order.
        let all = all_keys();
        let mut in_key_order: Vec<f32> = all
            .iter()
            .flat_map(|&k| copy[index_of(k) * DIM..][..DIM].to_vec())
            .collect();
        w.pull_changed_into(t, &all, &mut in_key_order, CHANGED_THETA)
            .unwrap();
        by_index(&all, &in_key_order)
    });
    Outcome {
        pushed,
        magnitude,
        copy,
        delayed: significant.map_or(0, |f| f.counts().delayed),
        dropped: kkt.map_or(0, |f| f.counts().dropped),
    }
}

/// Runs every combination (one table each) on a job whose workers cache and pack keys or not,
/// and checks what the servers hold.
fn every_combination(keys_reduced: bool) {
    let mut job = common::start(2, 2);
    if !keys_reduced {
        job.cluster.key_cache_keys = 0;
        job.cluster.key_packing = false;
    }
    let results = job.run_workers(2, move |w| {
        let mut out = Vec::new();
        for (i, c) in combos().into_iter().enumerate() {
            let name = format!("reduced.{i}");
            out.push(train(&w, c, &name, 17 + 1000 * w.rank() as u64 + i as u64));
        }
        w.barrier().unwrap();
        let all = all_keys();
        let held: Vec<Vec<f32>> = (0..combos().len())
            .map(|i| {
                let t = w
                    .declare_table(
                        TableSpec::new(format!("reduced.{i}"), DIM as u32)
                            .value_codec(combos()[i].codec),
                    )
                    .unwrap();
                by_index(&all, &w.pull(t, &all).unwrap())
            })
            .collect();
        let stats = w.reducer_stats();
        w.finish().unwrap();
        (out, held, stats)
    });
    for (_, _, stats) in &results {
        if keys_reduced {
            assert!(stats.key_cached.sections > 0, "lists went by signature");
            assert!(stats.key_delta_bitpack.sections > 0, "lists went packed");
        } else {
            assert_eq!(stats.key_cached.sections, 0);
            assert_eq!(stats.key_delta_bitpack.sections, 0);
        }
    }
    for (i, c) in combos().into_iter().enumerate() {
        let held = &results[0].1[i];
        assert_eq!(held, &results[1].1[i], "both workers pull the same values");
        let outcomes: Vec<&Outcome> = results.iter().map(|r| &r.0[i]).collect();
        if c.significant {
            assert!(
                outcomes.iter().any(|o| o.delayed > 0),
                "{c:?}: nothing held back"
            );
        }
        if c.kkt {
            assert!(
                outcomes.iter().any(|o| o.dropped > 0),
                "{c:?}: nothing skipped"
            );
        }
        let rel = rounding(c.codec);
        for (j, &h) in held.iter().enumerate() {
            let sum: f64 = outcomes.iter().map(|o| o.pushed[j]).sum();
            let size: f64 = outcomes.iter().map(|o| o.magnitude[j]).sum();
            // Each pushed value is rounded once by the codec, the servers sum in f32, and the
            // pull that reads the sum back rounds it once more.
            let bound = (rel + 1e-5) * size + rel * f64::from(h.abs()) + 1e-5;
            assert!(
                (f64::from(h) - sum).abs() <= bound,
                "{c:?} keys reduced {keys_reduced}, coordinate {j}: server {h}, pushed {sum}"
            );
            for o in &outcomes {
                if let Some(copy) = &o.copy {
                    // The worker's copy lags by at most θ (plus the rounding of what it got).
                    let lag = f64::from(CHANGED_THETA) * 1.01 + 2.0 * rel;
                    let off = f64::from((copy[j] - h).abs());
                    assert!(
                        off <= lag * f64::from(h.abs()).max(1e-6) + 1e-5,
                        "{c:?}: copy {} vs server {h} at coordinate {j}",
                        copy[j]
                    );
                }
            }
        }
    }
    job.join();
}

#[test]
fn every_combination_with_key_caching_and_packing_delivers_the_pushed_sum() {
    every_combination(true);
}

#[test]
fn every_combination_without_key_reducers_delivers_the_pushed_sum() {
    every_combination(false);
}
