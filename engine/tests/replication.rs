//! Synchronous chain replication: every replica of a range applies the same pushes in the same
//! order, so its values are bit-identical to the head's; replication factors the job cannot
//! hold are refused before it starts; forwarding is for the servers of a chain only.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferrops_engine::config::{ClusterConfig, ReplicationMode, SchedulerConfig};
use ferrops_engine::scheduler::run_scheduler;
use ferrops_engine::{EngineError, Role, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;
use ferrops_net::auth::{Credentials, Identity};
use ferrops_net::codec::ValueCodec;
use ferrops_net::{flags, pad8, Header, Opcode, Status, HEADER_LEN};
use zerocopy::FromBytes;

fn spread_keys(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * (u64::MAX / n)).collect()
}

fn replicated(servers: usize, workers: usize, r: usize) -> common::Job {
    common::start_configured(servers, workers, move |c| c.replication = r, |_, _| {})
}

#[test]
fn two_replicas_hold_bit_identical_values_after_pushes_from_two_workers() {
    pushes_of_two_workers_leave_bit_identical_replicas(ReplicationMode::Each);
}

#[test]
fn replicated_after_aggregation_the_replicas_are_bit_identical_and_count_every_push_once() {
    pushes_of_two_workers_leave_bit_identical_replicas(ReplicationMode::Aggregated);
}

fn pushes_of_two_workers_leave_bit_identical_replicas(mode: ReplicationMode) {
    let job = common::start_configured(
        2,
        2,
        move |c| {
            c.replication = 2;
            c.replication_mode = mode;
        },
        |_, _| {},
    );
    let keys = spread_keys(400);
    let results = job.run_workers(2, move |w| {
        let sum = w.declare_table(TableSpec::new("sum", 2)).unwrap();
        let ada = TableSpec::new("ada", 1).rule(Rule::AdaGrad { lr: 0.1, eps: 1e-6 });
        let ada = w.declare_table(ada).unwrap();
        let dense = w.declare_table(TableSpec::dense("dense", 1, 1000)).unwrap();
        // Encoded values travel down the chain as they came; masked pushes with their mask.
        let fp16 = TableSpec::new("fp16", 1).value_codec(ValueCodec::Fp16);
        let fp16 = w.declare_table(fp16).unwrap();
        let selected: Vec<u32> = (0..400).step_by(3).collect();
        // Distinct per worker, small enough to sum exactly (node ids start at 2^31).
        let me = (3 + w.rank()) as f32;
        for round in 0..30 {
            let vals: Vec<f32> = (0..800).map(|i| (i % 7) as f32 + me).collect();
            w.push(sum, &keys, &vals).unwrap();
            // Order-dependent in the last bits: only replicas that applied the pushes of both
            // workers in the same order agree bit for bit.
            let grads: Vec<f32> = (0..400).map(|i| 0.37 * (i + round) as f32 - me).collect();
            w.push(ada, &keys, &grads).unwrap();
            let dense_keys: Vec<u64> = (0..1000).step_by(3).collect();
            w.push(dense, &dense_keys, &vec![0.25; dense_keys.len()])
                .unwrap();
            let picked: Vec<f32> = selected.iter().map(|&i| 0.1 * i as f32 + me).collect();
            w.push_selected(fp16, &keys, &selected, &picked).unwrap();
        }
        w.barrier().unwrap();
        let got = w.pull(sum, &keys).unwrap();
        w.finish().unwrap();
        got
    });
    for got in &results {
        // 30 rounds of (i % 7) from each worker, plus each worker's `me` (3 and 4).
        let expected: Vec<f32> = (0..800)
            .map(|i| 60.0 * (i % 7) as f32 + 30.0 * 7.0)
            .collect();
        assert_eq!(got, &expected);
    }
    let (_, reports) = job.join();
    for table in ["sum", "ada", "dense", "fp16"] {
        for range in 0..2u32 {
            let copies: Vec<_> = reports
                .iter()
                .flat_map(|r| &r.contents)
                .filter(|c| c.table == table && c.range == range)
                .collect();
            assert_eq!(copies.len(), 2, "{table} range {range} has two copies");
            assert!(copies[0].keys > 0, "{table} range {range} holds keys");
            assert_eq!(
                copies[0], copies[1],
                "{table} range {range}: the replica differs from the head"
            );
        }
    }
    let batches: u64 = reports.iter().map(|r| r.replicated_batches).sum();
    match mode {
        ReplicationMode::Each => assert_eq!(batches, 0),
        // A batch holds the pushes of both workers whenever they arrive together.
        ReplicationMode::Aggregated => assert!(
            batches > 0 && batches < 2 * 2 * 30 * 4,
            "{batches} batches for 480 pushes to heads"
        ),
    }
    // Each server applied every push twice over: once as head, once as replica (aggregated:
    // the replica records each push of a batch once).
    let applied: u64 = reports.iter().map(|r| r.pushes).sum();
    assert_eq!(
        applied,
        2 * 2 * 30 * 4 * 2,
        "workers × ranges × rounds × tables × copies"
    );
}

