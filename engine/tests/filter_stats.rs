//! ReducerStats: recording, merging, serialization, and the filters' counters feeding it.

use ferrops_engine::filter::{FilterCounts, KktFilter, ReducerStats, SigFilter};
use ferrops_net::codec::{KeyCodec, ValueCodec};

#[test]
fn record_merge_and_round_trip() {
    let mut a = ReducerStats::default();
    a.record_keys(KeyCodec::DeltaBitpack, 800, 100);
    a.record_values(ValueCodec::Fp16, 400, 200);
    let mut sig = SigFilter::new(1, 0.5, 1e-3).unwrap();
    sig.offer(&[1, 2], &[1.0, 0.1], &[1.0, 1.0]).unwrap();
    a.significant = sig.counts();
    assert_eq!(
        a.significant,
        FilterCounts {
            offered: 2,
            sent: 1,
            delayed: 1,
            dropped: 0
        }
    );

    let mut b = ReducerStats::default();
    b.record_keys(KeyCodec::DeltaBitpack, 80, 20);
    b.record_values(ValueCodec::Lz4, 4000, 100);
    let mut kkt = KktFilter::new(1, 1.0, 0.0, 10).unwrap();
    kkt.select(&[1], &[0.0], &[0.5]).unwrap();
    kkt.select(&[1], &[0.0], &[0.5]).unwrap();
    b.kkt = kkt.counts();

    a.merge(&b);
    assert_eq!(a.key_delta_bitpack.sections, 2);
    assert_eq!(a.key_delta_bitpack.before, 880);
    assert_eq!(a.key_delta_bitpack.after, 120);
    assert!((a.key_delta_bitpack.ratio() - 880.0 / 120.0).abs() < 1e-12);
    assert_eq!(a.kkt.dropped, 1);
    assert_eq!(a.value_lz4.after, 100);
    assert_eq!(a.bytes().before, 880 + 400 + 4000);
    assert_eq!(a.bytes().after, 120 + 200 + 100);
    assert_eq!(ReducerStats::default().bytes().ratio(), 1.0);

    let bytes = postcard::to_allocvec(&a).unwrap();
    let back: ReducerStats = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
}

#[test]
fn merge_saturates() {
    let mut a = ReducerStats::default();
    a.significant.offered = u64::MAX;
    let b = a.clone();
    a.merge(&b);
    assert_eq!(a.significant.offered, u64::MAX);
}
