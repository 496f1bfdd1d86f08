//! Nodes that ask the scheduler for a rank (as `ferrops local` has its children do, so that its
//! names and the scheduler's agree) get it whatever order they register in, and the routing
//! table follows the ranks; ranks out of range are refused.

mod common;

use std::thread;

use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{EngineError, TableSpec, Worker};

#[test]
fn asked_ranks_are_given_whatever_the_registration_order() {
    // Server i asks for rank 1 - i; the workers ask for 2, 0 and 1 in thread order.
    let job =
        common::start_configured(2, 3, |_| {}, |i, cfg| cfg.cluster.rank = Some(1 - i as u32));
    let asked = [2u32, 0, 1];
    let workers: Vec<_> = asked
        .iter()
        .map(|&rank| {
            let mut cfg = WorkerConfig {
                cluster: job.cluster.clone(),
            };
            cfg.cluster.rank = Some(rank);
            thread::spawn(move || {
                let w = Worker::connect(&cfg).expect("worker connects");
                let got = w.rank();
                let table = w.declare_table(TableSpec::new("t", 1)).unwrap();
                // Key 0 lies in range 0: the server that asked for rank 0 holds it.
                w.push(table, &[0], &[1.0]).unwrap();
                w.finish().unwrap();
                got
            })
        })
        .collect();
    let got: Vec<u32> = workers
        .into_iter()
        .map(|h| h.join().unwrap() as u32)
        .collect();
    assert_eq!(got, asked);
    let (_, reports) = job.join();
    // job.servers[1] asked for rank 0.
    assert_eq!((reports[0].pushes, reports[1].pushes), (0, 3));
}

#[test]
fn a_rank_beyond_the_job_is_refused() {
    let job = common::start(1, 1);
    let mut cfg = WorkerConfig {
        cluster: job.cluster.clone(),
    };
    cfg.cluster.rank = Some(1);
    let err = Worker::connect(&cfg)
        .err()
        .expect("rank 1 of 1 worker is refused");
    match err {
        EngineError::Refused(text) => assert!(text.contains("there is no worker 1"), "{text}"),
        other => panic!("expected a refusal, got {other}"),
    }
    job.run_workers(1, |w| w.finish().unwrap());
    job.join();
}
