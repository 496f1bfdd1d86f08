//! Flags of `ferrops faults`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::faults::{FaultKind, Hold};
use crate::jobs::{positive_count, positive_number, positive_seconds};

/// `ferrops faults`: fault injection against real jobs on a private network of namespaces.
#[derive(Debug, Clone, Args)]
pub struct FaultsArgs {
    /// Fault kinds to inject, drawn at random (comma-separated): `kill`, `stall` and
    /// `partition` hit a server, `scheduler` kills the scheduler and restarts it with
    /// `--recover`; `none` for a run without faults.
    #[arg(long, value_delimiter = ',', default_value = "kill,stall,partition,scheduler",
        value_parser = kind)]
    pub kinds: Vec<Option<FaultKind>>,

    /// How long stalls and partitions last: shorter than the heartbeat timeout, longer (the
    /// server is failed over and must find itself fenced), or either at random.
    #[arg(long, value_enum, default_value = "any")]
    pub hold: Hold,

    /// Mean seconds between two faults of a job (each gap 0.5 to 1.5 times this).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, default_value = "4")]
    pub every: f64,

    /// At most this many faults per job [default: no limit]
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub faults_per_job: Option<usize>,

    /// Seed of the random choices (targets, kinds, durations, gaps) [default: from the clock;
    /// printed]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Run jobs back to back for this many minutes (the last one finishes).
    #[arg(long, value_name = "N", value_parser = positive_number::<f64>,
        conflicts_with = "jobs")]
    pub minutes: Option<f64>,

    /// Run this many jobs [default: 1, unless --minutes]
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub jobs: Option<usize>,

    /// A netem qdisc on every node's interface, e.g. "delay 5ms loss 1%" (a kernel without
    /// sch_netem skips the run, exit 77).
    #[arg(long, value_name = "SPEC")]
    pub netem: Option<String>,

    /// Servers each job starts with.
    #[arg(long, value_name = "S", value_parser = positive_count, default_value = "3")]
    pub servers: usize,

    /// Slots for spares beyond the servers (a spare replaces each server that died).
    #[arg(long, value_name = "N", default_value = "2")]
    pub spares: usize,

    /// Workers each job runs (the `check` job).
    #[arg(long, value_name = "W", value_parser = positive_count, default_value = "2")]
    pub workers: usize,

    /// Replication factor.
    #[arg(long, value_name = "R", value_parser = positive_count, default_value = "2")]
    pub replication: usize,

    /// Clocks of each job (`check --clocks`): how long a job runs.
    #[arg(long, value_name = "N", value_parser = positive_count, default_value = "10000")]
    pub clocks: usize,

    /// Keys pushed and pulled every clock (`check --keys`).
    #[arg(long, value_name = "K", value_parser = positive_count, default_value = "2000")]
    pub keys: usize,

    /// Each job writes a checkpoint every N clocks (`check --checkpoint-every`), so faults
    /// land while one is written too; after the job its last checkpoint must read back whole
    /// and hold exactly `workers × clock` on every key. 0: no checkpoints.
    #[arg(long, value_name = "N", default_value = "500")]
    pub checkpoint_every: usize,

    /// Heartbeat interval of every node, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = positive_count, default_value = "200")]
    pub heartbeat_interval_ms: usize,

    /// Heartbeat timeout of every node, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = positive_count, default_value = "1500")]
    pub heartbeat_timeout_ms: usize,

    /// Seconds after which a job still running is killed and counted failed (hung).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, default_value = "300")]
    pub job_timeout: f64,

    /// Directory for the node logs of each job (a failed job's are kept) [default: a fresh
    /// directory under the temporary directory]
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,

    /// Keep the logs of jobs that passed too.
    #[arg(long)]
    pub keep_logs: bool,

    /// The ferrops binary the nodes run [default: this one]
    #[arg(long, value_name = "PATH")]
    pub node_exe: Option<PathBuf>,
}

fn kind(text: &str) -> Result<Option<FaultKind>, String> {
    match text {
        "none" => Ok(None),
        "kill" => Ok(Some(FaultKind::Kill)),
        "stall" => Ok(Some(FaultKind::Stall)),
        "partition" => Ok(Some(FaultKind::Partition)),
        "scheduler" => Ok(Some(FaultKind::Scheduler)),
        _ => Err("expected kill, stall, partition, scheduler or none".to_string()),
    }
}

impl FaultsArgs {
    /// The heartbeat interval and timeout.
    pub fn heartbeats(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.heartbeat_interval_ms as u64),
            Duration::from_millis(self.heartbeat_timeout_ms as u64),
        )
    }
}
