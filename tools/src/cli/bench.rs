//! Flags of `ferrops bench push-pull|kernels|reducers`.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use ferrops_net::TransportMode;

use crate::jobs::{fraction, non_negative_number, positive_count};

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

/// `--transport tcp|rdma|auto`, read into the transport library's own [`TransportMode`], with a
/// line of help per value.
fn transport_mode() -> impl TypedValueParser<Value = TransportMode> {
    PossibleValuesParser::new([
        PossibleValue::new("tcp").help("TCP sockets"),
        PossibleValue::new("rdma")
            .help("RDMA verbs (RoCE / InfiniBand); fails where no device is up"),
        PossibleValue::new("auto")
            .help("RDMA where a verbs device with an active port exists, TCP otherwise"),
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
            transport: self.transport,
            floor: self.floor,
            json: self.json,
            warmup: self.warmup,
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
