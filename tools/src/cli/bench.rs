//! Flags of `ferrops bench push-pull|kernels|reducers|sim`.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use ferrops_net::TransportMode;

use crate::jobs::{delay, fraction, non_negative_number, positive_count, positive_number};

/// `ferrops bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Push/pull throughput and latency through a local cluster, next to the raw TCP floor.
    PushPull(PushPullArgs),

    /// Update-kernel throughput (GB/s and elements/s) of every compiled-in instruction set.
    Kernels(KernelsArgs),

    /// Bytes on the wire, time and final objective of sparse L1 logistic regression with each
    /// bandwidth reducer alone and all together, against none.
    Reducers(ReducersArgs),

    /// Predict time per iteration and idle time for many workers and servers by a
    /// deterministic simulation fed with costs (measured here with --measure).
    Sim(SimArgs),

    /// Checkpoint write and restore speed of one table, as fractions of a raw write+fsync and
    /// read of the same bytes in the same directory, measured in the same run.
    Checkpoint(CheckpointArgs),
}

/// Flags of `ferrops bench sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Worker counts to predict (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = positive_count,
        default_value = "1,2,4,8,16,32,64,128,256,512,1000")]
    pub workers: Vec<usize>,
    /// Server counts to predict (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = positive_count, default_value = "1,10,100")]
    pub servers: Vec<usize>,
    /// Bounded delays τ to predict (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = delay, default_value = "0")]
    pub tau: Vec<u32>,
    /// Iterations simulated per prediction.
    #[arg(long, value_parser = positive_count, default_value_t = 50)]
    pub iters: usize,
    /// Weak scaling: each worker computes `--compute-ms` on its own data (default: strong
    /// scaling, the work split across the workers).
    #[arg(long)]
    pub weak: bool,
    /// Measure the wire rate, latency and apply rate on this machine first (overrides
    /// --wire-gbps, --latency-us and --apply-gbps).
    #[arg(long)]
    pub measure: bool,
    /// Milliseconds of computation per iteration on one worker holding all the data (0: the
    /// communication alone, what `bench push-pull` measures).
    #[arg(long, value_parser = non_negative_number::<f64>, default_value_t = 100.0)]
    pub compute_ms: f64,
    /// Megabytes (10^6) each worker pulls per iteration.
    #[arg(long, value_parser = non_negative_number::<f64>, default_value_t = 4.0)]
    pub pull_mb: f64,
    /// Megabytes each worker pushes per iteration.
    #[arg(long, value_parser = non_negative_number::<f64>, default_value_t = 4.0)]
    pub push_mb: f64,
    /// Link rate in GB/s, each direction.
    #[arg(long, value_parser = positive_number::<f64>, default_value_t = 5.0)]
    pub wire_gbps: f64,
    /// Rate at which a server applies pushed values, GB/s.
    #[arg(long, value_parser = positive_number::<f64>, default_value_t = 5.0)]
    pub apply_gbps: f64,
    /// Fixed cost per request (round trip), microseconds.
    #[arg(long, value_parser = non_negative_number::<f64>, default_value_t = 20.0)]
    pub latency_us: f64,
    /// Fraction of (worker, iteration) pairs that straggle.
    #[arg(long, value_parser = fraction, default_value_t = 0.0)]
    pub straggler_p: f32,
    /// How many times slower a straggler computes.
    #[arg(long, value_parser = positive_number::<f64>, default_value_t = 1.0)]
    pub straggler_k: f64,
    /// Seed of the straggler draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `ferrops bench checkpoint`.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Keys of the table (Adam, one value each, so three floats a key).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 10_000_000)]
    pub keys: u64,

    /// A dense table (keys 0..N, no key map) instead of a sparse one.
    #[arg(long)]
    pub dense: bool,

    /// Servers that write the checkpoint.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub servers: usize,

    /// Servers that restore it [default: --servers].
    #[arg(long, value_parser = positive_count)]
    pub restore_servers: Option<usize>,

    /// Measured rounds (each: fill, checkpoint, restore, and the disk floor).
    #[arg(long, value_parser = positive_count, default_value_t = 3)]
    pub rounds: usize,

    /// Directory for the checkpoints and the floor's file [default: a fresh temporary one,
    /// removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,

    /// Also print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl SimArgs {
    /// The simulation's options.
    pub fn options(&self) -> crate::bench::sim::SimOptions {
        use crate::bench::sim::{Costs, SimOptions};
        SimOptions {
            costs: Costs {
                wire_bytes_per_s: self.wire_gbps * 1e9,
                apply_bytes_per_s: self.apply_gbps * 1e9,
                latency_s: self.latency_us * 1e-6,
                compute_s: self.compute_ms * 1e-3,
                pull_bytes: self.pull_mb * 1e6,
                push_bytes: self.push_mb * 1e6,
                straggler_p: f64::from(self.straggler_p),
                straggler_k: self.straggler_k,
            },
            workers: self.workers.clone(),
            servers: self.servers.clone(),
            taus: self.tau.clone(),
            iters: self.iters as u32,
            weak: self.weak,
            measure: self.measure,
            seed: self.seed,
            json: self.json,
        }
    }
}

impl CheckpointArgs {
    /// The benchmark these flags ask for.
    pub fn options(&self) -> crate::bench::checkpoint::CheckpointOptions {
        crate::bench::checkpoint::CheckpointOptions {
            keys: self.keys,
            dense: self.dense,
            servers: self.servers,
            restore_servers: self.restore_servers.unwrap_or(self.servers),
            rounds: self.rounds,
            dir: self.dir.clone(),
            json: self.json,
        }
    }
}

