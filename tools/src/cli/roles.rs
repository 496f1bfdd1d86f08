//! Flags of the role subcommands (`scheduler`, `server`, `worker`) and of `ferrops local`; the
//! cluster flags become the configuration's [`Overrides`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferrops::config::Overrides;

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

impl ClusterFlags {
    /// The flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            scheduler: self.scheduler.clone(),
            num_servers: self.num_servers.clone(),
            server_shards: self.server_shards.clone(),
            num_workers: self.num_workers.clone(),
            bind: self.bind.clone(),
            transport: self.transport.clone(),
            connect_timeout_ms: self.connect_timeout_ms.clone(),
        }
    }
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
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_hyphen_values = true,
        default_value = "30")]
    pub startup_timeout: Duration,

    /// Seconds the scheduler and servers get to exit by themselves after the workers finish,
    /// and that any process gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_hyphen_values = true,
        default_value = "10")]
    pub shutdown_grace: Duration,

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