/// What the scheduler of a 2-server job at replication `r` says when it refuses to start, and
/// whether it announced its address first.
fn refusal(r: usize) -> (EngineError, bool) {
    let mut cluster = ClusterConfig::new("127.0.0.1:0".parse().unwrap(), 2, 1);
    cluster.replication = r;
    let bind = "127.0.0.1:0".parse().unwrap();
    let cfg = SchedulerConfig {
        cluster,
        bind,
        restore: None,
        recover: None,
    };
    let mut announced = false;
    let err = run_scheduler(&cfg, |_| announced = true).unwrap_err();
    (err, announced)
}

#[test]
fn a_replication_factor_above_the_servers_is_refused_before_the_job_starts() {
    let (err, announced) = refusal(3);
    assert!(!announced, "refused before listening");
    let EngineError::Config(msg) = err else {
        panic!("not a configuration error: {err}");
    };
    assert!(
        msg.contains("replication factor 3 needs at least 3 servers"),
        "{msg}"
    );
    assert!(msg.contains("has 2"), "{msg}");
    let (zero, _) = refusal(0);
    assert!(zero.to_string().contains("at least 1"), "{zero}");
}

/// The next frame's header and its extra section as text (`None` once the peer closed).
fn read_reply(s: &mut TcpStream) -> Option<(Header, String)> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).ok()?;
    let h = Header::read_from_bytes(&head).unwrap();
    let mut payload = vec![0u8; h.payload_len() as usize];
    s.read_exact(&mut payload).unwrap();
    let at = pad8(h.keys_len.get() as usize) + pad8(h.values_len.get() as usize);
    let text = String::from_utf8_lossy(&payload[at..at + h.extra_len.get() as usize]);
    Some((h, text.into_owned()))
}

fn stream_as(
    server: &str,
    key: &ferrops_net::auth::ClusterKey,
    role: Role,
    node: u32,
) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    let creds = Credentials {
        key: key.clone(),
        me: Identity {
            role: role.wire_index(),
            node,
        },
    };
    ferrops_net::auth::authenticate_stream(&mut s, &creds, Duration::from_secs(10))
        .expect("the handshake passes with the job's key");
    s
}

/// The header of a one-key push to `t` marked as forwarded down a chain, in `w`'s name and
/// routing version.
fn forwarded_push(w: &Worker, t: TableId) -> Header {
    let mut h = Header::new(Opcode::Push);
    h.flags = flags::FORWARDED;
    h.table = t.0.into();
    h.routing_version = w.routing().version.into();
    h.sender = w.info().node_id.into();
    h.seq = 1_000.into();
    h.key_count = 1u32.into();
    h
}

