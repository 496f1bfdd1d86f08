//! `ferrops bench push-pull`: push then pull the same keys repeatedly against a real cluster
//! (scheduler and servers as child processes, workers as threads of this process, each with its
//! own connections), mirroring ps-lite's `test_kv_app_benchmark`. With `--floor`, the same
//! request and response sizes are also timed over raw TCP in the same run, and our figures are
//! reported as ratios of that floor. Over RDMA (`--transport rdma`, or `auto` where a device
//! is up) `--floor` also runs perftest's `ib_send_lat` and `ib_write_lat` on the same device
//! with the request's size, and reports our round trips as ratios of the floor they give: the
//! `ib_send_lat` round trip for a small request, the `ib_write_lat` one-way figure for a bulk one
//! (perftest prints one-way latency, half its round trip; a bulk push or pull moves its bytes one
//! way and a small frame back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferrops_engine::filter::ReducerStats;
use ferrops_engine::{KeyList, TableSpec, Worker, SIGNED_MIN_KEYS};
use ferrops_net::{MetricsSnapshot, HEADER_LEN};
use serde::Serialize;

use ferrops_net::TransportMode;

use super::floor::{self, LatencyStats, ThroughputStats, Wait};
use crate::launch::{LocalCluster, LocalSpec};
use crate::roles::ServerMemory;

mod print;
use print::print_human;

/// What to measure.
#[derive(Clone, Debug)]
pub struct PushPullOptions {
    /// Keys pushed and pulled per iteration.
    pub keys: u64,
    /// Measured iterations.
    pub iters: usize,
    /// Values per key (f32 each).
    pub val_len: usize,
    /// Servers in the benchmark cluster.
    pub servers: usize,
    /// Workers in the benchmark cluster.
    pub workers: usize,
    /// Replication factor of the benchmark cluster (servers holding each key range).
    pub replication: usize,
    /// When a replicated run's heads send pushes down their chains.
    pub replication_mode: ferrops_engine::config::ReplicationMode,
    /// Transport between workers and servers.
    pub transport: TransportMode,
    /// Also measure the floor (raw TCP, and perftest over RDMA) and report ratios against it.
    pub floor: bool,
    /// Print one JSON object instead of a table.
    pub json: bool,
    /// Unmeasured warm-up iterations.
    pub warmup: usize,
    /// Send the key list whole with every request and have the server resolve it anew (the
    /// table's key caching off), as for a fresh list every request.
    pub fresh_keys: bool,
    /// Pass the keys as a plain slice every time (checked and signed on every request) rather
    /// than as a [`KeyList`] made once.
    pub slice_keys: bool,
    /// Every node puts a payload CRC-32C on its frames (off by default).
    pub payload_checksum: bool,
}

/// Keys spread evenly over the u64 space (so every server gets its share).
pub fn spread_keys(n: usize) -> Vec<u64> {
    let step = u64::MAX / n.max(1) as u64;
    (0..n as u64).map(|i| i * step).collect()
}

#[derive(Debug, Default)]
pub(super) struct Samples {
    pub(super) push_us: Vec<f64>,
    pub(super) pull_us: Vec<f64>,
    net: MetricsSnapshot,
    reducers: ReducerStats,
    /// Server connections over RDMA and over shared memory, and in all.
    rdma_connections: usize,
    shm_connections: usize,
    connections: usize,
    /// What each server held when it stopped (empty for a joined job).
    servers: Vec<ServerMemory>,
}

/// The servers' memory when they stopped, summed over servers, next to the raw bytes of the
/// keys and values they hold.
#[derive(Debug, Serialize)]
struct MemoryReport {
    /// Resident sets of the server processes.
    resident_bytes: u64,
    values_bytes: u64,
    state_bytes: u64,
    key_map_bytes: u64,
    resolution_cache_bytes: u64,
    /// 8 bytes per key plus its values and rule state, as f32.
    raw_bytes: u64,
    /// Resident bytes over raw bytes.
    resident_over_raw: f64,
}

/// Bytes the workers sent, per frame section.
#[derive(Debug, Serialize)]
struct Sections {
    header: u64,
    keys: u64,
    values: u64,
    extra: u64,
}

