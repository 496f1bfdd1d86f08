//! Command-line interface of the `ferrops` binary: the clap definitions of every subcommand and
//! their flags. Parsing only; `main.rs` dispatches and `config.rs` turns the cluster flags into
//! role configurations.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where cluster settings come from; shown in the long help of every role.
macro_rules! precedence_help {
    () => {
        "\
Configuration sources, highest precedence first:
  1. flags (--scheduler, --num-servers, --num-workers, --bind, --connect-timeout-ms)
  2. environment: FERROPS_SCHEDULER, FERROPS_NUM_SERVERS, FERROPS_NUM_WORKERS, FERROPS_BIND,
     FERROPS_SECRET, FERROPS_CONNECT_TIMEOUT_MS
  3. the TOML file named by --config or FERROPS_CONFIG
  4. built-in defaults

TOML file keys: scheduler, num_servers, num_workers, bind, secret, connect_timeout_ms and a
[limits] table with max_keys_bytes, max_values_bytes, max_extra_bytes. Unknown keys are errors.

Like ps-lite's DMLC_ROLE, FERROPS_ROLE=scheduler|server|worker makes a bare `ferrops` run that
role (a worker then takes its job from FERROPS_JOB).

Logging goes to stderr; filter it with FERROPS_LOG or RUST_LOG (default: info)."
    };
}

const PRECEDENCE_HELP: &str = precedence_help!();

const TOP_LEVEL_HELP: &str = concat!(
    "\
Examples:
  # A whole job on this machine:
  ferrops local --servers 2 --workers 4 -- ferrops worker --job NAME

  # From an HPC launcher, ps-lite style (the same environment on every node):
  export FERROPS_SCHEDULER=node001:9000 FERROPS_NUM_SERVERS=4 FERROPS_NUM_WORKERS=16
  export FERROPS_SECRET=...          # required off loopback: the connect-time challenge
  FERROPS_ROLE=scheduler ferrops     # on node001
  FERROPS_ROLE=server ferrops        # on each server node
  FERROPS_ROLE=worker ./trainer      # each worker: your program linking ferrops

",
    precedence_help!()
);

/// The ferrops parameter server.
#[derive(Debug, Parser)]
#[command(
    name = "ferrops",
    version,
    about = "ferrops: a parameter server for distributed ML",
    long_about = "ferrops: a parameter server for distributed ML.\n\n\
        A job runs one scheduler, S servers holding the parameters, and W workers pushing \
        gradients and pulling weights, in the style of ps-lite. Start each role by hand or from \
        your HPC launcher (`ferrops scheduler`, `ferrops server`, `ferrops worker`, or FERROPS_ROLE), \
        or start a whole cluster on this machine with `ferrops local`.",
    after_long_help = TOP_LEVEL_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The `ferrops` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler: the rendezvous point that assigns ranks and ends the job.
    ///
    /// Once listening it prints exactly one line `FERROPS_SCHEDULER=<ip:port>` on stdout, so a
    /// launcher that bound port 0 learns the address to hand to servers and workers.
    #[command(after_long_help = PRECEDENCE_HELP)]
    Scheduler(RoleArgs),

    /// Run a server: holds a shard of the parameters and applies pushed updates.
    #[command(after_long_help = PRECEDENCE_HELP)]
    Server(ServerArgs),

    /// Run one of the built-in worker jobs (your own programs link the `ferrops` library instead).
    #[command(after_long_help = PRECEDENCE_HELP)]
    Worker(WorkerArgs),

    /// Start a whole cluster on loopback: a scheduler, S servers and W copies of a worker command.
    ///
    /// Each worker command runs with FERROPS_ROLE=worker, FERROPS_SCHEDULER,
    /// FERROPS_NUM_SERVERS and FERROPS_NUM_WORKERS set, so any program that reads them (your own
    /// binary linking ferrops, or `ferrops worker --job NAME`) joins the cluster. A command named
    /// `ferrops` runs this same binary.
    ///
    /// The launcher exits 0 when every worker exited 0. On the first failure it stops the rest
    /// and exits with the failed process's code (128+N for a process killed by signal N).
    /// Ctrl-C and SIGTERM are forwarded to every process; nothing outlives the launcher.
    #[command(
        after_long_help = "Example:\n  ferrops local --servers 2 --workers 4 -- ferrops worker --job sgd -- --epochs 3"
    )]
    Local(LocalArgs),

    /// Benchmarks, reported next to the raw network floor measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),

    /// End-to-end demo: generates a sparse data set and trains L1-regularised logistic
    /// regression on a local cluster (2 servers, 2 workers), with progress, summary and plot.
    Demo(DemoArgs),

    /// Data files: generate a synthetic LIBSVM set, or summarise one.
    #[command(subcommand)]
    Data(DataCommand),

    /// Train a model on a local cluster.
    #[command(subcommand)]
    Train(TrainCommand),

    /// Plot objective against seconds for one or more JSON-lines traces (`train --json`), one
    /// colour per trace in order (blue, orange, green, red, purple, brown, pink, grey), with a
    /// legend naming each by its file name.
    Plot(PlotArgs),
}

