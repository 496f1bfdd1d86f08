//! Flags of `ferrops slurm`.

use std::path::PathBuf;

use clap::Args;

use super::worker_command::WorkerCommand;
use crate::jobs::positive_count;

/// Flags of `ferrops slurm`.
#[derive(Debug, Clone, Args)]
pub struct SlurmArgs {
    /// Number of servers: tasks 1..=S (task 0 is the scheduler, the rest are workers).
    #[arg(long, value_name = "S", value_parser = positive_count)]
    pub servers: usize,

    /// Scheduler port on the first host of the step [default: 20000 + (SLURM_JOB_ID * 8 +
    /// SLURM_STEP_ID mod 8) mod 12000].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// File holding the job's cluster secret (readable by its owner only; on a file system every
    /// node sees). Without it every task needs FERROPS_SECRET or FERROPS_SECRET_FILE.
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,

    /// Seconds the role gets between a forwarded SIGTERM and SIGKILL (keep it below Slurm's
    /// KillWait, 30 s by default).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub shutdown_grace: f64,

    #[command(flatten)]
    pub run: WorkerCommand,
}
