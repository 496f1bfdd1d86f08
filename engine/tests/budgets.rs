//! What a server refuses instead of failing: a table it cannot hold, and pulls of keys that
//! were never pushed (they read zeros and allocate nothing).

mod common;

use common::{start_configured, Job};
use ferrops_engine::{EngineError, TableSpec, Worker};

/// A job of two servers whose tables may each hold at most 1 MiB per array.
fn small_servers() -> Job {
    start_configured(2, 1, |_| {}, |_, cfg| cfg.table_capacity_bytes = 1 << 20)
}

#[test]
fn a_dense_table_no_server_can_hold_is_refused_with_its_reason_and_nothing_exits() {
    let job = small_servers();
    job.run_workers(1, |w: Worker| {
        // 4M keys of dim 1 over two servers: 8 MiB each, over their 1 MiB.
        let err = w
            .declare_table(TableSpec::dense("huge", 1, 4 << 20))
            .expect_err("a table over capacity is refused");
        let text = err.to_string();
        assert!(matches!(err, EngineError::Refused(_)), "{text}");
        assert!(text.contains("huge"), "the error names the table: {text}");
        assert!(
            text.contains("capacity") || text.contains("full"),
            "and why: {text}"
        );
        // Asking again gets the same answer, and the job goes on with a table that fits.
        let again = w.declare_table(TableSpec::dense("huge", 1, 4 << 20));
        assert!(again.is_err(), "still refused");
        let t = w
            .declare_table(TableSpec::dense("small", 1, 1000))
            .expect("a table that fits is created");
        let keys: Vec<u64> = (0..1000).collect();
        w.push(t, &keys, &vec![1.0; 1000]).unwrap();
        assert_eq!(w.pull(t, &keys).unwrap(), vec![1.0; 1000]);
        w.finish().expect("worker finishes");
    });
    let (_summary, reports) = job.join();
    assert_eq!(reports.len(), 2, "both servers ended cleanly");
}

#[test]
fn pulls_of_keys_never_pushed_read_zeros_and_allocate_nothing() {
    let job = small_servers();
    job.run_workers(1, |w: Worker| {
        let t = w.declare_table(TableSpec::new("sparse", 4)).unwrap();
        w.push(t, &[10, 20], &[1.0; 8]).unwrap();
        // Far more keys than the table could ever hold: nothing is allocated for them.
        let keys: Vec<u64> = (0..200_000u64)
            .map(|k| k * 2 + 1)
            .chain([u64::MAX / 2])
            .collect();
        for _ in 0..3 {
            let values = w.pull(t, &keys).unwrap();
            assert!(values.iter().all(|&v| v == 0.0));
        }
        let mixed = w.pull(t, &[5, 10, 15, 20]).unwrap();
        assert_eq!(mixed[..4], [0.0; 4]);
        assert_eq!(mixed[4..8], [1.0; 4]);
        assert_eq!(mixed[8..12], [0.0; 4]);
        assert_eq!(mixed[12..], [1.0; 4]);
        // A key pulled first and pushed later holds what was pushed.
        w.push(t, &[5], &[2.0; 4]).unwrap();
        assert_eq!(w.pull(t, &[5, 10]).unwrap()[..4], [2.0; 4]);
        w.finish().unwrap();
    });
    let (_summary, reports) = job.join();
    let keys: u64 = reports
        .iter()
        .flat_map(|r| r.tables.iter().map(|(_, m)| m.keys))
        .sum();
    assert_eq!(keys, 3, "only pushed keys hold storage");
}