/// `ferrops data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a synthetic sparse binary classification set (LIBSVM format, 1-based indices):
    /// power-law feature frequencies, labels from a planted sparse weight vector plus noise.
    Gen(GenArgs),

    /// Print rows, features (largest index + 1, and distinct), nonzeros and label balance.
    Info(InfoArgs),

    /// Cut random square patches from PNG, JPEG or binary PGM/PPM images (colour averaged to
    /// grey), remove each patch's mean, ZCA-whiten the set and write one patch per line (input
    /// of `train rica`).
    Patches(PatchesArgs),
}

/// Flags of `ferrops data patches`.
#[derive(Debug, Clone, Args)]
pub struct PatchesArgs {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Patch side in pixels.
    #[arg(long, value_name = "P", default_value_t = 8, value_parser = positive_count)]
    pub size: usize,

    /// Number of patches.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = positive_count)]
    pub count: usize,

    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Shrink each image by this factor first (averaging F×F blocks): patches of a shrunk
    /// photograph hold more structure and less sensor noise.
    #[arg(long, value_name = "F", default_value_t = 1, value_parser = positive_count)]
    pub downscale: usize,

    /// ZCA regulariser ε added to the covariance eigenvalues (larger: smoother whitening).
    #[arg(long, value_name = "ε", default_value_t = 1e-2)]
    pub epsilon: f64,

    /// Images: PNG, JPEG, or binary PGM `P5` / PPM `P6` (8-bit).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// Flags of `ferrops data gen`.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Rows to write.
    #[arg(long, value_name = "N")]
    pub rows: u64,

    /// Feature indices are 1..=F.
    #[arg(long, value_name = "F", value_parser = clap::value_parser!(u64).range(1..))]
    pub features: u64,

    /// Feature draws per row (duplicates are merged, so rows have at most K nonzeros).
    #[arg(long, value_name = "K", default_value_t = 20)]
    pub nnz_per_row: usize,

    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

/// Flags of `ferrops data info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// A LIBSVM/svmlight file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `ferrops train` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// L1-regularised logistic regression, min Σ log(1+exp(−y·wᵀx)) + λ‖w‖₁, by delayed block
    /// proximal gradient with bounded delay τ, on a local cluster of S servers and W workers
    /// (worker r reads the r-th byte range of the file).
    L1lr(L1lrArgs),

    /// Reconstruction ICA: an overcomplete filter bank W minimising λ Σ √((Wx)²+ε) +
    /// ½‖WᵀWx − x‖² over whitened patches (`data patches`), workers pushing minibatch gradients,
    /// servers applying AdaGrad.
    Rica(RicaArgs),
}

/// Flags of `ferrops train rica`.
#[derive(Debug, Clone, Args)]
pub struct RicaArgs {
    /// Patches written by `ferrops data patches`.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// Filters (rows of W); more than the patch size makes the bank overcomplete.
    #[arg(long, value_name = "K", default_value_t = 128, value_parser = positive_count)]
    pub filters: usize,

    /// Sparsity weight λ.
    #[arg(long, default_value_t = 0.1)]
    pub lambda: f32,

    /// AdaGrad learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,

    /// Patches per minibatch.
    #[arg(long, default_value_t = 100, value_parser = positive_count)]
    pub batch: usize,

    /// Passes over the patches.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,

    /// Bounded delay τ in minibatches.
    #[arg(long, default_value_t = 1)]
    pub tau: u32,

    /// Scale of the random starting filters: their values have standard deviation INIT/√d, d
    /// being the values per patch.
    #[arg(long, default_value_t = 1.0)]
    pub init: f32,

    /// Servers.
    #[arg(long, value_name = "S", value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,

    /// Worker processes.
    #[arg(long, value_name = "W", value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,

    /// Save the learned filters, one per line.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,

    /// Draw the learned filters as a grid of tiles (PNG; each filter scaled on its own, zero is
    /// mid grey).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// Pixels per filter value in the grid.
    #[arg(long, value_name = "Z", value_parser = positive_count, default_value_t = 4)]
    pub zoom: usize,
}

/// Flags of `ferrops train l1lr`.
#[derive(Debug, Clone, Args)]
pub struct L1lrArgs {
    /// Training data (LIBSVM/svmlight).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// L1 penalty λ.
    #[arg(long, value_name = "λ", default_value_t = 1.0)]
    pub lambda: f32,

