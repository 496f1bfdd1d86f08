//! Budgets instead of crashes, over real `ferrops scheduler` and `ferrops server` processes
//! and an attacker that speaks the wire format on raw TCP connections:
//! - a reader that never reads its replies stops being served (the server's resident memory
//!   stays within its reply budget);
//! - a header announcing sections at the size limit reserves nothing big, so it cannot abort
//!   a server under an address-space limit;
//! - connections past the descriptor limit never wedge the listener: once they close, a
//!   worker gets in.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrops::{ClusterConfig, TableSpec, Worker, WorkerConfig};
use ferrops_engine::control::Control;
use ferrops_net::auth::{authenticate_stream, ClusterKey, Credentials, Identity, Secret};
use ferrops_net::{flags, key_signature, FrameParts, Header, Opcode, HEADER_LEN};
use zerocopy::{FromBytes, IntoBytes};

use common::announced_address;

/// The job's cluster secret (every process gets it in `FERROPS_SECRET`).
const SECRET: &str = "budgets-test-secret";
/// The node id the attacker authenticates as (it holds the secret: the budgets are about what
/// an admitted peer can cost, an anonymous one is refused before it can send a section).
const ATTACKER: u32 = 900;

fn key() -> ClusterKey {
    ClusterKey::Secret(Secret::new(SECRET).unwrap())
}

/// A raw connection to `addr` that has passed the handshake as worker node `node`.
fn attacker(addr: SocketAddr, node: u32) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let creds = Credentials {
        key: key(),
        me: Identity { role: 1, node },
    };
    authenticate_stream(&mut s, &creds, Duration::from_secs(10)).unwrap();
    s
}

/// A scheduler and one server for one worker, as processes; `shells` are shell commands run
/// before the scheduler's and the server's (e.g. `ulimit -v ...;`), `env` goes to both.
struct Cluster {
    scheduler: Child,
    server: Child,
    scheduler_addr: SocketAddr,
    server_addr: SocketAddr,
    server_log: common::LineLog,
}