/// Flags of `ferrops bench reducers`.
#[derive(Debug, Clone, Args)]
pub struct ReducersArgs {
    /// Feature-space size (power-law frequencies).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 1_000_000)]
    pub features: u64,
    /// Training examples.
    #[arg(long, value_parser = positive_count, default_value_t = 200_000)]
    pub examples: usize,
    /// Passes over the data (the same in every configuration).
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub epochs: usize,
    /// L1 penalty λ (proximal SGD on the servers).
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 1e-3)]
    pub l1: f32,
    /// Significantly-modified filter threshold θ used by the runs that enable it.
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.05)]
    pub theta: f32,
    /// Changed-only pull threshold θ used by the runs that enable it.
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.01)]
    pub changed_theta: f32,
    /// KKT filter: skip only when |g| ≤ λ·(1 − margin).
    #[arg(long, value_parser = fraction, allow_hyphen_values = true, default_value_t = 0.1)]
    pub kkt_margin: f32,
    /// KKT filter: push every key every this many batches.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 8)]
    pub kkt_recheck: u64,
    /// Value codec of the run with all reducers (raw, fp16, bf16, lz4).
    #[arg(long, default_value = "fp16")]
    pub values: String,
    /// Also run bf16 and lz4 values alone (fp16 always runs).
    #[arg(long)]
    pub every_codec: bool,
    /// Servers and workers of each run's local cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
}

/// `--transport tcp|rdma|auto|shm`, read into the transport library's own [`TransportMode`], with a
/// line of help per value.
fn transport_mode() -> impl TypedValueParser<Value = TransportMode> {
    PossibleValuesParser::new([
        PossibleValue::new("tcp").help("TCP sockets"),
        PossibleValue::new("rdma")
            .help("RDMA verbs (RoCE / InfiniBand); fails where no device is up"),
        PossibleValue::new("auto").help(
            "shared memory to servers on this host, else RDMA where a device is up, else TCP",
        ),
        PossibleValue::new("shm").help("shared memory (servers on this host)"),
    ])
    .map(|name| {
        name.parse::<TransportMode>()
            .expect("every possible value names a transport")
    })
}

/// Flags of `ferrops bench push-pull`.
#[derive(Debug, Clone, Args)]
pub struct PushPullArgs {
    /// Number of keys pushed and pulled per iteration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 10_000_000)]
    pub keys: u64,

    /// Measured iterations.
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub iters: usize,

    /// Values per key (f32 each).
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub val_len: usize,

    /// Servers in the benchmark cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub servers: usize,

    /// Workers in the benchmark cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub workers: usize,

    /// Replication factor R of the benchmark cluster: servers holding each key range (1 to
    /// --servers); a push is acknowledged once all R applied it. Above 1, the benchmark runs
    /// R = 1 and R in alternating rounds and reports both and their ratio.
    #[arg(long, value_name = "R", value_parser = positive_count, default_value_t = 1)]
    pub replication: usize,

    /// When the heads of the replicated runs send pushes down their chains: `each` push, or
    /// `aggregated` batches (one update per batch of the workers' pushes; see `ferrops server
    /// --replication-mode`).
    #[arg(long, value_name = "each|aggregated", default_value = "each")]
    pub replication_mode: ferrops_engine::config::ReplicationMode,

    /// Transport between workers and servers.
    #[arg(long, value_parser = transport_mode(), default_value = "auto")]
    pub transport: TransportMode,

    /// Also measure the floor in the same run and report ratios against it: raw TCP
    /// ping-pong of the same sizes, and over RDMA also perftest's ib_send_lat / ib_write_lat on
    /// the same device.
    #[arg(long)]
    pub floor: bool,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Unmeasured warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,

    /// Send the keys with every request and have the server resolve them anew (key caching
    /// off for the table), as when every request carries a fresh key list.
    #[arg(long)]
    pub fresh_keys: bool,
    /// Pass the keys as a plain slice on every request (checked and signed each time) instead
    /// of a `KeyList` made once (checked once, each server's part signed once)
    #[arg(long)]
    pub slice_keys: bool,
    /// Every node of the benchmark cluster puts a payload CRC-32C on the frames it sends (off
    /// by default, as in any job)
    #[arg(long)]
    pub payload_checksum: bool,
}

/// Flags of `ferrops bench kernels`.
#[derive(Debug, Clone, Args)]
pub struct KernelsArgs {
    /// Elements per kernel call.
    #[arg(long, value_parser = positive_count, default_value_t = 64 << 20)]
    pub elements: usize,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl PushPullArgs {
    /// The benchmark these flags ask for.
    pub fn options(&self) -> crate::bench::push_pull::PushPullOptions {
        crate::bench::push_pull::PushPullOptions {
            keys: self.keys,
            iters: self.iters,
            val_len: self.val_len,
            servers: self.servers,
            workers: self.workers,
            replication: self.replication,
            replication_mode: self.replication_mode,
            transport: self.transport,
            floor: self.floor,
            json: self.json,
            warmup: self.warmup,
            fresh_keys: self.fresh_keys,
            slice_keys: self.slice_keys,
            payload_checksum: self.payload_checksum,
        }
    }
}

impl ReducersArgs {
    /// The benchmark these flags ask for.
    pub fn options(&self) -> crate::bench::reducers::ReducersOptions {
        crate::bench::reducers::ReducersOptions {
            features: self.features,
            examples: self.examples,
            epochs: self.epochs,
            l1: self.l1,
            theta: self.theta,
            changed_theta: self.changed_theta,
            kkt_margin: self.kkt_margin,
            kkt_recheck: self.kkt_recheck,
            values: self.values.clone(),
            every_codec: self.every_codec,
            servers: self.servers,
            workers: self.workers,
            json: self.json,
        }
    }
}