#[derive(Debug, Serialize)]
struct Floor {
    /// Raw TCP ping-pongs of the push's and the pull's bytes, blocking sockets.
    push_round_trip: LatencyStats,
    pull_round_trip: LatencyStats,
    /// The same ping-pongs with both ends busy-polling non-blocking sockets: the real floor.
    push_round_trip_spin: LatencyStats,
    pull_round_trip_spin: LatencyStats,
    /// A raw one-way stream of the push request's bytes: the median of the runs.
    stream: ThroughputStats,
    /// Every run of that stream (one per measured iteration), as durations.
    stream_runs: LatencyStats,
    /// A raw one-way stream of the pull reply's bytes, one run per measured iteration.
    pull_stream_runs: LatencyStats,
    /// The same two streams from a buffer holding all the bytes into another (the caller's
    /// values into a table, a table into the caller's buffer) instead of one cached chunk's.
    stream_whole_runs: LatencyStats,
    pull_stream_whole_runs: LatencyStats,
    /// Our p50 over the blocking ping-pong's.
    push_p50_ratio: f64,
    pull_p50_ratio: f64,
    /// Our p50 over the busy-polling ping-pong's.
    push_p50_ratio_spin: f64,
    pull_p50_ratio_spin: f64,
    /// Our push p50 over the median time the raw stream took to move the same bytes.
    push_stream_ratio: f64,
    /// Our pull p50 over the median time a raw stream took to move the reply's bytes.
    pull_stream_ratio: f64,
    /// Our push and pull p50 over the whole-buffer streams' medians.
    push_stream_whole_ratio: f64,
    pull_stream_whole_ratio: f64,
    /// perftest on the RDMA device (RDMA runs only).
    perftest: Option<PerftestFloor>,
    /// Raw ring ping-pongs and a memcpy of the values (shared-memory runs only).
    shm: Option<super::shm_floor::ShmFloor>,
}

/// perftest's latency on the device, and our p50 round trips over the floor it gives: for a
/// small request the `ib_send_lat` round trip (a request and a reply each way), for a bulk one
/// (over [`BULK_FLOOR_BYTES`]) the `ib_write_lat` *one-way* figure for its size, since a bulk
/// push or pull moves its bytes one way and only a small frame back.
#[derive(Debug, Serialize)]
struct PerftestFloor {
    device: String,
    /// What the ratios divide by: `ib_send_lat round trip` or `ib_write_lat one-way`.
    floor: &'static str,
    floor_us: f64,
    /// `ib_send_lat` with the push request's size: twice its typical one-way latency, the
    /// faster of [`FLOOR_RUNS`] runs.
    send_round_trip_us: f64,
    /// `ib_write_lat` likewise.
    write_round_trip_us: f64,
    /// Every run's `ib_send_lat` round trip, in order.
    send_runs_us: Vec<f64>,
    /// Every run's `ib_write_lat` round trip, in order.
    write_runs_us: Vec<f64>,
    push_p50_ratio: f64,
    pull_p50_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    /// What the connections really used: `rdma`, `shm`, `tcp`, or `mixed`.
    transport: &'static str,
    servers: usize,
    workers: usize,
    keys: u64,
    val_len: usize,
    iters: usize,
    push: LatencyStats,
    pull: LatencyStats,
    push_gb_per_s: f64,
    pull_gb_per_s: f64,
    bytes_sent: u64,
    bytes_received: u64,
    value_bytes_copied: u64,
    /// RDMA bulk frames the workers sent into regions their servers advertised ahead, and
    /// after a rendezvous.
    bulk_frames_landed: u64,
    bulk_frames_rendezvous: u64,
    sent_by_section: Sections,
    reducers: ReducerStats,
    fresh_keys: bool,
    /// The servers' own report of their memory (runs that start their own cluster).
    server_memory: Option<MemoryReport>,
    floor: Option<Floor>,
}