impl Cluster {
    fn start(shells: [&str; 2], env: &[(&str, &str)]) -> Cluster {
        let [scheduler_shell, server_shell] = shells;
        let mut scheduler = Command::new("sh")
            .args(["-c", &format!("{scheduler_shell} exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_ferrops"))
            .args(["scheduler", "--bind", "127.0.0.1:0"])
            .args(["--num-servers", "1", "--num-workers", "1"])
            .env("FERROPS_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let scheduler_addr: SocketAddr = announced_address(&mut scheduler).parse().unwrap();
        let mut server = Command::new("sh")
            .args(["-c", &format!("{server_shell} exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_ferrops"))
            .args(["server", "--scheduler", &scheduler_addr.to_string()])
            .args(["--num-servers", "1", "--num-workers", "1"])
            .env("FERROPS_SECRET", SECRET)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server_log = common::LineLog::follow(server.stderr.take().unwrap());
        let mut cluster = Cluster {
            scheduler,
            server,
            scheduler_addr,
            server_addr: scheduler_addr,
            server_log,
        };
        let listening = cluster.wait_for_log("server listening on");
        let addr = listening.rsplit("server listening on ").next().unwrap();
        cluster.server_addr = addr.split_whitespace().next().unwrap().parse().unwrap();
        cluster
    }

    fn wait_for_log(&self, text: &str) -> String {
        self.server_log.wait_for(text, Duration::from_secs(60))
    }

    fn worker(&self) -> Worker {
        let mut cluster = ClusterConfig::new(self.scheduler_addr, 1, 1);
        cluster.key = key();
        Worker::connect(&WorkerConfig { cluster }).expect("worker connects")
    }

    fn server_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// Waits for both processes and asserts they exited successfully.
    fn finish_ok(mut self) {
        for (name, child) in [
            ("scheduler", &mut self.scheduler),
            ("server", &mut self.server),
        ] {
            let status = child.wait().unwrap();
            assert!(status.success(), "{name} exited with {status}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.scheduler.kill();
        let _ = self.server.kill();
        let _ = self.scheduler.wait();
        let _ = self.server.wait();
    }
}

/// A finished frame's bytes.
fn frame_bytes(header: Header, keys: &[u64], extra: &[u8]) -> Vec<u8> {
    let mut frame = FrameParts {
        header,
        keys: keys.as_bytes(),
        values: &[],
        extra,
    };
    frame.finish(true);
    let mut bytes = frame.header.as_bytes().to_vec();
    bytes.extend_from_slice(keys.as_bytes());
    bytes.extend_from_slice(extra);
    bytes
}

fn hello(node_id: u32) -> Vec<u8> {
    let (header, extra) = Control::Hello {
        node_id,
        key_cache_keys: 1 << 22,
        clock: 0,
    }
    .frame();
    frame_bytes(header, &[], &extra)
}

fn pull(table: u32, keys: &[u64], by_signature: bool) -> Vec<u8> {
    let mut h = Header::new(Opcode::Pull);
    h.table = table.into();
    h.sender = ATTACKER.into();
    h.routing_version = 1.into();
    h.key_count = (keys.len() as u32).into();
    h.key_signature = key_signature(keys).into();
    if by_signature {
        h.flags |= flags::KEYS_BY_SIGNATURE;
        frame_bytes(h, &[], &[])
    } else {
        frame_bytes(h, keys, &[])
    }
}

#[test]
fn a_reader_that_never_reads_its_replies_stops_being_served_within_its_budget() {
    let budget = 16 << 20;
    let cluster = Cluster::start(
        ["", ""],
        &[("FERROPS_REPLY_BUDGET_BYTES", &budget.to_string())],
    );
    let worker = cluster.worker();
    let table = worker.declare_table(TableSpec::new("w", 1)).unwrap();
    let keys: Vec<u64> = (0..1u64 << 20).collect();
    worker.push(table, &keys, &vec![1.0; keys.len()]).unwrap();
    // One pull with the keys (its reply is read), then 200 by signature (80 bytes each, 4 MiB
    // of reply each) whose replies are never read.
    let mut attacker = attacker(cluster.server_addr, ATTACKER);
    attacker.write_all(&hello(ATTACKER)).unwrap();
    attacker.write_all(&pull(table.0, &keys, false)).unwrap();
    let mut header = [0u8; HEADER_LEN];
    attacker.read_exact(&mut header).unwrap();
    let reply = Header::read_from_bytes(&header).unwrap();
    assert_eq!(reply.opcode(), Some(Opcode::PullReply), "{reply:?}");
    let mut values = vec![0u8; reply.values_len.get() as usize];
    attacker.read_exact(&mut values).unwrap();
    let before = cluster.server_rss();
    let by_signature = pull(table.0, &keys, true);
    let requests: Vec<u8> = (0..200).flat_map(|_| by_signature.clone()).collect();
    attacker.write_all(&requests).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let grown = cluster.server_rss().saturating_sub(before);
    // Unbounded, 200 replies of 4 MiB are queued: 800 MiB.
    assert!(
        grown < 200 << 20,
        "the server grew by {} MiB for a reader that reads nothing",
        grown >> 20
    );
    eprintln!("server grew by {} MiB", grown >> 20);
    // The well-behaved worker is still served meanwhile.
    assert_eq!(worker.pull(table, &keys[..10]).unwrap(), vec![1.0; 10]);
    // Held back, not dropped: once the reader reads, every reply comes.
    attacker
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    for i in 0..200 {
        attacker.read_exact(&mut header).unwrap();
        let reply = Header::read_from_bytes(&header).unwrap();
        assert_eq!(
            reply.opcode(),
            Some(Opcode::PullReply),
            "reply {i}: {reply:?}"
        );
        attacker.read_exact(&mut values).unwrap();
    }
    drop(attacker);
    worker.finish().unwrap();
    cluster.finish_ok();
}

#[test]
fn a_header_at_the_size_limit_cannot_abort_the_scheduler_under_an_address_space_limit() {
    // 3 GiB of address space: a 4 GiB buffer cannot even be reserved.
    let cluster = Cluster::start(["ulimit -v 3145728;", ""], &[]);
    let mut h = Header::new(Opcode::Push);
    h.keys_len = (1u32 << 30).into();
    h.values_len = (2u32 << 30).into();
    h.flags &= !flags::PAYLOAD_CRC;
    h.seal();
    let mut attacker = attacker(cluster.scheduler_addr, u32::MAX);
    attacker.write_all(h.as_bytes()).unwrap();
    attacker.write_all(&vec![0u8; 4 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The scheduler still runs the job.
    let worker = cluster.worker();
    let table = worker.declare_table(TableSpec::new("w", 1)).unwrap();
    worker.push(table, &[1, 2], &[1.0, 2.0]).unwrap();
    assert_eq!(worker.pull(table, &[1, 2]).unwrap(), vec![1.0, 2.0]);
    drop(attacker);
    worker.finish().unwrap();
    cluster.finish_ok();
}

#[test]
fn connections_past_the_descriptor_limit_never_wedge_the_listener() {
    // 128 descriptors and no configured connection limit above them: accepts fail for lack
    // of descriptors, and the listener must retry once they are free.
    let cluster = Cluster::start(
        ["", "ulimit -n 128;"],
        &[("FERROPS_MAX_CONNECTIONS", "100000")],
    );
    // Past the descriptors and the accept queue (connects beyond it time out).
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            TcpStream::connect_timeout(&cluster.server_addr, Duration::from_millis(100)).ok()
        })
        .collect();
    assert!(
        idle.len() > 128,
        "only {} connections were made",
        idle.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(idle);
    let worker = cluster.worker();
    let table = worker.declare_table(TableSpec::new("w", 1)).unwrap();
    worker.push(table, &[7], &[3.0]).unwrap();
    assert_eq!(worker.pull(table, &[7]).unwrap(), vec![3.0]);
    worker.finish().unwrap();
    cluster.finish_ok();
}

#[test]
fn a_connection_over_the_limit_is_told_the_limit() {
    let cluster = Cluster::start(["", ""], &[("FERROPS_MAX_CONNECTIONS", "3")]);
    // The scheduler's connection counts as one.
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(cluster.server_addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = TcpStream::connect(cluster.server_addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    refused.read_to_end(&mut reply).unwrap();
    let h = Header::read_from_bytes(&reply[..HEADER_LEN]).unwrap();
    assert_eq!(h.opcode(), Some(Opcode::Error));
    let text = String::from_utf8_lossy(&reply[HEADER_LEN..]);
    assert!(text.contains("connection limit of 3"), "{text}");
    cluster.wait_for_log("connection limit of 3");
}
