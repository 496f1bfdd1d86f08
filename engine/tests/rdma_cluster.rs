//! Whole jobs over RDMA: scheduler, servers and workers in this process, worker↔server
//! connections over the RDMA transport. Needs a verbs device with an active port (CI runs it
//! in a QEMU guest with soft-RoCE); without one each test prints `SKIPPED:` and returns.

mod common;

use common::Job;
use ferrops_engine::TableSpec;
use ferrops_net::rdma::available_or_skip;
use ferrops_net::TransportMode::{self, Auto, Rdma, Tcp};

/// A job whose servers use the given transports (one per server); workers use `workers_mode`.
/// `None` (after printing the skip marker, naming the job) where no RDMA device is up.
fn start_or_skip(
    server_modes: &[TransportMode],
    workers: usize,
    workers_mode: TransportMode,
) -> Option<Job> {
    let job = format!("servers {server_modes:?} with {workers} {workers_mode} workers");
    if !available_or_skip(&job) {
        return None;
    }
    let modes = server_modes.to_vec();
    let mut job = common::start_configured(
        modes.len(),
        workers,
        |_| {},
        move |i, cfg| cfg.cluster.transport = modes[i],
    );
    job.cluster.transport = workers_mode;
    Some(job)
}

/// Keys spread over the whole key space, so every server gets its share.
fn spread(n: u64) -> Vec<u64> {
    let step = u64::MAX / n;
    (0..n).map(|i| i * step).collect()
}

/// Each worker pushes `rounds` times to small, medium and bulk key lists, then (after a
/// barrier) pulls and checks that every push of every worker is in the sums. Returns each
/// worker's number of RDMA connections.
fn push_pull_everything(job: &Job, workers: usize, rounds: usize) -> Vec<usize> {
    job.run_workers(workers, move |w| {
        let table = w.declare_table(TableSpec::new("t", 2)).unwrap();
        // 1 key: one SEND each way; 2 000 keys: still small frames; 300 000 keys × 2 f32
        // = 2.4 MB of values: bulk frames by RDMA WRITE, several per server.
        for n in [1u64, 2_000, 300_000] {
            let keys = spread(n);
            let values: Vec<f32> = (0..2 * n).map(|i| (i % 7) as f32 + 1.0).collect();
            for _ in 0..rounds {
                w.push(table, &keys, &values).unwrap();
            }
        }
        w.barrier().unwrap();
        for n in [1u64, 2_000, 300_000] {
            let keys = spread(n);
            let got = w.pull(table, &keys).unwrap();
            assert_eq!(got.len(), 2 * n as usize);
            for (i, v) in got.iter().enumerate() {
                // Key 0 is in every list: its values collect the pushes of all three sizes.
                let lists = if i < 2 { 3.0 } else { 1.0 };
                let expected = ((i % 7) as f32 + 1.0) * (rounds * workers) as f32 * lists;
                assert_eq!(*v, expected, "value {i} of the {n}-key list");
            }
        }
        let rdma = w.rdma_connections();
        w.finish().unwrap();
        rdma
    })
}

/// Starts a job of servers in `server_modes` and one worker in `workers_mode` per entry of
/// `rdma`, runs [`push_pull_everything`] for `rounds` rounds and checks that worker `i` made
/// `rdma[i]` RDMA connections (`why` says where RDMA is expected). `None` where the job was
/// skipped (no RDMA device).
fn push_pull_over(
    server_modes: &[TransportMode],
    workers_mode: TransportMode,
    rounds: usize,
    rdma: &[usize],
    why: &str,
) -> Option<Job> {
    let workers = rdma.len();
    let job = start_or_skip(server_modes, workers, workers_mode)?;
    assert_eq!(push_pull_everything(&job, workers, rounds), rdma, "{why}");
    Some(job)
}

#[test]
fn two_servers_two_workers_over_rdma_small_and_bulk() {
    let why = "every worker↔server connection is RDMA";
    let Some(job) = push_pull_over(&[Rdma, Rdma], Rdma, 3, &[2, 2], why) else {
        return;
    };
    let (_, reports) = job.join();
    let pushes: u64 = reports.iter().map(|r| r.pushes).sum();
    // 2 workers × 3 sizes × 3 rounds, each push split over the 2 servers (the 1-key list
    // reaches only server 0).
    assert_eq!(pushes, 2 * 3 * (1 + 2 + 2));
}

