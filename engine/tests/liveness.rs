//! Heartbeats do not depend on what a node's own thread is doing: a server shard busy applying
//! one huge push, or a worker computing between calls, for longer than the heartbeat timeout,
//! is not declared dead. (The faults themselves — stopped and killed processes — are tested
//! over real processes in the `ferrops` package's `liveness` tests.)

mod common;

use std::time::{Duration, Instant};

use ferrops_engine::config::LivenessConfig;
use ferrops_engine::TableSpec;

/// Heartbeats every 50 ms, death after 1 s of silence: short against the work below (seconds),
/// Death after 1 s of silence.
fn short_heartbeats() -> LivenessConfig {
    common::short_heartbeats(1000)
}

#[test]
fn a_shard_busy_with_a_huge_push_keeps_its_heartbeats() {
    const KEYS: u64 = 4_000_000;
    let job = common::start_configured(1, 1, |c| c.liveness = short_heartbeats(), |_, _| {});
    let took = job.run_workers(1, |w| {
        let t = w.declare_table(TableSpec::new("big", 1)).unwrap();
        // Spread keys: every one is new to the server's key map, the slowest apply there is.
        let keys: Vec<u64> = (0..KEYS).map(|i| i * 0x9E37_79B9).collect();
        let values = vec![1.0f32; keys.len()];
        let started = Instant::now();
        w.push(t, &keys, &values).unwrap();
        let took = started.elapsed();
        let back = w.pull(t, &keys[..10]).unwrap();
        assert_eq!(back, vec![1.0; 10]);
        w.finish().unwrap();
        took
    });
    let (summary, _) = job.join();
    assert_eq!(summary.workers_done, 1);
    // Not asserted (a fast machine may apply it within the timeout), but reported: the test
    // only proves something when the push outlasted the timeout.
    eprintln!(
        "a {KEYS}-key push took {:?} against a heartbeat timeout of {:?}",
        took[0],
        short_heartbeats().heartbeat_timeout
    );
}

#[test]
fn a_worker_computing_between_calls_keeps_its_heartbeats() {
    let job = common::start_configured(1, 2, |c| c.liveness = short_heartbeats(), |_, _| {});
    job.run_workers(2, |w| {
        let t = w.declare_table(TableSpec::new("slow", 1)).unwrap();
        for _ in 0..2 {
            // "Computing": no call into the worker for two and a half heartbeat timeouts.
            std::thread::sleep(Duration::from_millis(2500));
            w.push(t, &[1, 2], &[1.0, 1.0]).unwrap();
            w.barrier().unwrap();
        }
        assert_eq!(w.pull(t, &[1, 2]).unwrap(), vec![4.0, 4.0]);
        w.finish().unwrap();
    });
    let (summary, _) = job.join();
    assert_eq!((summary.workers_done, summary.workers_lost), (2, 0));
}