/// Sends the one-key push `h` over a connection authenticated as server node 3; if the server
/// answers before it closes the connection, the answer is a refusal saying `why`.
fn refused_from_server_3(server: &str, key: &ferrops_net::auth::ClusterKey, h: Header, why: &str) {
    let mut s = stream_as(server, key, Role::Server, 3);
    if s.write_all(&common::frame_bytes(h, &[5], &[100.0])).is_ok() {
        if let Some((reply, text)) = read_reply(&mut s) {
            assert_eq!(reply.status(), Status::Unauthorized, "{text}");
            assert!(text.contains(why), "{text}");
        }
    }
}

/// Runs `body` as the one worker of a 3-server job at replication `r`, with a one-value table,
/// the job's key and the address of range 0's head; the worker finishes after it.
fn with_three_servers(
    r: usize,
    body: impl Fn(&Worker, TableId, &ferrops_net::auth::ClusterKey, &str)
        + Send
        + Sync
        + Clone
        + 'static,
) {
    let job = replicated(3, 1, r);
    let key = job.cluster.key.clone();
    job.run_workers(1, move |w| {
        let t = w.declare_table(TableSpec::new("t", 1)).unwrap();
        let server = w.routing().ranges[0].addr.clone();
        body(&w, t, &key, &server);
        w.finish().unwrap();
    });
    job.join();
}

#[test]
fn forwarded_pushes_are_refused_from_workers_and_from_servers_outside_the_chain() {
    with_three_servers(1, |w, t, key, server| {
        let h = forwarded_push(w, t);
        // A worker, even under its own name, cannot forward.
        let mut s = stream_as(server, key, Role::Worker, 900);
        let mut as_itself = h;
        as_itself.sender = 900.into();
        s.write_all(&common::frame_bytes(as_itself, &[5], &[100.0]))
            .unwrap();
        let (reply, text) = read_reply(&mut s).expect("a refusal");
        assert_eq!(reply.status(), Status::Unauthorized, "{text}");
        assert!(text.contains("cannot send a forwarded push"), "{text}");
        // With R = 1 no server shares a chain with another: a server connection is refused.
        refused_from_server_3(server, key, h, "shares no replication chain");
        assert_eq!(w.pull(t, &[5]).unwrap(), vec![0.0], "nothing was applied");
    });
}

#[test]
fn a_second_connection_under_a_chain_servers_name_is_refused() {
    // Three servers, R = 2: chains [0, 1], [1, 2], [2, 0].
    with_three_servers(2, |w, t, key, server| {
        assert_eq!(w.routing().ranges[2].chain, vec![2, 0]);
        // Server 2 (node 3) is connected to server 0 already: a second connection under its
        // name is refused at once.
        refused_from_server_3(server, key, forwarded_push(w, t), "already connected");
        w.push(t, &[5], &[1.0]).unwrap();
        let only_real = w.pull(t, &[5]).unwrap();
        assert_eq!(only_real, vec![1.0], "only the real push applied");
    });
}

#[test]
fn with_several_shards_per_server_no_chain_holds_two_shards_of_one_process() {
    let job = common::start_configured(
        2,
        1,
        |c| {
            c.replication = 2;
            c.server_shards = 2;
        },
        |_, _| {},
    );
    let keys = spread_keys(100);
    let routing = job.run_workers(1, move |w| {
        let t = w.declare_table(TableSpec::new("t", 1)).unwrap();
        for _ in 0..5 {
            w.push(t, &keys, &vec![1.0; keys.len()]).unwrap();
        }
        assert!(w.pull(t, &keys).unwrap().iter().all(|&v| v == 5.0));
        let routing = w.routing();
        w.finish().unwrap();
        routing
    });
    for r in &routing[0].ranges {
        assert_eq!(r.chain.len(), 2);
        assert_ne!(r.chain[0] / 2, r.chain[1] / 2, "{:?}", r.chain);
    }
    let (_, reports) = job.join();
    for range in 0..4u32 {
        let copies: Vec<_> = reports
            .iter()
            .flat_map(|r| &r.contents)
            .filter(|c| c.range == range)
            .collect();
        assert_eq!(copies.len(), 2, "range {range}");
        assert_eq!(copies[0], copies[1], "range {range}");
    }
}
