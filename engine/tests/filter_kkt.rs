//! KKT filter: never drops a coordinate that could move, drops the ones that cannot, keeps
//! everything on recheck rounds.

use ferrops_engine::filter::{FilterError, KktFilter};
use proptest::prelude::*;

#[test]
fn first_round_and_every_recheck_keep_everything() {
    let mut f = KktFilter::new(1, 1.0, 0.1, 3).unwrap();
    let keys = [1, 2, 3];
    let w = [0.0, 0.0, 0.5];
    let g = [0.1, 2.0, 0.0];
    let mut kept = vec![];
    for _ in 0..7 {
        let recheck = f.next_is_recheck();
        let sel = f.select(&keys, &w, &g).unwrap();
        assert_eq!(recheck, sel.len() == 3);
        kept.push(sel);
    }
    assert_eq!(kept[0], [0, 1, 2]);
    assert_eq!(kept[1], [1, 2]);
    assert_eq!(kept[2], [1, 2]);
    assert_eq!(kept[3], [0, 1, 2]);
    assert_eq!(kept[6], [0, 1, 2]);
    assert_eq!(f.rounds(), 7);
    let c = f.counts();
    assert_eq!((c.offered, c.sent, c.dropped), (21, 17, 4));
}

#[test]
fn margin_and_nan() {
    let mut f = KktFilter::new(1, 1.0, 0.5, u64::MAX).unwrap();
    f.select(&[], &[], &[]).unwrap(); // the first round is a recheck
                                      // |g| = 0.6 > λ(1 - margin) = 0.5: kept although inside [-λ, λ]; NaN kept.
    let sel = f
        .select(
            &[1, 2, 3, 4],
            &[0.0, 0.0, 0.0, f32::NAN],
            &[0.6, 0.5, f32::NAN, 0.0],
        )
        .unwrap();
    assert_eq!(sel, [0, 2, 3]);
}

#[test]
fn rows_are_kept_if_any_coordinate_is_active() {
    let mut f = KktFilter::new(2, 1.0, 0.0, 100).unwrap();
    f.select(&[], &[], &[]).unwrap();
    let sel = f
        .select(
            &[5, 6, 7],
            &[0.0, 0.0, 0.0, 0.3, 0.0, 0.0],
            &[0.1, 0.2, 0.1, 0.1, 0.1, 3.0],
        )
        .unwrap();
    assert_eq!(sel, [1, 2]);
}

#[test]
fn bad_arguments() {
    assert!(KktFilter::new(0, 1.0, 0.1, 1).is_err());
    assert!(KktFilter::new(1, -1.0, 0.1, 1).is_err());
    assert!(KktFilter::new(1, 1.0, 1.5, 1).is_err());
    assert!(KktFilter::new(1, 1.0, 0.1, 0).is_err());
    let mut f = KktFilter::new(1, 1.0, 0.1, 2).unwrap();
    assert!(matches!(
        f.select(&[1, 2], &[0.0], &[0.0, 0.0]),
        Err(FilterError::Length {
            what: "weights",
            ..
        })
    ));
    assert!(matches!(
        f.select(&[2, 1], &[0.0; 2], &[0.0; 2]),
        Err(FilterError::Unsorted { .. })
    ));
    assert_eq!(f.rounds(), 0, "a refused call is not a round");
}

proptest! {
    #[test]
    fn never_drops_a_movable_coordinate(
        rows in prop::collection::vec(
            (prop_oneof![Just(0.0f32), -1.0f32..1.0], -3.0f32..3.0), 0..200),
        l1 in 0.0f32..2.0,
        margin in 0.0f32..1.0,
        every in 1u64..5,
        rounds in 1usize..8,
    ) {
        let keys: Vec<u64> = (0..rows.len() as u64).collect();
        let w: Vec<f32> = rows.iter().map(|r| r.0).collect();
        let g: Vec<f32> = rows.iter().map(|r| r.1).collect();
        let mut f = KktFilter::new(1, l1, margin, every).unwrap();
        for round in 0..rounds {
            let sel = f.select(&keys, &w, &g).unwrap();
            if (round as u64).is_multiple_of(every) {
                prop_assert_eq!(sel.len(), keys.len());
                continue;
            }
            for i in 0..keys.len() {
                let kept = sel.binary_search(&(i as u32)).is_ok();
                if w[i] != 0.0 || g[i].abs() > l1 {
                    prop_assert!(kept, "dropped w={} g={}", w[i], g[i]);
                }
                // Exactly the skippable ones are dropped.
                prop_assert_eq!(kept, !(w[i] == 0.0 && g[i].abs() <= l1 * (1.0 - margin)));
            }
        }
    }
}
