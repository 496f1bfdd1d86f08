//! Flags of the role subcommands (`scheduler`, `server`, `worker`) and of `ferrops local`; the
//! cluster flags become the configuration's [`Overrides`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferrops::config::Overrides;

use super::worker_command::WorkerCommand;
use crate::jobs::{positive_count, seconds};

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

    /// Replication factor R: how many server processes hold each key range (a chain whose
    /// head serves it and forwards every push; a push is acknowledged once all R applied it).
    /// 1 to the number of servers [env: FERROPS_REPLICATION] [file: replication] [default: 1]
    #[arg(long, value_name = "R")]
    pub replication: Option<String>,

    /// When a chain's head sends pushes down the chain (servers; each head decides for the
    /// ranges it heads, so give every server the same): `each` push as it is applied, or
    /// `aggregated` — one update per batch of pushes (the rows they touched), the batch's
    /// pushes acknowledged once the tail applied it [env: FERROPS_REPLICATION_MODE] [file:
    /// replication_mode] [default: each]
    #[arg(long, value_name = "each|aggregated")]
    pub replication_mode: Option<String>,

    /// Number of workers in the job [env: FERROPS_NUM_WORKERS] [file: num_workers]
    #[arg(long, value_name = "N")]
    pub num_workers: Option<String>,

    /// Address this node listens on; port 0 picks a free port [env: FERROPS_BIND] [file: bind]
    /// [default: scheduler: the scheduler address; server: 127.0.0.1:0 on a loopback cluster,
    /// otherwise port 0 on the address of the interface that routes to the scheduler]
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<String>,

    /// Transport between workers and servers: auto (shared memory to servers on this host that
    /// offer it; to the others RDMA where a verbs device with an active port exists, TCP
    /// elsewhere), rdma, tcp or shm (shared memory to every server on this host, TCP to the
    /// others) [env: FERROPS_TRANSPORT] [file: transport] [default: auto]
    #[arg(long, value_name = "auto|rdma|tcp|shm")]
    pub transport: Option<String>,

    /// How long to wait for the scheduler, in milliseconds [env: FERROPS_CONNECT_TIMEOUT_MS]
    /// [file: connect_timeout_ms] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<String>,

    /// How long a waiting worker, and a server after each request, keep polling their
    /// connections before they sleep, in microseconds: latency against a core (0 sleeps at
    /// once) [env: FERROPS_BUSY_POLL_US] [file: busy_poll_us] [default: 500]
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<String>,

    /// Put a CRC-32C of the payload on every frame this node sends (the header always has
    /// one; a receiver checks every frame that carries it). Off by default: TCP checksums
    /// every segment and RDMA every packet; see docs/performance.md [env:
    /// FERROPS_PAYLOAD_CHECKSUM] [file: payload_checksum] [default: false]
    #[arg(long, value_name = "true|false")]
    pub payload_checksum: Option<String>,

    /// File holding the cluster secret, readable by its owner only (the secret itself is
    /// never a flag: `ps` shows flags to every user) [env: FERROPS_SECRET_FILE] [file:
    /// secret_file]; or FERROPS_SECRET / `secret` with the secret itself. Every connection is
    /// authenticated with it; see docs/security.md
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<String>,

    /// Run without a cluster secret: any process that can reach this node's ports can join
    /// the job, read and change the model. Only for a single-user machine or a trusted
    /// network [env: FERROPS_INSECURE=1] [file: insecure = true]
    #[arg(long)]
    pub insecure: bool,

    /// How often every node sends the scheduler a heartbeat, in milliseconds [env:
    /// FERROPS_HEARTBEAT_INTERVAL_MS] [file: heartbeat_interval_ms] [default: 500]
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<String>,

    /// Silence after which the scheduler declares a node dead (and a node the scheduler), in
    /// milliseconds; at least twice the interval [env: FERROPS_HEARTBEAT_TIMEOUT_MS] [file:
    /// heartbeat_timeout_ms] [default: 5000]
    #[arg(long, value_name = "MS")]
    pub heartbeat_timeout_ms: Option<String>,

    /// How long the scheduler waits for every node to register and every server to be ready
    /// before it ends the job naming who never arrived, in milliseconds [env:
    /// FERROPS_STARTUP_DEADLINE_MS] [file: startup_deadline_ms] [default: 120000]
    #[arg(long, value_name = "MS")]
    pub startup_deadline_ms: Option<String>,

    /// How long a server or worker goes on without the scheduler (serving, pushing and
    /// pulling by the routing it has, redialing it) before it gives up, in milliseconds: the
    /// time to restart it with `ferrops scheduler --recover` [env: FERROPS_SCHEDULER_OUTAGE_MS]
    /// [file: scheduler_outage_ms] [default: 300000]
    #[arg(long, value_name = "MS")]
    pub scheduler_outage_ms: Option<String>,

    /// Serve this node's metrics in Prometheus text format on http://IP:PORT/metrics; port 0
    /// picks one (the address is logged). Unset: no endpoint [env: FERROPS_METRICS_ADDR]
    /// [file: metrics_addr]
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
}

impl ClusterFlags {
    /// The flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            scheduler: self.scheduler.clone(),
            num_servers: self.num_servers.clone(),
            server_shards: self.server_shards.clone(),
            replication: self.replication.clone(),
            replication_mode: self.replication_mode.clone(),
            num_workers: self.num_workers.clone(),
            bind: self.bind.clone(),
            transport: self.transport.clone(),
            connect_timeout_ms: self.connect_timeout_ms.clone(),
            busy_poll_us: self.busy_poll_us.clone(),
            payload_checksum: self.payload_checksum.clone(),
            secret_file: self.secret_file.clone(),
            insecure: self.insecure.then(|| "true".to_string()),
            heartbeat_interval_ms: self.heartbeat_interval_ms.clone(),
            heartbeat_timeout_ms: self.heartbeat_timeout_ms.clone(),
            startup_deadline_ms: self.startup_deadline_ms.clone(),
            scheduler_outage_ms: self.scheduler_outage_ms.clone(),
            metrics_addr: self.metrics_addr.clone(),
            ..Overrides::default()
        }
    }
}

