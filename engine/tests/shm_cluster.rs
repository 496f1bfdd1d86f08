//! Whole jobs over shared memory: scheduler, servers and workers in this process,
//! worker↔server connections through shared-memory rings. The sums pulled back (small lists,
//! and bulk ones far larger than a ring, by `pull` and `pull_into`) must be exactly those of
//! the same job over TCP. Under `auto` (the default) workers use shared memory to the servers
//! that offer it and TCP to those that do not.

mod common;

use common::Job;
use ferrops_engine::TableSpec;
use ferrops_net::TransportMode::{self, Auto, Shm, Tcp};

/// Keys spread over the whole key space, so every server gets its share.
fn spread(n: u64) -> Vec<u64> {
    let step = u64::MAX / n;
    (0..n).map(|i| i * step).collect()
}

/// A job of 2 servers in `servers` mode and 2 workers in `workers` mode.
fn start(servers: TransportMode, workers: TransportMode) -> Job {
    let mut job =
        common::start_configured(2, 2, |_| {}, move |_, cfg| cfg.cluster.transport = servers);
    job.cluster.transport = workers;
    job
}

/// Each worker pushes small, medium and bulk key lists twice, then (after a barrier) pulls
/// them back both ways; returns each worker's pulled values and its shared-memory links.
fn push_pull(servers: TransportMode, workers: TransportMode) -> Vec<(Vec<Vec<f32>>, usize)> {
    let job = start(servers, workers);
    let got = job.run_workers(2, |w| {
        let table = w.declare_table(TableSpec::new("t", 2)).unwrap();
        // 3 000 000 keys × 2 f32 = 24 MB per push: frames several times a ring's 8 MiB.
        let sizes = [1u64, 2_000, 3_000_000];
        for n in sizes {
            let keys = spread(n);
            let values: Vec<f32> = (0..2 * n).map(|i| (i % 7) as f32 + 1.0).collect();
            for _ in 0..2 {
                w.push(table, &keys, &values).unwrap();
            }
        }
        w.barrier().unwrap();
        let mut pulled = Vec::new();
        for n in sizes {
            let keys = spread(n);
            let values = w.pull(table, &keys).unwrap();
            let mut into = vec![-1.0f32; values.len()];
            w.pull_into(table, &keys, &mut into).unwrap();
            assert_eq!(into, values, "pull_into and pull agree ({n} keys)");
            pulled.push(values);
        }
        let shm = w.shm_connections();
        w.finish().unwrap();
        (pulled, shm)
    });
    job.join();
    got
}

#[test]
fn push_pull_over_shared_memory_gives_the_sums_of_tcp() {
    let shm = push_pull(Shm, Shm);
    assert!(
        shm.iter().all(|(_, links)| *links == 2),
        "every worker reaches both servers through shared memory"
    );
    let tcp = push_pull(Tcp, Tcp);
    assert!(tcp.iter().all(|(_, links)| *links == 0));
    for ((over_shm, _), (over_tcp, _)) in shm.iter().zip(&tcp) {
        assert!(over_shm == over_tcp, "the same sums over shm as over TCP");
    }
    // And the sums are the pushes: key 0 is in every list, the rest in one.
    let (pulled, _) = &shm[0];
    let bulk = &pulled[2];
    for (i, v) in bulk.iter().enumerate().take(10_000) {
        let lists = if i < 2 { 3.0 } else { 1.0 };
        assert_eq!(*v, ((i % 7) as f32 + 1.0) * 2.0 * 2.0 * lists, "value {i}");
    }
}

#[test]
fn auto_takes_shared_memory_to_servers_that_offer_it_and_tcp_to_the_others() {
    let auto = push_pull(Auto, Auto);
    assert!(
        auto.iter().all(|(_, links)| *links == 2),
        "servers in auto listen for shared memory, and workers in auto use it"
    );
    let tcp_servers = push_pull(Tcp, Auto);
    assert!(
        tcp_servers.iter().all(|(_, links)| *links == 0),
        "workers in auto fall back to TCP for servers that do not offer shared memory"
    );
    let tcp_workers = push_pull(Auto, Tcp);
    assert!(tcp_workers.iter().all(|(_, links)| *links == 0));
    for (((a, _), (b, _)), (c, _)) in auto.iter().zip(&tcp_servers).zip(&tcp_workers) {
        assert!(
            a == b && b == c,
            "the same sums whichever way the bytes went"
        );
    }
}
