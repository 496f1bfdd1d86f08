//! Push/pull semantics across several servers, checked against values computed here.

mod common;

use ferrops_engine::{Consistency, EngineError, TableSpec};
use ferrops_kernels::Rule;
use ferrops_net::Status;

fn spread_keys(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * (u64::MAX / n)).collect()
}

#[test]
fn pushes_from_every_worker_are_summed_across_servers() {
    let job = common::start(3, 2);
    let results = job.run_workers(2, |w| {
        let t = w.declare_table(TableSpec::new("w", 2)).unwrap();
        let keys = spread_keys(1000);
        let vals: Vec<f32> = (0..2000).map(|i| i as f32).collect();
        w.push(t, &keys, &vals).unwrap();
        w.barrier().unwrap();
        let got = w.pull(t, &keys).unwrap();
        w.finish().unwrap();
        got
    });
    for got in results {
        let expected: Vec<f32> = (0..2000).map(|i| 2.0 * i as f32).collect();
        assert_eq!(got, expected);
    }
    let (summary, reports) = job.join();
    assert_eq!(summary.workers_done, 2);
    let keys_held: u64 = reports.iter().map(|r| r.tables[0].1.keys).sum();
    assert_eq!(keys_held, 1000, "every key is held by exactly one server");
    assert!(reports
        .iter()
        .all(|r| r.tables[0].1.values_bytes >= r.tables[0].1.keys * 8));
    assert_eq!(
        reports.iter().map(|r| r.pushes).sum::<u64>(),
        6,
        "2 workers × 3 servers"
    );
}

#[test]
fn async_and_zero_copy_forms_agree_with_blocking_ones() {
    let sgd = TableSpec::new("sgd", 1).rule(Rule::Sgd { lr: 0.5 });
    common::with_one_worker_and_table(2, sgd, |w, t| {
        let keys = spread_keys(300);
        let grads = vec![2.0f32; 300];
        let tickets: Vec<_> = (0..3)
            .map(|_| w.push_async(t, &keys, &grads).unwrap())
            .collect();
        for ticket in tickets {
            w.wait(ticket).unwrap();
        }
        let mut out = vec![f32::NAN; 300];
        w.pull_into(t, &keys, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == -3.0), "3 × (−0.5 × 2)");
        let buf = Vec::with_capacity(300);
        let ticket = w.pull_async_into(t, &keys[..10], buf).unwrap();
        assert_eq!(w.wait_pull(ticket).unwrap(), vec![-3.0; 10]);
    });
}

