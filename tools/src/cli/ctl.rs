//! Flags of `ferrops ctl`: the operator's commands to a running job's scheduler.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferrops::config::Overrides;

/// `ferrops ctl` subcommands. (Draining a server, `ctl drain --server ID`, will be one more.)
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
}

/// How `ferrops ctl` reaches and authenticates to the scheduler.
#[derive(Debug, Clone, Default, Args)]
pub struct CtlFlags {
    /// The running job's scheduler [env: FERROPS_SCHEDULER] [file: scheduler]
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler: Option<String>,

    /// TOML configuration file [env: FERROPS_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// File holding the job's cluster secret [env: FERROPS_SECRET_FILE] [file: secret_file];
    /// or FERROPS_SECRET / `secret` with the secret itself
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<String>,

    /// The job runs without a cluster secret [env: FERROPS_INSECURE=1] [file: insecure = true]
    #[arg(long)]
    pub insecure: bool,

    /// How long to wait for the scheduler, in milliseconds [env: FERROPS_CONNECT_TIMEOUT_MS]
    /// [file: connect_timeout_ms] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<String>,
}

impl CtlFlags {
    /// The flags as the configuration's highest-precedence layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            scheduler: self.scheduler.clone(),
            secret_file: self.secret_file.clone(),
            insecure: self.insecure.then(|| "true".to_string()),
            connect_timeout_ms: self.connect_timeout_ms.clone(),
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
