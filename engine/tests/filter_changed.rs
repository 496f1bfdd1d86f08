//! ChangedSince: pulls return only what moved, never-seen keys always go, and the worker's copy
//! stays within the threshold of the server's values.

use std::collections::BTreeMap;

use ferrops_engine::filter::changed::changed_rows;
use ferrops_engine::filter::{ChangedSince, FilterError};
use proptest::prelude::*;

#[test]
fn first_pull_sends_everything_then_only_changes() {
    let mut c = ChangedSince::new(1, 0.1, 1e-3).unwrap();
    assert_eq!(c.select(&[1, 2, 3], &[1.0, 2.0, 3.0]).unwrap(), [0, 1, 2]);
    assert_eq!(c.select(&[1, 2, 3], &[1.05, 2.5, 3.0]).unwrap(), [1]);
    // Key 1 drifts further: measured against what the worker holds (1.0), not the last value.
    assert_eq!(c.select(&[1, 2, 3], &[1.12, 2.5, 3.0]).unwrap(), [0]);
    // A new key, and a forgotten one, count as changed.
    c.forget(&[3]);
    assert_eq!(c.select(&[3, 4], &[3.0, 0.0]).unwrap(), [0, 1]);
    assert_eq!(c.tracked_keys(), 4);
    let n = c.counts();
    assert_eq!((n.offered, n.sent, n.dropped), (11, 7, 4));
    c.reset();
    assert_eq!(c.tracked_keys(), 0);
}

#[test]
fn whole_rows_and_nan() {
    let mut c = ChangedSince::new(2, 0.5, 1.0).unwrap();
    c.select(&[1, 2], &[0.0; 4]).unwrap();
    assert_eq!(c.select(&[1, 2], &[0.0, 0.7, 0.1, 0.1]).unwrap(), [0]);
    assert_eq!(c.select(&[1, 2], &[0.0, 0.7, f32::NAN, 0.1]).unwrap(), [1]);
    // Infinite values are sent the first time too.
    let mut c = ChangedSince::new(1, 0.5, 1.0).unwrap();
    assert_eq!(c.select(&[1], &[f32::INFINITY]).unwrap(), [0]);
}

#[test]
fn pure_helper_and_errors() {
    let (mut d, mut out) = (vec![], vec![]);
    changed_rows(
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 2.0, 3.0, 9.0],
        2,
        0.1,
        1e-3,
        &mut d,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [1]);
    assert!(changed_rows(&[1.0; 3], &[1.0; 3], 2, 0.1, 0.0, &mut d, &mut out).is_err());
    assert!(changed_rows(&[1.0; 2], &[1.0; 4], 2, 0.1, 0.0, &mut d, &mut out).is_err());
    let mut c = ChangedSince::new(1, 0.1, 0.0).unwrap();
    assert!(matches!(
        c.select(&[1, 2], &[0.0]),
        Err(FilterError::Length {
            what: "current",
            ..
        })
    ));
    assert!(ChangedSince::new(0, 0.1, 0.0).is_err());
    assert!(ChangedSince::new(1, -0.1, 0.0).is_err());
}

proptest! {
    #[test]
    fn worker_copy_stays_within_threshold(
        steps in prop::collection::vec(prop::collection::vec((0u64..30, -10.0f32..10.0), 0..30), 1..20),
        theta in 0.0f32..0.5,
    ) {
        let eps = 1e-2f32;
        let mut server: BTreeMap<u64, f32> = BTreeMap::new();
        let mut worker: BTreeMap<u64, f32> = BTreeMap::new();
        let mut c = ChangedSince::new(1, theta, eps).unwrap();
        for step in steps {
            for (k, v) in step {
                server.insert(k, v);
            }
            let keys: Vec<u64> = server.keys().copied().collect();
            let cur: Vec<f32> = server.values().copied().collect();
            let sel = c.select(&keys, &cur).unwrap();
            for &i in &sel {
                worker.insert(keys[i as usize], cur[i as usize]);
            }
            for (i, k) in keys.iter().enumerate() {
                let held = worker.get(k);
                prop_assert!(held.is_some(), "key {} never sent", k);
                let diff = (cur[i] - held.unwrap()).abs();
                prop_assert!(diff <= theta * cur[i].abs().max(eps), "key {}: {} vs {}", k, cur[i], held.unwrap());
                // Unsent keys were unchanged enough; sent ones are exact.
                if sel.binary_search(&(i as u32)).is_ok() {
                    prop_assert_eq!(diff, 0.0);
                }
            }
        }
    }
}