/// Runs the benchmark and prints its report (JSON as the last line with `--json`). Started as
/// a worker of an existing job (`FERROPS_SCHEDULER` is set, e.g. under `ferrops local` or a
/// batch launcher), it joins that job as one worker and reports what this worker measured;
/// otherwise it starts its own cluster.
pub fn run(args: &PushPullOptions) -> Result<()> {
    if std::env::var_os(crate::config::ENV_SCHEDULER).is_some() {
        return run_joined(args);
    }
    check_args(args)?;
    if args.replication > 1 {
        return super::replication::compare(args);
    }
    let mut all = run_cluster(args)?;
    let report = build_report(args, &mut all)?;
    print_human(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Starts a cluster as `args` say, runs the workers' loops on it, stops it, and returns what
/// they measured.
pub(super) fn run_cluster(args: &PushPullOptions) -> Result<Samples> {
    let keys = Arc::new(spread_keys(args.keys as usize));
    let mut spec = LocalSpec::new(args.servers, args.workers)?;
    let reports = std::env::temp_dir().join(format!(
        "ferrops-bench-{}-{}",
        std::process::id(),
        REPORT_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&reports).context("creating the server report directory")?;
    spec.report_dir = Some(reports.clone());
    spec.shutdown_grace = Duration::from_secs(30);
    spec.transport = Some(args.transport);
    spec.replication = Some(args.replication);
    spec.replication_mode = Some(args.replication_mode);
    spec.payload_checksum = Some(args.payload_checksum);
    let cluster = LocalCluster::start(&spec).context("starting the benchmark cluster")?;
    let cfg = cluster.worker_config();
    let handles: Vec<_> = (0..args.workers)
        .map(|_| {
            let (cfg, keys, args) = (cfg.clone(), keys.clone(), args.clone());
            std::thread::spawn(move || worker_loop(&cfg, &keys, &args))
        })
        .collect();
    let mut all = Samples::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("a benchmark worker panicked"))??;
        all.push_us.extend(s.push_us);
        all.pull_us.extend(s.pull_us);
        add_metrics(&mut all.net, &s.net);
        all.reducers.merge(&s.reducers);
        all.rdma_connections += s.rdma_connections;
        all.shm_connections += s.shm_connections;
        all.connections += s.connections;
    }
    cluster
        .wait(Duration::from_secs(60))
        .context("stopping the benchmark cluster")?;
    for i in 0..args.servers {
        let path = reports.join(format!("server-{i}.json"));
        // A server that could not write its report leaves the memory report out, no more.
        if let Ok(bytes) = std::fs::read(&path) {
            all.servers.push(serde_json::from_slice(&bytes)?);
        }
    }
    std::fs::remove_dir_all(&reports).ok();
    Ok(all)
}

/// Numbers the report directories of the clusters this process starts.
static REPORT_DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn run_joined(args: &PushPullOptions) -> Result<()> {
    check_args(args)?;
    let mut cfg = ferrops::worker_config_from_env().context("joining the job")?;
    if args.transport != TransportMode::Auto {
        cfg.cluster.transport = args.transport;
    }
    // The job's servers send as their own settings say; this worker follows the flag.
    cfg.cluster.payload_checksum |= args.payload_checksum;
    let mut args = args.clone();
    args.servers = cfg.cluster.num_servers;
    args.workers = cfg.cluster.num_workers;
    let keys = spread_keys(args.keys as usize);
    let mut samples = worker_loop(&cfg, &keys, &args)?;
    let report = build_report(&args, &mut samples)?;
    print_human(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn check_args(args: &PushPullOptions) -> Result<()> {
    // Fail before starting anything when RDMA is demanded but unavailable.
    ferrops_net::transport::resolve(args.transport)?;
    ensure!(
        args.keys > 0 && args.iters > 0 && args.val_len > 0,
        "keys, iters and val-len must be positive"
    );
    ensure!(
        (1..=args.servers).contains(&args.replication),
        "replication factor {} needs at least {} servers, but the benchmark has {} (--servers)",
        args.replication,
        args.replication,
        args.servers
    );
    Ok(())
}

fn add_metrics(total: &mut MetricsSnapshot, m: &MetricsSnapshot) {
    total.frames_sent += m.frames_sent;
    total.frames_received += m.frames_received;
    total.header_bytes_sent += m.header_bytes_sent;
    total.key_bytes_sent += m.key_bytes_sent;
    total.value_bytes_sent += m.value_bytes_sent;
    total.extra_bytes_sent += m.extra_bytes_sent;
    total.header_bytes_received += m.header_bytes_received;
    total.key_bytes_received += m.key_bytes_received;
    total.value_bytes_received += m.value_bytes_received;
    total.extra_bytes_received += m.extra_bytes_received;
    total.value_bytes_copied += m.value_bytes_copied;
    total.bulk_frames_landed += m.bulk_frames_landed;
    total.bulk_frames_rendezvous += m.bulk_frames_rendezvous;
}

fn worker_loop(
    cfg: &ferrops_engine::config::WorkerConfig,
    keys: &[u64],
    args: &PushPullOptions,
) -> Result<Samples> {
    let w = Worker::connect(cfg)?;
    let spec = TableSpec::new("bench", args.val_len as u32).key_caching(!args.fresh_keys);
    let table = w.declare_table(spec)?;
    let values = vec![1.0f32; keys.len() * args.val_len];
    let mut out = vec![0.0f32; values.len()];
    // Made (checked) once, outside the timed loop, as a caller that repeats its keys would.
    let list = KeyList::new(keys.to_vec())?;
    let mut s = Samples::default();
    for i in 0..args.warmup + args.iters {
        let t0 = Instant::now();
        if args.slice_keys {
            w.push(table, keys, &values)?;
        } else {
            w.push_list(table, &list, &values)?;
        }
        let t1 = Instant::now();
        if args.slice_keys {
            w.pull_into(table, keys, &mut out)?;
        } else {
            w.pull_list_into(table, &list, &mut out)?;
        }
        let t2 = Instant::now();
        // The server really summed: at least this worker's own i + 1 pushes are in every value.
        let floor = (i + 1) as f32;
        if let Some(bad) = out.iter().find(|&&v| v < floor) {
            bail!(
                "pulled {bad} after {} pushes of 1.0: the server lost updates",
                i + 1
            );
        }
        if i >= args.warmup {
            s.push_us.push((t1 - t0).as_secs_f64() * 1e6);
            s.pull_us.push((t2 - t1).as_secs_f64() * 1e6);
        }
    }
    s.net = w.metrics();
    s.reducers = w.reducer_stats();
    s.rdma_connections = w.rdma_connections();
    s.shm_connections = w.shm_connections();
    s.connections = cfg.cluster.total_shards();
    w.finish()?;
    Ok(s)
}

fn build_report(args: &PushPullOptions, all: &mut Samples) -> Result<Report> {
    let n = args.keys as usize;
    let value_bytes = n * args.val_len * 4;
    // What a steady-state request really carries: lists of SIGNED_MIN_KEYS keys or more are
    // cached after the first request and travel as a signature (part of the header).
    let key_bytes = if n >= SIGNED_MIN_KEYS && !args.fresh_keys {
        0
    } else {
        n * 8
    };
    let push_req = HEADER_LEN + key_bytes + value_bytes;
    let pull_req = HEADER_LEN + key_bytes;
    let pull_resp = HEADER_LEN + value_bytes;
    let push = LatencyStats::from_samples(&mut all.push_us);
    let pull = LatencyStats::from_samples(&mut all.pull_us);
    let gbps = |bytes: usize, us: f64| {
        if us > 0.0 {
            bytes as f64 / us / 1e3
        } else {
            0.0
        }
    };
    let floor = if args.floor {
        let iters = if push_req > 1 << 20 {
            args.iters.min(10)
        } else {
            args.iters.max(100)
        };
        let warmup = args.warmup.max(1);
        let ping_pong =
            |request, response, wait| floor::tcp_ping_pong(request, response, iters, warmup, wait);
        let push_rt = ping_pong(push_req, HEADER_LEN, Wait::Block)?;
        let pull_rt = ping_pong(pull_req, pull_resp, Wait::Block)?;
        let push_spin = ping_pong(push_req, HEADER_LEN, Wait::Spin)?;
        let pull_spin = ping_pong(pull_req, pull_resp, Wait::Spin)?;
        // One stream per measured iteration: a single run is as exposed to the machine's noise
        // as a single push would be.
        let streams = |bytes, whole| -> Result<(ThroughputStats, LatencyStats)> {
            let stream = match whole {
                false => floor::tcp_stream,
                true => floor::tcp_stream_whole,
            };
            let mut runs = (0..iters)
                .map(|_| stream(bytes, STREAM_CHUNK))
                .collect::<std::io::Result<Vec<_>>>()?;
            runs.sort_by(|a, b| a.elapsed_s.total_cmp(&b.elapsed_s));
            let mut us: Vec<f64> = runs.iter().map(|r| r.elapsed_s * 1e6).collect();
            let stats = LatencyStats::from_samples(&mut us);
            let median = runs[(runs.len() - 1) / 2];
            Ok((median, stats))
        };
        let (stream, stream_runs) = streams(push_req, false)?;
        let (_, pull_stream_runs) = streams(pull_resp, false)?;
        let (_, stream_whole_runs) = streams(push_req, true)?;
        let (_, pull_stream_whole_runs) = streams(pull_resp, true)?;
        let perftest = if all.rdma_connections > 0 {
            perftest_floor(args, push_req, &push, &pull)?
        } else {
            None
        };
        let shm = if all.shm_connections > 0 {
            Some(super::shm_floor::measure(
                (push_req, pull_req, pull_resp, value_bytes),
                (iters, warmup),
                (push.p50_us, pull.p50_us),
            )?)
        } else {
            None
        };
        Some(Floor {
            shm,
            push_p50_ratio: push.p50_us / push_rt.p50_us,
            pull_p50_ratio: pull.p50_us / pull_rt.p50_us,
            push_p50_ratio_spin: push.p50_us / push_spin.p50_us,
            pull_p50_ratio_spin: pull.p50_us / pull_spin.p50_us,
            push_stream_ratio: push.p50_us / stream_runs.p50_us,
            pull_stream_ratio: pull.p50_us / pull_stream_runs.p50_us,
            push_stream_whole_ratio: push.p50_us / stream_whole_runs.p50_us,
            pull_stream_whole_ratio: pull.p50_us / pull_stream_whole_runs.p50_us,
            push_round_trip: push_rt,
            pull_round_trip: pull_rt,
            push_round_trip_spin: push_spin,
            pull_round_trip_spin: pull_spin,
            stream,
            stream_runs,
            pull_stream_runs,
            stream_whole_runs,
            pull_stream_whole_runs,
            perftest,
        })
    } else {
        None
    };
    Ok(Report {
        bench: "push-pull",
        transport: match (all.rdma_connections, all.shm_connections, all.connections) {
            (0, 0, _) => "tcp",
            (r, 0, n) if r == n => "rdma",
            (0, s, n) if s == n => "shm",
            _ => "mixed",
        },
        servers: args.servers,
        workers: args.workers,
        keys: args.keys,
        val_len: args.val_len,
        iters: args.iters,
        push_gb_per_s: gbps(push_req, push.p50_us),
        pull_gb_per_s: gbps(pull_req + pull_resp, pull.p50_us),
        push,
        pull,
        bytes_sent: all.net.bytes_sent(),
        bytes_received: all.net.bytes_received(),
        value_bytes_copied: all.net.value_bytes_copied,
        bulk_frames_landed: all.net.bulk_frames_landed,
        bulk_frames_rendezvous: all.net.bulk_frames_rendezvous,
        sent_by_section: Sections {
            header: all.net.header_bytes_sent,
            keys: all.net.key_bytes_sent,
            values: all.net.value_bytes_sent,
            extra: all.net.extra_bytes_sent,
        },
        reducers: all.reducers.clone(),
        fresh_keys: args.fresh_keys,
        server_memory: memory_report(args, &all.servers),
        floor,
    })
}

/// The servers' memory summed, against the raw bytes of what they hold (`None` when no
/// server reported).
fn memory_report(args: &PushPullOptions, servers: &[ServerMemory]) -> Option<MemoryReport> {
    if servers.is_empty() {
        return None;
    }
    let tables = || servers.iter().flat_map(|s| &s.tables);
    let sum = |f: fn(&crate::roles::TableMemory) -> u64| tables().map(f).sum::<u64>();
    let resident_bytes = servers.iter().map(|s| s.resident_bytes).sum();
    // The bench's table has no rule state (Sum); a replicated run holds each key R times.
    let keys = sum(|t| t.keys);
    let raw_bytes = keys * (8 + args.val_len as u64 * 4);
    Some(MemoryReport {
        resident_bytes,
        values_bytes: sum(|t| t.values_bytes),
        state_bytes: sum(|t| t.state_bytes),
        key_map_bytes: sum(|t| t.key_map_bytes),
        resolution_cache_bytes: sum(|t| t.resolution_cache_bytes),
        raw_bytes,
        resident_over_raw: resident_bytes as f64 / raw_bytes.max(1) as f64,
    })
}

/// Requests above this many bytes are bulk: their perftest floor is the one-way figure.
const BULK_FLOOR_BYTES: usize = 64 << 10;
/// Writes of the raw stream floor: large enough that system calls cost nothing next to the
/// copies, small enough that the sender's buffer stays in cache (the kindest floor).
const STREAM_CHUNK: usize = 1 << 20;

/// Separate runs of each perftest tool; the floor is the fastest. Under emulation a run lands
/// in a fast or a slow mode (round trips about 2x apart, seen in the soft-RoCE guest), so a
/// single run could flatter the ratio.
const FLOOR_RUNS: usize = 2;

/// perftest's send and write latency on the device this run used, with the push request's
/// size. A failure to run perftest fails the benchmark when `--transport rdma` was asked for
/// (the floor is part of what was asked) and is reported otherwise.
fn perftest_floor(
    args: &PushPullOptions,
    size: usize,
    push: &LatencyStats,
    pull: &LatencyStats,
) -> Result<Option<PerftestFloor>> {
    use super::perftest::{run_perftest, PerftestTool};
    let Some(dev) = ferrops_net::transport::resolve(args.transport)? else {
        return Ok(None);
    };
    let Some(ip) = dev.ipv4 else {
        bail!(
            "perftest floor: RDMA device {} has no IPv4 address",
            dev.device
        );
    };
    let port = free_tcp_port()?;
    // Enough round trips for a stable median without minutes of bulk transfers.
    let bulk = size > BULK_FLOOR_BYTES;
    let iterations = if bulk { 20 } else { 1000 };
    let run = |tool| match run_perftest(tool, &dev.device, ip, port, size, iterations) {
        Ok(lat) => Ok(Some(2.0 * lat.typical_us)),
        Err(e) if args.transport == TransportMode::Rdma => bail!("perftest floor: {e}"),
        Err(e) => {
            eprintln!("perftest floor skipped: {e}");
            Ok(None)
        }
    };
    let (mut send_runs, mut write_runs) = (Vec::new(), Vec::new());
    for _ in 0..FLOOR_RUNS {
        let (Some(send), Some(write)) = (run(PerftestTool::SendLat)?, run(PerftestTool::WriteLat)?)
        else {
            return Ok(None);
        };
        send_runs.push(send);
        write_runs.push(write);
    }
    let fastest = |runs: &[f64]| runs.iter().copied().fold(f64::INFINITY, f64::min);
    let (send, write) = (fastest(&send_runs), fastest(&write_runs));
    let (floor, floor_us) = if bulk {
        ("ib_write_lat one-way", write / 2.0)
    } else {
        ("ib_send_lat round trip", send)
    };
    Ok(Some(PerftestFloor {
        device: dev.device,
        floor,
        floor_us,
        send_round_trip_us: send,
        write_round_trip_us: write,
        send_runs_us: send_runs,
        write_runs_us: write_runs,
        push_p50_ratio: push.p50_us / floor_us,
        pull_p50_ratio: pull.p50_us / floor_us,
    }))
}

/// A TCP port nobody listens on now (perftest exchanges queue pair details over TCP).
fn free_tcp_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("0.0.0.0", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keys_are_sorted_unique_and_span_the_space() {
        let k = spread_keys(1000);
        assert!(k.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(k[0], 0);
        assert!(k[999] > u64::MAX / 1000 * 998);
        assert_eq!(spread_keys(1), vec![0]);
    }
}
