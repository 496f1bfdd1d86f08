//! Starts a whole job inside the test process: scheduler and servers on threads, workers on
//! threads running the test's closure.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ferrops_net::auth::{ClusterKey, Credentials, Identity};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ferrops_engine::config::{ClusterConfig, SchedulerConfig, ServerConfig, WorkerConfig};
use ferrops_engine::scheduler::{run_scheduler, JobSummary};
use ferrops_engine::server::{run_server, ServerReport};
use ferrops_engine::{EngineError, Role, TableId, TableSpec, Worker};

pub struct Job {
    pub scheduler: JoinHandle<Result<JobSummary, EngineError>>,
    pub servers: Vec<JoinHandle<Result<ServerReport, EngineError>>>,
    pub cluster: ClusterConfig,
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a scheduler and `servers` servers for `workers` workers.
#[allow(dead_code)] // not every test binary uses every helper
pub fn start(servers: usize, workers: usize) -> Job {
    start_sharded(servers, 1, workers)
}

/// Runs `body` as the only worker of a job with `servers` servers, then finishes that worker
/// and waits for the scheduler and servers to end cleanly.
#[allow(dead_code)] // not every test binary uses every helper
pub fn with_one_worker(servers: usize, body: impl Fn(&Worker) + Send + Sync + Clone + 'static) {
    let job = start(servers, 1);
    job.run_workers(1, move |w| {
        body(&w);
        w.finish().expect("worker finishes");
    });
    job.join();
}

/// [`with_one_worker`] for a body that works on one table, declared from `spec` first.
#[allow(dead_code)] // not every test binary uses every helper
pub fn with_one_worker_and_table(
    servers: usize,
    spec: TableSpec,
    body: impl Fn(&Worker, TableId) + Send + Sync + Clone + 'static,
) {
    with_one_worker(servers, move |w| {
        let table = w.declare_table(spec.clone()).expect("table declared");
        body(w, table);
    });
}

/// [`with_one_worker_and_table`] whose body also gets the job's cluster key (to play a peer
/// that holds the secret, or one that does not).
#[allow(dead_code)] // not every test binary uses every helper
pub fn with_one_worker_table_and_key(
    servers: usize,
    spec: TableSpec,
    body: impl Fn(&Worker, TableId, &ClusterKey) + Send + Sync + Clone + 'static,
) -> (JobSummary, Vec<ServerReport>) {
    let job = start(servers, 1);
    let key = job.cluster.key.clone();
    job.run_workers(1, move |w| {
        let table = w.declare_table(spec.clone()).expect("table declared");
        body(&w, table, &key);
        w.finish().expect("worker finishes");
    });
    job.join()
}

/// A raw connection to `server` that has passed the handshake as worker node `node` with
/// `key`: for tests that write frames by hand.
#[allow(dead_code)] // not every test binary uses every helper
pub fn authenticated_stream(server: &str, key: &ClusterKey, node: u32) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    let creds = Credentials {
        key: key.clone(),
        me: Identity {
            role: Role::Worker.wire_index(),
            node,
        },
    };
    ferrops_net::auth::authenticate_stream(&mut s, &creds, Duration::from_secs(10))
        .expect("the handshake passes with the job's key");
    s
}

/// Like [`start`], with `shards` shards per server.
pub fn start_sharded(servers: usize, shards: usize, workers: usize) -> Job {
    start_configured(
        servers,
        workers,
        |cluster| cluster.server_shards = shards,
        |_, _| {},
    )
}

/// Starts a job whose cluster settings `cluster` adjusts (for every node) and whose server
/// `i`'s own settings `server(i, ..)` adjusts.
pub fn start_configured(
    servers: usize,
    workers: usize,
    cluster: impl Fn(&mut ClusterConfig),
    server: impl Fn(usize, &mut ServerConfig),
) -> Job {
    start_full(servers, workers, None, cluster, server)
}

/// Starts a job from the checkpoint in `dir` (the scheduler's `restore`), with cluster settings
/// `cluster` adjusts.
#[allow(dead_code)] // not every test binary uses every helper
pub fn start_restoring(
    servers: usize,
    workers: usize,
    dir: &std::path::Path,
    cluster: impl Fn(&mut ClusterConfig),
) -> Job {
    start_full(
        servers,
        workers,
        Some(dir.to_path_buf()),
        cluster,
        |_, _| {},
    )
}