/// What peers can make a scheduler or server hold (workers serve no peers, so they have none of
/// these flags).
#[derive(Debug, Clone, Default, Args)]
pub struct BudgetFlags {
    /// Connections one listener (server shard, scheduler) holds at most; one more is refused
    /// with an error naming the limit [env: FERROPS_MAX_CONNECTIONS] [file: max_connections]
    /// [default: the open-files limit less 64]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,

    /// Reply bytes queued for one connection above which its requests are not read until it
    /// reads its replies [env: FERROPS_REPLY_BUDGET_BYTES] [file: reply_budget_bytes]
    /// [default: 67108864 (64 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub reply_budget_bytes: Option<String>,

    /// Reply bytes queued for all connections of the process above which connections with
    /// queued replies are not read [env: FERROPS_REPLY_BUDGET_TOTAL_BYTES] [file:
    /// reply_budget_total_bytes] [default: 1073741824 (1 GiB)]
    #[arg(long, value_name = "BYTES")]
    pub reply_budget_total_bytes: Option<String>,

    /// Bytes of large incoming frames (over 1 MiB, grown as their bytes arrive) the process
    /// holds at most; a frame that would pass it is refused and its connection closed [env:
    /// FERROPS_FRAME_BUDGET_BYTES] [file: frame_budget_bytes] [default: 4294967296 (4 GiB)]
    #[arg(long, value_name = "BYTES")]
    pub frame_budget_bytes: Option<String>,
}

impl BudgetFlags {
    /// Adds these flags to the configuration's highest-precedence layer.
    fn apply(&self, overrides: &mut Overrides) {
        overrides.max_connections = self.max_connections.clone();
        overrides.reply_budget_bytes = self.reply_budget_bytes.clone();
        overrides.reply_budget_total_bytes = self.reply_budget_total_bytes.clone();
        overrides.frame_budget_bytes = self.frame_budget_bytes.clone();
    }
}

/// Flags of `ferrops scheduler`.
#[derive(Debug, Clone, Default, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    pub cluster: ClusterFlags,

    #[command(flatten)]
    pub budgets: BudgetFlags,

    /// Start the job from the checkpoint in DIR (written by `Worker::checkpoint`): its tables
    /// exist with their saved values and rule state, on any number of servers. The whole
    /// checkpoint is checked first; a corrupt or truncated file is refused by name.
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,

    /// Recover a job whose scheduler was lost (killed, crashed): start on its address (same
    /// --bind, same secret), let its servers and workers rejoin, and rebuild the job's state
    /// from what they report; --num-servers and --num-workers are then not needed. See
    /// docs/operations.md
    #[arg(long, conflicts_with = "restore")]
    pub recover: bool,

    /// With --recover: how long to wait for the nodes to rejoin, in milliseconds; servers of
    /// the job that are not back by then are taken for dead
    #[arg(long, value_name = "MS", requires = "recover", default_value = "5000")]
    pub recover_wait: u64,
}

impl RoleArgs {
    /// The cluster and budget flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        let mut overrides = self.cluster.overrides();
        self.budgets.apply(&mut overrides);
        overrides
    }
}

/// Flags of `ferrops server`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub cluster: ClusterFlags,

    #[command(flatten)]
    pub budgets: BudgetFlags,

    /// Print the memory/NUMA preflight report (memlock limit, hugepage pool, NUMA layout, with
    /// fixes for what will not work) and exit; exit code 1 if it found problems.
    #[arg(long)]
    pub print_topology: bool,
}

impl ServerArgs {
    /// The cluster and budget flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        let mut overrides = self.cluster.overrides();
        self.budgets.apply(&mut overrides);
        overrides
    }
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
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_hyphen_values = true,
        default_value = "30")]
    pub startup_timeout: Duration,

    /// Seconds the scheduler and servers get to exit by themselves after the workers finish,
    /// and that any process gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_hyphen_values = true,
        default_value = "10")]
    pub shutdown_grace: Duration,

    /// Start the job from the checkpoint in DIR (see `ferrops scheduler --restore`).
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,

    /// Pass children's output through unchanged instead of prefixing lines with `[worker 1]`.
    #[arg(long)]
    pub no_prefix: bool,

    /// Give every child (scheduler, servers, workers) its own metrics endpoint on 127.0.0.1
    /// with a port it picks (FERROPS_METRICS_ADDR=127.0.0.1:0); each logs its address.
    #[arg(long)]
    pub metrics: bool,

    /// Replication factor R handed to every child (FERROPS_REPLICATION): each key range is
    /// held by a chain of R servers, so the job survives the death of R − 1 of them. 1 to S
    /// [default: the children's FERROPS_REPLICATION, else 1]
    #[arg(long, value_name = "R", value_parser = positive_count)]
    pub replication: Option<usize>,

    /// When a chain's head replicates, handed to every child (FERROPS_REPLICATION_MODE): `each`
    /// push, or `aggregated` batches of pushes [default: the children's
    /// FERROPS_REPLICATION_MODE, else each]
    #[arg(long, value_name = "each|aggregated")]
    pub replication_mode: Option<ferrops_engine::config::ReplicationMode>,

    #[command(flatten)]
    pub run: WorkerCommand,
}
