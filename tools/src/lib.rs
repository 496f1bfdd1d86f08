//! The `ferrops` package: the `ferrops` binary's modules (roles, local launcher, benchmarks,
//! built-in worker jobs, demo) and the worker API facade that applications link against:
//!
//! ```no_run
//! use ferrops::{Consistency, Rule, TableSpec, Worker, WorkerConfig};
//! # fn main() -> Result<(), ferrops::EngineError> {
//! # let cfg: WorkerConfig = unimplemented!();
//! let w = Worker::connect(&cfg)?;
//! let t = w.declare_table(TableSpec::new("w", 1).rule(Rule::Sgd { lr: 0.1 }))?;
//! w.push(t, &[1, 5, 9], &[0.5, -1.0, 2.0])?;
//! let values = w.pull(t, &[1, 5, 9])?;
//! # Ok(()) }
//! ```

pub mod bench_kernels;
pub mod bench_push_pull;
pub mod bench_reducers;
pub mod cli;
pub mod config;
pub mod demo;
pub mod floor;
pub mod job_args;
pub mod jobs;
pub mod launch;
pub mod roles;
pub mod synth;

pub use ferrops_engine::config::{ClusterConfig, WorkerConfig};

/// The configuration of a worker process started by `ferrops local` or an HPC launcher: the
/// `FERROPS_*` environment variables (`FERROPS_SCHEDULER`, `FERROPS_NUM_SERVERS`,
/// `FERROPS_NUM_WORKERS`, ...) and the file named by `FERROPS_CONFIG`.
pub fn worker_config_from_env() -> anyhow::Result<WorkerConfig> {
    config::ConfigInput::gather(&cli::ClusterFlags::default())?.worker()
}
pub use ferrops_engine::{
    Completed, Consistency, EngineError, TableId, TableSpec, Ticket, Worker, WorkerInfo,
};
pub use ferrops_kernels::Rule;
pub mod apps;
pub mod data;
