//! Every bandwidth reducer at once, through real connections: the significantly-modified filter
//! delays updates, keys travel cached or packed, values as bf16 — and after a final flush the
//! servers hold the sum of everything the workers offered, up to bf16 rounding.

mod common;

use ferrops_engine::filter::significant::SigFilter;
use ferrops_engine::TableSpec;
use ferrops_net::codec::ValueCodec;

/// A small deterministic generator for the test's updates.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn the_server_ends_with_the_sum_of_everything_offered() {
    const KEYS: u64 = 3000;
    const ROUNDS: usize = 40;
    let job = common::start(2, 2);
    let offered = job.run_workers(2, |w| {
        let spec = TableSpec::new("reduced", 2).value_codec(ValueCodec::Bf16);
        let t = w.declare_table(spec).unwrap();
        let mut filter = SigFilter::new(2, 0.5, 1e-3).unwrap();
        let mut rng = 17 + w.rank() as u64;
        let mut offered = vec![0.0f64; KEYS as usize * 2];
        for _ in 0..ROUNDS {
            // A random subset of a power-law-ish key range, sorted and unique.
            let mut keys: Vec<u64> = (0..400)
                .map(|_| next(&mut rng) % (next(&mut rng) % KEYS + 1))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let updates: Vec<f32> = (0..keys.len() * 2)
                .map(|_| (next(&mut rng) % 64) as f32 / 64.0 - 0.5)
                .collect();
            for (i, &k) in keys.iter().enumerate() {
                offered[k as usize * 2] += f64::from(updates[2 * i]);
                offered[k as usize * 2 + 1] += f64::from(updates[2 * i + 1]);
            }
            let weights = w.pull(t, &keys).unwrap();
            let (send_keys, send_values) = filter.offer(&keys, &updates, &weights).unwrap();
            if !send_keys.is_empty() {
                w.push(t, &send_keys, &send_values).unwrap();
            }
        }
        let (rest_keys, rest_values) = filter.flush();
        if !rest_keys.is_empty() {
            w.push(t, &rest_keys, &rest_values).unwrap();
        }
        let counts = filter.counts();
        assert!(
            counts.delayed > 0,
            "the filter held something back: {counts:?}"
        );
        w.barrier().unwrap();
        let all: Vec<u64> = (0..KEYS).collect();
        let held = w.pull(t, &all).unwrap();
        w.finish().unwrap();
        (offered, held)
    });
    let (held, mut total) = (offered[0].1.clone(), vec![0.0f64; KEYS as usize * 2]);
    for (o, _) in &offered {
        for (t, v) in total.iter_mut().zip(o) {
            *t += v;
        }
    }
    for (i, (&h, &t)) in held.iter().zip(&total).enumerate() {
        // Every push is rounded to bf16 (8 significant bits) before it is summed.
        let pushes = (2 * ROUNDS) as f64;
        let bound = 2f64.powi(-8) * (t.abs() + pushes * 0.5) + 1e-6;
        assert!(
            (f64::from(h) - t).abs() <= bound,
            "coordinate {i}: server {h}, offered {t}"
        );
    }
    job.join();
}