    /// Maximal delay τ in blocks (0: sequential block updates).
    #[arg(long, value_name = "τ", default_value_t = 0)]
    pub tau: u32,

    /// Servers.
    #[arg(long, value_name = "S", value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,

    /// Worker processes.
    #[arg(long, value_name = "W", value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,

    /// Feature blocks.
    #[arg(long, value_name = "B", value_parser = positive_count, default_value_t = 8)]
    pub blocks: usize,

    /// Iterations (passes over all blocks).
    #[arg(long, value_name = "T", default_value_t = 20)]
    pub iters: usize,

    /// Damping δ added to the curvature on the servers.
    #[arg(long, value_name = "δ", default_value_t = 1.0)]
    pub delta: f32,

    /// Consecutive blocks the curvature bound covers [default: τ + 1, which keeps delayed steps
    /// majorised]; 1 ignores the delay (larger steps, no guarantee).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub window: Option<usize>,

    /// Write the trace as JSON lines (time, iteration, objective, nnz, bytes, idle time).
    #[arg(long, value_name = "TRACE.jsonl")]
    pub json: Option<PathBuf>,

    /// KKT filter: workers skip the gradients of zero weights predicted to stay zero (|g| well
    /// inside λ at the previous update), with every key pushed every few iterations.
    #[arg(long)]
    pub kkt: bool,

    /// Plot objective against seconds as PNG (axes, tick labels, titles).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

/// Flags of `ferrops plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Output PNG.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,

    /// Traces written by `ferrops train l1lr --json`.
    #[arg(required = true, value_name = "TRACE.jsonl")]
    pub traces: Vec<PathBuf>,
}

/// Cluster settings shared by every role. Each has an environment variable and a config-file key;
/// see `ferrops help scheduler` for the precedence.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterFlags {
    /// TOML configuration file [env: FERROPS_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Scheduler address [env: FERROPS_SCHEDULER] [file: scheduler]
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler: Option<String>,

    /// Number of servers in the job [env: FERROPS_NUM_SERVERS] [file: num_servers]
    #[arg(long, value_name = "N")]
    pub num_servers: Option<String>,

    /// Shards (threads with their own key range, pinned to the server's NUMA node) per server
    /// process; every node of a job must agree [env: FERROPS_SERVER_SHARDS] [file:
    /// server_shards]
    #[arg(long, value_name = "N")]
    pub server_shards: Option<String>,

    /// Number of workers in the job [env: FERROPS_NUM_WORKERS] [file: num_workers]
    #[arg(long, value_name = "N")]
    pub num_workers: Option<String>,

    /// Address this node listens on; port 0 picks a free port [env: FERROPS_BIND] [file: bind]
    /// [default: scheduler: the scheduler address; server: 127.0.0.1:0 on a loopback cluster,
    /// otherwise 0.0.0.0:0]
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<String>,

    /// Transport between workers and servers: auto (RDMA where a verbs device with an active
    /// port exists, TCP elsewhere), rdma or tcp [env: FERROPS_TRANSPORT] [file: transport]
    /// [default: auto]
    #[arg(long, value_name = "auto|rdma|tcp")]
    pub transport: Option<String>,

    /// How long to wait for the scheduler, in milliseconds [env: FERROPS_CONNECT_TIMEOUT_MS]
    /// [file: connect_timeout_ms] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<String>,
}

/// Flags of `ferrops scheduler`.
#[derive(Debug, Clone, Default, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// Flags of `ferrops server`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// Print the memory/NUMA preflight report (memlock limit, hugepage pool, NUMA layout, with
    /// fixes for what will not work) and exit; exit code 1 if it found problems.
    #[arg(long)]
    pub print_topology: bool,
}

/// Flags of `ferrops worker`.
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// Built-in job to run.
    #[arg(long, env = "FERROPS_JOB", value_name = "NAME")]
    pub job: String,

    /// Arguments passed to the job (after `--`).
    #[arg(last = true, value_name = "JOB_ARGS")]
    pub job_args: Vec<String>,
}

