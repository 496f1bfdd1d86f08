//! Significantly-modified filter: nothing is lost (sent sums equal offered sums after a flush),
//! nothing is invented, selection follows the threshold, and the pending bound holds.

use std::collections::BTreeMap;

use ferrops_engine::filter::{FilterError, SigFilter};
use proptest::prelude::*;

#[test]
fn small_changes_wait_large_ones_go() {
    let mut f = SigFilter::new(1, 0.1, 1e-3).unwrap();
    let w = [1.0, 1.0, 1.0];
    let (k, v) = f.offer(&[1, 2, 3], &[0.05, 0.5, -0.2], &w).unwrap();
    assert_eq!(k, [2, 3]);
    assert_eq!(v, [0.5, -0.2]);
    assert_eq!(f.pending(1), Some(&[0.05][..]));
    // Key 1 accumulates past the threshold and goes with its whole residual.
    let (k, v) = f.offer(&[1], &[0.06], &[1.0]).unwrap();
    assert_eq!(k, [1]);
    assert!((v[0] - 0.11).abs() < 1e-6);
    assert_eq!(f.pending_keys(), 0);
    let c = f.counts();
    assert_eq!((c.offered, c.sent, c.delayed, c.dropped), (4, 3, 1, 0));
}

#[test]
fn whole_row_goes_when_one_coordinate_is_significant() {
    let mut f = SigFilter::new(3, 0.5, 1e-3).unwrap();
    let (k, v) = f
        .offer(&[10, 20], &[0.1, 0.1, 0.9, 0.1, 0.1, 0.1], &[1.0; 6])
        .unwrap();
    assert_eq!(k, [10]);
    assert_eq!(v, [0.1, 0.1, 0.9]);
    let (k, v) = f.flush();
    assert_eq!(k, [20]);
    assert_eq!(v, [0.1, 0.1, 0.1]);
    assert_eq!(f.pending_bytes(), 0);
}

#[test]
fn nan_is_always_sent() {
    let mut f = SigFilter::new(1, 10.0, 1.0).unwrap();
    let (k, v) = f.offer(&[1, 2], &[f32::NAN, 0.1], &[1.0, 1.0]).unwrap();
    assert_eq!(k, [1]);
    assert!(v[0].is_nan());
}

#[test]
fn bad_calls_change_nothing() {
    let mut f = SigFilter::new(2, 0.1, 1e-3).unwrap();
    assert!(matches!(
        f.offer(&[2, 1], &[0.0; 4], &[0.0; 4]),
        Err(FilterError::Unsorted { index: 1 })
    ));
    assert!(matches!(
        f.offer(&[1, 1], &[0.0; 4], &[0.0; 4]),
        Err(FilterError::Unsorted { index: 1 })
    ));
    assert!(matches!(
        f.offer(&[1, 2], &[0.0; 3], &[0.0; 4]),
        Err(FilterError::Length {
            what: "updates",
            ..
        })
    ));
    assert!(matches!(
        f.offer(&[1, 2], &[0.0; 4], &[0.0; 5]),
        Err(FilterError::Length {
            what: "weights",
            ..
        })
    ));
    assert_eq!(f.pending_keys(), 0);
    assert!(SigFilter::new(0, 0.1, 0.0).is_err());
    assert!(SigFilter::new(1, -1.0, 0.0).is_err());
    assert!(SigFilter::new(1, f32::NAN, 0.0).is_err());
    assert!(SigFilter::new(1, 0.1, f32::INFINITY).is_err());
}

#[test]
fn pending_bound_forces_the_offer_out() {
    let mut f = SigFilter::new(1, 100.0, 1.0).unwrap().with_max_pending(4);
    let (k, _) = f.offer(&[1, 2, 3], &[0.1; 3], &[1.0; 3]).unwrap();
    assert!(k.is_empty());
    // Two more keys would make five pending: the whole offer is sent instead.
    let (k, v) = f.offer(&[3, 4, 5], &[0.1; 3], &[1.0; 3]).unwrap();
    assert_eq!(k, [3, 4, 5]);
    assert!((v[0] - 0.2).abs() < 1e-6);
    assert_eq!(f.pending_keys(), 2);
}