#[test]
fn mixed_cluster_uses_rdma_where_both_ends_can() {
    // Server 0 runs without RDMA; server 1 offers RDMA (and no shared memory), and the
    // workers in auto pick it up on their own.
    if let Some(job) = push_pull_over(&[Tcp, Rdma], Auto, 2, &[1, 1], "RDMA to server 1 only") {
        job.join();
    }
}

#[test]
fn auto_prefers_shared_memory_to_rdma_on_the_same_host() {
    // Every node here shares one host: a server in auto offers shared memory and RDMA, and a
    // worker in auto takes shared memory, the shorter way.
    let Some(job) = start_or_skip(&[Auto], 1, Auto) else {
        return;
    };
    let links = job.run_workers(1, |w| {
        let table = w.declare_table(TableSpec::new("t", 1)).unwrap();
        w.push(table, &[7], &[1.5]).unwrap();
        assert_eq!(w.pull(table, &[7]).unwrap(), vec![1.5]);
        let links = (w.rdma_connections(), w.shm_connections());
        w.finish().unwrap();
        links
    });
    assert_eq!(links, vec![(0, 1)], "(RDMA, shared-memory) connections");
    job.join();
}

#[test]
fn forced_rdma_refuses_a_server_without_it() {
    let Some(job) = start_or_skip(&[Tcp], 1, Rdma) else {
        return;
    };
    let cfg = ferrops_engine::config::WorkerConfig {
        cluster: job.cluster.clone(),
    };
    let err = ferrops_engine::Worker::connect(&cfg)
        .err()
        .expect("a worker that must use RDMA cannot use a TCP-only server")
        .to_string();
    assert!(err.contains("offers no RDMA address"), "{err}");
    // The scheduler saw the worker go; let the server and scheduler wind down on their own.
    drop(job);
}

#[test]
fn bulk_push_and_pull_into_over_rdma_copy_no_value() {
    const N: u64 = 500_000; // 2 MB of values: bulk transfers to both servers
    let Some(job) = start_or_skip(&[Rdma, Rdma], 1, Rdma) else {
        return;
    };
    let copied = job.run_workers(1, |w| {
        let table = w.declare_table(TableSpec::new("t", 1)).unwrap();
        let keys = spread(N);
        let values: Vec<f32> = (0..N).map(|i| (i % 1000) as f32).collect();
        let before = w.metrics().value_bytes_copied;
        w.push(table, &keys, &values).unwrap();
        let pushed_copies = w.metrics().value_bytes_copied - before;
        // Pushed without a registration (async): the values are staged.
        let before = w.metrics().value_bytes_copied;
        let t = w.push_async(table, &keys, &values).unwrap();
        w.wait(t).unwrap();
        let async_copies = w.metrics().value_bytes_copied - before;
        let values: Vec<f32> = values.iter().map(|v| 2.0 * v).collect();
        let mut out = vec![-1.0f32; N as usize];
        let before = w.metrics().value_bytes_copied;
        w.pull_into(table, &keys, &mut out).unwrap();
        let pulled_copies = w.metrics().value_bytes_copied - before;
        assert_eq!(out, values, "every value arrived in place");
        // The convenience form (a fresh Vec per call) takes the values from the frame.
        let before = w.metrics().value_bytes_copied;
        assert_eq!(w.pull(table, &keys).unwrap(), values);
        let owned_copies = w.metrics().value_bytes_copied - before;
        w.finish().unwrap();
        (pulled_copies, owned_copies, pushed_copies, async_copies)
    });
    let (_, reports) = job.join();
    let server_copies: u64 = reports.iter().map(|r| r.net.value_bytes_copied).sum();
    println!(
        "value bytes copied for {} bytes: worker push {}, push_async {}, pull_into {}, pull {}; \
         servers {} (the plain pull's staging)",
        N * 4,
        copied[0].2,
        copied[0].3,
        copied[0].0,
        copied[0].1,
        server_copies
    );
    assert_eq!(copied[0].2, 0, "a blocking push over RDMA copies no value");
    assert_eq!(copied[0].3, N * 4, "push_async stages its values once");
    assert_eq!(
        copied[0].0, 0,
        "pull_into over RDMA copies no value on the worker"
    );
    assert_eq!(copied[0].1, N * 4, "pull copies each value once");
    // The pushes were applied from the receive buffers and pull_into's values were read by the
    // device from the segments: the servers copied only for the plain pull, which names no
    // buffer (its values travel in a staged bulk frame).
    assert_eq!(server_copies, N * 4, "servers copy only for the plain pull");
}