/// Flags of `ferrops local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Number of servers to start.
    #[arg(long, value_name = "S", value_parser = positive_count)]
    pub servers: usize,

    /// Number of worker processes to start (each runs COMMAND).
    #[arg(long, value_name = "W", value_parser = positive_count)]
    pub workers: usize,

    /// Seconds the scheduler has to announce its address.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub startup_timeout: f64,

    /// Seconds the scheduler and servers get to exit by themselves after the workers finish,
    /// and that any process gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub shutdown_grace: f64,

    /// Pass children's output through unchanged instead of prefixing lines with `[worker 1]`.
    #[arg(long)]
    pub no_prefix: bool,

    /// Run the scheduler and servers from this ferrops binary instead of the running one.
    #[arg(long, value_name = "PATH")]
    pub node_exe: Option<PathBuf>,

    /// Worker command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

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
    #[arg(long, default_value_t = 1_000_000)]
    pub features: u64,
    /// Training examples.
    #[arg(long, default_value_t = 200_000)]
    pub examples: usize,
    /// Passes over the data (the same in every configuration).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// L1 penalty λ (proximal SGD on the servers).
    #[arg(long, default_value_t = 1e-3)]
    pub l1: f32,
    /// Significantly-modified filter threshold θ used by the runs that enable it.
    #[arg(long, default_value_t = 0.05)]
    pub theta: f32,
    /// Changed-only pull threshold θ used by the runs that enable it.
    #[arg(long, default_value_t = 0.01)]
    pub changed_theta: f32,
    /// KKT filter: skip only when |g| ≤ λ·(1 − margin).
    #[arg(long, default_value_t = 0.1)]
    pub kkt_margin: f32,
    /// KKT filter: push every key every this many batches.
    #[arg(long, default_value_t = 8)]
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

/// Transport used between workers and servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP sockets.
    Tcp,
    /// RDMA verbs (RoCE / InfiniBand); fails where no device is up.
    Rdma,
    /// RDMA where a verbs device with an active port exists, TCP otherwise.
    Auto,
}

impl Transport {
    /// The engine's setting for this choice.
    pub fn mode(self) -> ferrops_net::TransportMode {
        match self {
            Transport::Tcp => ferrops_net::TransportMode::Tcp,
            Transport::Rdma => ferrops_net::TransportMode::Rdma,
            Transport::Auto => ferrops_net::TransportMode::Auto,
        }
    }
}

/// Flags of `ferrops bench push-pull`.
#[derive(Debug, Clone, Args)]
pub struct PushPullArgs {
    /// Number of keys pushed and pulled per iteration.
    #[arg(long, default_value_t = 10_000_000)]
    pub keys: u64,

    /// Measured iterations.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,

    /// Values per key (f32 each).
    #[arg(long, default_value_t = 1)]
    pub val_len: usize,

    /// Servers in the benchmark cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub servers: usize,

    /// Workers in the benchmark cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub workers: usize,

    /// Transport between workers and servers.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,

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
    #[arg(long, default_value_t = 64 << 20)]
    pub elements: usize,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `ferrops demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Servers in the demo cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,

    /// Workers in the demo cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,

    /// Iterations (passes over all feature blocks).
    #[arg(long, default_value_t = 25)]
    pub epochs: usize,

    /// Feature-space size (number of model weights).
    #[arg(long, default_value_t = 100_000)]
    pub features: u64,

    /// Synthetic training examples (rows).
    #[arg(long, default_value_t = 200_000)]
    pub examples: usize,

    /// Seed of the synthetic data set (random when omitted).
    #[arg(long)]
    pub seed: Option<u64>,

    /// L1 penalty λ.
    #[arg(long, value_name = "λ", default_value_t = 4.0)]
    pub lambda: f32,

    /// Maximal delay τ in blocks.
    #[arg(long, value_name = "τ", default_value_t = 2)]
    pub tau: u32,

    /// Where to write the plot of objective against seconds.
    #[arg(long, value_name = "FILE.png", default_value = "ferrops-demo.png")]
    pub plot: PathBuf,
}

/// Parses a count that must be at least 1.
fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "ferrops",
            "local",
            "--servers",
            "2",
            "--workers",
            "3",
            "--",
            "ferrops",
            "worker",
            "--job",
            "x",
        ])
        .unwrap();
        let Some(Command::Local(local)) = cli.command else {
            panic!("not local")
        };
        assert_eq!((local.servers, local.workers), (2, 3));
        assert_eq!(local.command, ["ferrops", "worker", "--job", "x"]);
    }

    #[test]
    fn bench_push_pull_defaults() {
        let cli = Cli::try_parse_from(["ferrops", "bench", "push-pull"]).unwrap();
        let Some(Command::Bench(BenchCommand::PushPull(args))) = cli.command else {
            panic!("not push-pull")
        };
        assert_eq!(args.keys, 10_000_000);
        assert_eq!(args.transport, Transport::Auto);
        assert!(!args.floor && !args.json);
    }

    #[test]
    fn worker_job_args_follow_double_dash() {
        let cli = Cli::try_parse_from(["ferrops", "worker", "--job", "sgd", "--", "--epochs", "3"])
            .unwrap();
        let Some(Command::Worker(worker)) = cli.command else {
            panic!("not worker")
        };
        assert_eq!(worker.job, "sgd");
        assert_eq!(worker.job_args, ["--epochs", "3"]);
    }
}