/// One offer: ascending unique keys from a small space, updates, weights.
fn offers(dim: usize) -> impl Strategy<Value = Vec<(Vec<u64>, Vec<f32>, Vec<f32>)>> {
    let offer = prop::collection::btree_set(0u64..40, 0..20).prop_flat_map(move |keys| {
        let n = keys.len() * dim;
        (
            Just(keys.into_iter().collect::<Vec<_>>()),
            prop::collection::vec(-1.0f32..1.0, n),
            prop::collection::vec(prop_oneof![Just(0.0f32), -5.0f32..5.0], n),
        )
    });
    prop::collection::vec(offer, 0..30)
}

fn check_conservation(
    dim: usize,
    theta: f32,
    max_pending: usize,
    offers: &[(Vec<u64>, Vec<f32>, Vec<f32>)],
) -> Result<(), TestCaseError> {
    let mut f = SigFilter::new(dim, theta, 1e-2)
        .unwrap()
        .with_max_pending(max_pending);
    let mut offered: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut sent: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut abs: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let add = |m: &mut BTreeMap<u64, Vec<f64>>, k: u64, v: &[f32], take_abs: bool| {
        let e = m.entry(k).or_insert_with(|| vec![0.0; dim]);
        for (a, &b) in e.iter_mut().zip(v) {
            *a += if take_abs { (b as f64).abs() } else { b as f64 };
        }
    };
    for (keys, upd, w) in offers {
        for (k, u) in keys.iter().zip(upd.chunks(dim)) {
            add(&mut offered, *k, u, false);
            add(&mut abs, *k, u, true);
        }
        let (sk, sv) = f.offer(keys, upd, w).unwrap();
        prop_assert!(sk.windows(2).all(|p| p[0] < p[1]));
        prop_assert_eq!(sv.len(), sk.len() * dim);
        for (k, v) in sk.iter().zip(sv.chunks(dim)) {
            prop_assert!(
                keys.binary_search(k).is_ok(),
                "sent key {} not in this offer",
                k
            );
            add(&mut sent, *k, v, false);
        }
        prop_assert!(f.pending_keys() <= max_pending);
    }
    let (fk, fv) = f.flush();
    prop_assert!(fk.windows(2).all(|p| p[0] < p[1]));
    for (k, v) in fk.iter().zip(fv.chunks(dim)) {
        add(&mut sent, *k, v, false);
    }
    prop_assert_eq!(f.pending_keys(), 0);
    for k in sent.keys() {
        prop_assert!(offered.contains_key(k), "key {} sent but never offered", k);
    }
    for (k, o) in &offered {
        let s = sent.get(k).cloned().unwrap_or_else(|| vec![0.0; dim]);
        for j in 0..dim {
            // f32 accumulation: a relative error of a few ulps of the absolute sum.
            let tol = abs[k][j] * 1e-5 + 1e-30;
            prop_assert!(
                (s[j] - o[j]).abs() <= tol,
                "key {} coord {}: sent {} offered {}",
                k,
                j,
                s[j],
                o[j]
            );
        }
    }
    let c = f.counts();
    let total: u64 = offers.iter().map(|o| o.1.len() as u64).sum();
    prop_assert_eq!(c.offered, total);
    prop_assert_eq!(c.dropped, 0);
    Ok(())
}

proptest! {
    #[test]
    fn nothing_lost_nothing_invented_dim1(offers in offers(1), theta in 0.0f32..2.0) {
        check_conservation(1, theta, usize::MAX, &offers)?;
    }

    #[test]
    fn nothing_lost_nothing_invented_dim3(offers in offers(3), theta in 0.0f32..2.0) {
        check_conservation(3, theta, usize::MAX, &offers)?;
    }

    #[test]
    fn nothing_lost_under_a_pending_bound(offers in offers(2), theta in 0.0f32..2.0, bound in 0usize..30) {
        check_conservation(2, theta, bound, &offers)?;
    }

    #[test]
    fn selection_follows_the_threshold(upd in prop::collection::vec(-1.0f32..1.0, 1..50), theta in 0.0f32..1.0) {
        // A fresh filter: the residual is the update, so the choice is exactly the kernel's test.
        let mut f = SigFilter::new(1, theta, 1e-2).unwrap();
        let keys: Vec<u64> = (0..upd.len() as u64).collect();
        let w: Vec<f32> = keys.iter().map(|&k| (k as f32 - 20.0) * 0.1).collect();
        let (sk, _) = f.offer(&keys, &upd, &w).unwrap();
        for (i, &k) in keys.iter().enumerate() {
            let quiet = upd[i].abs() <= theta * w[i].abs().max(1e-2);
            let significant = !quiet;
            prop_assert_eq!(sk.binary_search(&k).is_ok(), significant);
        }
    }
}
