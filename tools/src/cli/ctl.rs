//! Flags of `ferrops ctl`: the operator's commands to a running job's scheduler.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferrops::config::Overrides;

/// `ferrops ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The job's members (role, node id, address, liveness, last heard), key ranges with their
    /// replication chains and the routing version, each table's keys and bytes, and each
    /// worker's clock.
    Status(CtlStatusArgs),

    /// Checkpoint every table into DIR (a directory every server and the scheduler can reach)
    /// at a consistent point: while every live worker waits at the job's next barrier. Returns
    /// once the checkpoint is complete; `ferrops scheduler --restore DIR` starts a job from it.
    Checkpoint(CtlCheckpointArgs),

    /// Move every range server ID holds to other servers while the job runs (each takes a
    /// copy first, then its place in the range's chain), then stop it (it exits 0). Returns
    /// once the server is out of the job; refused, saying why, when no other server can take
    /// a range it holds (start a spare with `ferrops server` first) or replication is 1.
    /// SIGTERM to a server does the same.
    Drain(CtlDrainArgs),
}

/// How `ferrops ctl` reaches and authenticates to the scheduler: like a node of the job, from
/// these flags, the environment (FERROPS_SCHEDULER, FERROPS_SECRET or FERROPS_SECRET_FILE,
/// FERROPS_INSECURE, FERROPS_CONNECT_TIMEOUT_MS) or the config file (FERROPS_CONFIG).
#[derive(Debug, Clone, Default, Args)]
pub struct CtlFlags {
    #[arg(long, value_name = "HOST:PORT", help = "The running job's scheduler")]
    pub scheduler: Option<String>,
    #[arg(long, value_name = "FILE", help = "TOML configuration file")]
    pub config: Option<PathBuf>,
    #[arg(
        long,
        value_name = "FILE",
        help = "File holding the job's cluster secret"
    )]
    pub secret_file: Option<String>,
    #[arg(long, help = "The job runs without a cluster secret")]
    pub insecure: bool,
}

impl CtlFlags {
    /// The flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            scheduler: self.scheduler.clone(),
            secret_file: self.secret_file.clone(),
            insecure: self.insecure.then(|| "true".to_string()),
            ..Overrides::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct CtlStatusArgs {
    #[command(flatten)]
    pub connection: CtlFlags,

    /// Print exactly one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CtlCheckpointArgs {
    #[command(flatten)]
    pub connection: CtlFlags,

    /// Where to write the checkpoint
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CtlDrainArgs {
    #[command(flatten)]
    pub connection: CtlFlags,

    /// The server to drain, by rank (as `ferrops ctl status` lists it)
    #[arg(long, value_name = "ID")]
    pub server: u32,
}