/// [`start_configured`], restoring the checkpoint `restore` when given.
fn start_full(
    servers: usize,
    workers: usize,
    restore: Option<std::path::PathBuf>,
    cluster: impl Fn(&mut ClusterConfig),
    server: impl Fn(usize, &mut ServerConfig),
) -> Job {
    let (tx, rx) = mpsc::channel();
    let mut settings = ClusterConfig::new(loopback(), servers, workers);
    cluster(&mut settings);
    let scheduler_key = settings.key.clone();
    let cfg = SchedulerConfig {
        cluster: settings,
        bind: loopback(),
        restore,
        recover: None,
    };
    let scheduler = std::thread::spawn(move || run_scheduler(&cfg, |addr| tx.send(addr).unwrap()));
    let addr = rx.recv().expect("scheduler announces its address");
    // Every node of the job shares the scheduler's secret.
    let mut settings = ClusterConfig::new(addr, servers, workers);
    settings.key = scheduler_key;
    cluster(&mut settings);
    let servers = (0..servers)
        .map(|i| {
            let mut cfg = ServerConfig::new(settings.clone(), loopback());
            // The tests compare replicas by their digests.
            cfg.digest_on_exit = true;
            server(i, &mut cfg);
            std::thread::spawn(move || run_server(&cfg))
        })
        .collect();
    Job {
        scheduler,
        servers,
        cluster: settings,
    }
}

impl Job {
    /// Runs `body` on `n` worker threads (each with its own connection) and returns their
    /// results in thread order.
    pub fn run_workers<T: Send + 'static>(
        &self,
        n: usize,
        body: impl Fn(Worker) -> T + Send + Sync + Clone + 'static,
    ) -> Vec<T> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let cfg = WorkerConfig {
                    cluster: self.cluster.clone(),
                };
                let body = body.clone();
                std::thread::spawn(move || body(Worker::connect(&cfg).expect("worker connects")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect()
    }

    /// Has one worker push `key` once and read it back, then finish, and waits for the job to
    /// end: the job is still whole after whatever the test did to it.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn finish_after_a_round_trip(self, key: u64) {
        self.run_workers(1, move |w| {
            let t = w.declare_table(TableSpec::new("t", 1)).unwrap();
            w.push(t, &[key], &[1.0]).unwrap();
            assert_eq!(w.pull(t, &[key]).unwrap(), vec![1.0]);
            w.finish().unwrap();
        });
        self.join();
    }

    /// Waits for the scheduler and servers to exit and returns the servers' reports.
    pub fn join(self) -> (JobSummary, Vec<ServerReport>) {
        let summary = self
            .scheduler
            .join()
            .unwrap()
            .expect("scheduler ends cleanly");
        let reports = self
            .servers
            .into_iter()
            .map(|s| s.join().unwrap().expect("server ends cleanly"))
            .collect();
        (summary, reports)
    }
}

/// A frame's bytes as they travel: the header, the keys and the values each padded to 8 bytes.
#[allow(dead_code)] // not every test binary uses every helper
pub fn frame_bytes(header: ferrops_net::Header, keys: &[u64], values: &[f32]) -> Vec<u8> {
    use ferrops_net::{pad8, FrameParts, HEADER_LEN};
    use zerocopy::IntoBytes;
    let vals = [values.as_bytes()];
    let mut frame = FrameParts {
        header,
        keys: keys.as_bytes(),
        values: if values.is_empty() { &[] } else { &vals },
        extra: &[],
    };
    frame.finish(true);
    let mut bytes = frame.header.as_bytes().to_vec();
    bytes.extend_from_slice(keys.as_bytes());
    bytes.resize(HEADER_LEN + pad8(keys.len() * 8), 0);
    bytes.extend_from_slice(values.as_bytes());
    bytes.resize(
        HEADER_LEN + pad8(keys.len() * 8) + pad8(values.len() * 4),
        0,
    );
    bytes
}

/// Heartbeats every 50 ms and death after `timeout_ms` of silence: short against the work a
/// liveness test does, long against a thread waiting for a core on a loaded machine.
#[allow(dead_code)] // not every test binary uses every helper
pub fn short_heartbeats(timeout_ms: u64) -> ferrops_engine::config::LivenessConfig {
    ferrops_engine::config::LivenessConfig {
        heartbeat_interval: Duration::from_millis(50),
        heartbeat_timeout: Duration::from_millis(timeout_ms),
        ..ferrops_engine::config::LivenessConfig::default()
    }
}