#[test]
fn bad_requests_are_typed_errors_and_the_server_keeps_serving() {
    common::with_one_worker_and_table(1, TableSpec::new("t", 2), |w, t| {
        assert!(matches!(
            w.push(t, &[3, 1], &[0.0; 4]),
            Err(EngineError::Keys(_))
        ));
        assert!(matches!(
            w.push(t, &[1, 1], &[0.0; 4]),
            Err(EngineError::Keys(_))
        ));
        assert!(matches!(
            w.push(t, &[1, 2], &[0.0; 3]),
            Err(EngineError::Keys(_))
        ));
        let bogus = ferrops_engine::TableId(99);
        assert!(matches!(
            w.pull(bogus, &[1]),
            Err(EngineError::UnknownTable(99))
        ));
        let clash = w.declare_table(TableSpec::new("t", 3));
        assert!(matches!(clash, Err(EngineError::Refused(_))), "{clash:?}");
        w.push(t, &[1, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(w.pull(t, &[2]).unwrap(), vec![3.0, 4.0]);
    });
    let _ = Status::Ok;
}

#[test]
fn sequential_pulls_see_every_push_of_the_previous_clock() {
    let workers = 3;
    let job = common::start(2, workers);
    let results = job.run_workers(workers, move |w| {
        let spec = TableSpec::new("bsp", 1).consistency(Consistency::Sequential);
        let t = w.declare_table(spec).unwrap();
        let keys = spread_keys(64);
        let mut seen = Vec::new();
        for clock in 0..5u32 {
            // Keys on different servers may differ by pushes of the current clock that one server
            // has applied and the other not yet; each must lie in the allowed window.
            let got = w.pull(t, &keys).unwrap();
            seen.push(got.iter().copied().fold(f32::INFINITY, f32::min));
            seen.push(got.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            // Stagger the workers so a missing wait would show.
            std::thread::sleep(std::time::Duration::from_millis(
                5 * w.rank() as u64 * clock as u64,
            ));
            w.push(t, &keys, &vec![1.0; 64]).unwrap();
            w.clock().unwrap();
        }
        w.finish().unwrap();
        seen
    });
    for seen in results {
        for (i, &v) in seen.iter().enumerate() {
            let t = i / 2;
            // Every push of clocks < t, and none of this worker's own clock-t push; other
            // workers may already have pushed for clock t, never for t + 1.
            let (lo, hi) = (t * workers, (t + 1) * workers - 1);
            assert!(
                (lo as f32..=hi as f32).contains(&v),
                "pull at clock {t} saw {v}, outside [{lo}, {hi}]: {seen:?}"
            );
        }
    }
    job.join();
}

#[test]
fn a_key_list_sent_before_travels_as_its_signature() {
    common::with_one_worker_and_table(2, TableSpec::new("cached", 1), |w, t| {
        let keys = spread_keys(5000);
        let ones = vec![1.0f32; 5000];
        w.push(t, &keys, &ones).unwrap();
        let after_first = w.metrics().key_bytes_sent;
        assert_eq!(after_first, 5000 * 8, "the first push sends every key once");
        for _ in 0..3 {
            w.push(t, &keys, &ones).unwrap();
        }
        let pulled = w.pull(t, &keys).unwrap();
        assert_eq!(
            w.metrics().key_bytes_sent,
            after_first,
            "later requests send no keys"
        );
        let saved = w.reducer_stats().key_cached;
        assert_eq!(
            (saved.sections, saved.before, saved.after),
            (8, 4 * 5000 * 8, 0),
            "3 pushes and 1 pull to 2 servers went by signature"
        );
        assert!(
            pulled.iter().all(|&v| v == 4.0),
            "and are applied to the right keys"
        );
        // A different list (a shifted window) is sent in full once, then cached too.
        let other: Vec<u64> = keys.iter().map(|k| k + 1).collect();
        w.push(t, &other, &ones).unwrap();
        w.push(t, &other, &ones).unwrap();
        assert_eq!(w.metrics().key_bytes_sent, 2 * after_first);
        assert_eq!(w.pull(t, &other).unwrap(), vec![2.0; 5000]);
    });
}

#[test]
fn sharded_servers_split_their_range_between_shards() {
    let job = common::start_sharded(2, 2, 2);
    job.run_workers(2, |w| {
        assert_eq!(w.routing().ranges.len(), 4, "2 servers × 2 shards");
        let t = w.declare_table(TableSpec::new("sharded", 1)).unwrap();
        let keys = spread_keys(4000);
        w.push(t, &keys, &vec![1.0; 4000]).unwrap();
        w.barrier().unwrap();
        assert_eq!(w.pull(t, &keys).unwrap(), vec![2.0; 4000]);
        w.finish().unwrap();
    });
    let (_, reports) = job.join();
    assert_eq!(reports.len(), 2);
    let mut total = 0;
    for r in &reports {
        assert_eq!(
            r.tables.len(),
            2,
            "each shard holds the table for its own range"
        );
        assert!(
            r.tables.iter().all(|(_, m)| m.keys >= 990),
            "{:?}",
            r.tables
        );
        total += r.tables.iter().map(|(_, m)| m.keys).sum::<u64>();
    }
    assert_eq!(total, 4000, "every key is held by exactly one shard");
}

#[test]
fn dense_tables_spread_over_every_shard_and_reject_keys_past_their_end() {
    let job = common::start_sharded(2, 2, 1);
    job.run_workers(1, |w| {
        let t = w
            .declare_table(TableSpec::dense("dense", 3, 10_000).rule(Rule::Sgd { lr: 1.0 }))
            .unwrap();
        let keys: Vec<u64> = (0..10_000).collect();
        let grads: Vec<f32> = (0..30_000).map(|i| -(i as f32)).collect();
        w.push(t, &keys, &grads).unwrap();
        let mut out = vec![0.0; 30_000];
        w.pull_into(t, &keys, &mut out).unwrap();
        assert!(
            out.iter().enumerate().all(|(i, &v)| v == i as f32),
            "w -= 1.0 × (−i)"
        );
        assert_eq!(
            w.pull(t, &[9_999]).unwrap(),
            vec![29_997.0, 29_998.0, 29_999.0]
        );
        assert!(matches!(w.pull(t, &[10_000]), Err(EngineError::Keys(_))));
        w.finish().unwrap();
    });
    let (_, reports) = job.join();
    let held: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.tables.iter().map(|(_, m)| m.keys))
        .collect();
    assert_eq!(
        held,
        vec![2_500; 4],
        "each of the 4 shards holds a quarter, no key map needed"
    );
    for r in &reports {
        for (_, m) in &r.tables {
            assert!(m.values_bytes >= 2_500 * 3 * 4);
        }
    }
}

#[test]
fn compressed_keys_and_values_arrive_intact_in_fewer_bytes() {
    use ferrops_net::codec::ValueCodec;
    common::with_one_worker(2, |w| {
        // Keys close together (a window of a feature space) pack well; fp16 halves values.
        let keys: Vec<u64> = (0..4000u64).map(|i| 1_000_000 + 3 * i).collect();
        let values: Vec<f32> = (0..4000).map(|i| (i % 100) as f32 * 0.25).collect();
        let half = w
            .declare_table(TableSpec::new("fp16", 1).value_codec(ValueCodec::Fp16))
            .unwrap();
        let before = w.metrics();
        w.push(half, &keys, &values).unwrap();
        let sent = w.metrics();
        assert!(
            sent.key_bytes_sent - before.key_bytes_sent < 4000 * 8 / 4,
            "keys packed"
        );
        assert_eq!(
            sent.value_bytes_sent - before.value_bytes_sent,
            4000 * 2,
            "fp16 values"
        );
        // Multiples of 0.25 below 25 are exact in fp16: nothing may be lost.
        assert_eq!(w.pull(half, &keys).unwrap(), values);
        let lz4 = w
            .declare_table(TableSpec::new("lz4", 1).value_codec(ValueCodec::Lz4))
            .unwrap();
        let noisy: Vec<f32> = (0..4000).map(|i| (i as f32).sin() * 1e-3 + 1.0).collect();
        w.push(lz4, &keys, &noisy).unwrap();
        assert_eq!(w.pull(lz4, &keys).unwrap(), noisy, "lz4 is lossless");
    });
}

#[test]
fn planar_inputs_are_split_per_array_across_servers() {
    // w ← S_{λ/(h+δ)}(w − g/(h+δ)) with λ = 0, δ = 0: w = −g/h per coordinate.
    let rule = Rule::ScaledProxL1 {
        l1: 0.0,
        delta: 0.0,
    };
    common::with_one_worker_and_table(2, TableSpec::new("prox", 1).rule(rule), |w, t| {
        let keys = spread_keys(10);
        let g: Vec<f32> = (1..=10).map(|i| i as f32).collect();
        let h = vec![2.0f32; 10];
        let planar: Vec<f32> = g.iter().chain(&h).copied().collect();
        w.push(t, &keys, &planar).unwrap();
        let expected: Vec<f32> = g.iter().map(|x| -x / 2.0).collect();
        assert_eq!(
            w.pull(t, &keys).unwrap(),
            expected,
            "each server got its g and its h"
        );
    });
}

#[test]
fn selected_pushes_change_only_the_chosen_keys_and_keep_the_list_cached() {
    common::with_one_worker_and_table(2, TableSpec::new("masked", 2), |w, t| {
        let keys = spread_keys(1000);
        // Every third key, across both servers; values for those only.
        let pick: Vec<u32> = (0..1000).step_by(3).collect();
        let values: Vec<f32> = pick.iter().flat_map(|&i| [i as f32, 1.0]).collect();
        w.push_selected(t, &keys, &pick, &values).unwrap();
        let key_bytes = w.metrics().key_bytes_sent;
        let other: Vec<u32> = (1..1000).step_by(3).collect();
        let ones = vec![1.0f32; other.len() * 2];
        w.push_selected(t, &keys, &other, &ones).unwrap();
        assert_eq!(
            w.metrics().key_bytes_sent,
            key_bytes,
            "same list, new selection: cached"
        );
        let got = w.pull(t, &keys).unwrap();
        for i in 0..1000usize {
            let expected = match i % 3 {
                0 => [i as f32, 1.0],
                1 => [1.0, 1.0],
                _ => [0.0, 0.0],
            };
            assert_eq!(&got[2 * i..2 * i + 2], &expected, "key {i}");
        }
        let refused: [(&[u32], &[f32], &str); 3] = [
            (&[5, 3], &[0.0; 4], "not ascending"),
            (&[1000], &[0.0; 2], "out of range"),
            (&[1, 2], &[0.0; 2], "value count"),
        ];
        for (selection, values, why) in refused {
            assert!(
                w.push_selected(t, &keys, selection, values).is_err(),
                "{why}"
            );
        }
    });
}

#[test]
fn changed_only_pulls_send_the_rows_that_moved() {
    common::with_one_worker_and_table(2, TableSpec::new("changed", 2), |w, t| {
        let keys = spread_keys(1000);
        w.push(t, &keys, &vec![1.0; 2000]).unwrap();
        let mut view = vec![0.0f32; 2000];
        w.pull_changed_into(t, &keys, &mut view, 0.01).unwrap();
        assert_eq!(view, vec![1.0; 2000], "a first pull sends every row");
        let before = w.metrics().value_bytes_received;
        w.pull_changed_into(t, &keys, &mut view, 0.01).unwrap();
        assert_eq!(
            w.metrics().value_bytes_received,
            before,
            "nothing moved, nothing sent"
        );
        // Key 7 moves a lot, key 9 by less than 1%: only key 7's row travels.
        w.push(t, &[keys[7], keys[9]], &[5.0, 5.0, 0.001, 0.0])
            .unwrap();
        w.pull_changed_into(t, &keys, &mut view, 0.01).unwrap();
        assert_eq!(
            w.metrics().value_bytes_received - before,
            2 * 4,
            "one row of 2 floats"
        );
        assert_eq!(&view[14..16], &[6.0, 6.0]);
        assert_eq!(
            &view[18..20],
            &[1.0, 1.0],
            "within θ: the worker keeps its copy"
        );
        assert_eq!(
            w.pull(t, &[keys[9]]).unwrap(),
            vec![1.001, 1.0],
            "the server has it"
        );
        // Three changed-only pulls of 1000 rows: all, none, then one.
        let c = w.reducer_stats().changed_since;
        assert_eq!((c.offered, c.sent, c.delayed), (3000, 1001, 1999), "{c:?}");
    });
}

#[test]
fn pushes_from_several_threads_of_one_worker_are_each_applied_once() {
    common::with_one_worker_and_table(2, TableSpec::new("sum", 1), |w, t| {
        let keys = [7, u64::MAX - 7];
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..300 {
                        w.push(t, &keys, &[1.0, 1.0]).unwrap();
                    }
                });
            }
        });
        assert_eq!(w.pull(t, &keys).unwrap(), vec![1200.0, 1200.0]);
    });
}

/// Payload checksums are off by default; a job that turns them on (every node: workers,
/// servers, scheduler) still pushes and pulls bulk lists exactly, by slice and by `KeyList`.
#[test]
fn a_job_with_payload_checksums_on_pushes_and_pulls_exactly() {
    let job = common::start_configured(2, 1, |c| c.payload_checksum = true, |_, _| {});
    let results = job.run_workers(1, |w| {
        let t = w.declare_table(TableSpec::new("w", 1)).unwrap();
        let keys = spread_keys(5000);
        let list = ferrops_engine::KeyList::new(keys.clone()).unwrap();
        let vals: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        w.push(t, &keys, &vals).unwrap();
        w.push_list(t, &list, &vals).unwrap();
        let mut out = vec![0.0f32; 5000];
        w.pull_list_into(t, &list, &mut out).unwrap();
        let by_slice = w.pull(t, &keys).unwrap();
        w.finish().unwrap();
        (out, by_slice)
    });
    let (out, by_slice) = &results[0];
    let expected: Vec<f32> = (0..5000).map(|i| 2.0 * i as f32).collect();
    assert_eq!(out, &expected);
    assert_eq!(by_slice, &expected);
    job.join();
}
