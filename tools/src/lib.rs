//! The `ferrops` package: the worker API that applications link against, and the `ferrops`
//! binary (`src/main.rs`) built on top of it.
//!
//! The library is the facade: [`Worker`], [`WorkerConfig`], [`TableSpec`], [`Consistency`],
//! [`Rule`], [`Ticket`], [`Completed`], [`EngineError`] and [`worker_config_from_env`], plus
//! [`config`], which resolves role configurations from overrides, `FERROPS_*` variables and a
//! TOML file. Everything else belongs to the binary and is declared from `main.rs`: a new
//! built-in worker job is a module in `jobs/` with its `clap` arguments struct and one variant
//! of `jobs::Job`; a new subcommand is a clap type in `cli/` and one arm in `main.rs`, which
//! hands plain options to the module that does the work; a new benchmark is a module in
//! `bench/`. [`internal`] is not API: what the binary and the integration tests share.
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

#![forbid(unsafe_code)]

pub mod config;
#[doc(hidden)]
pub mod internal;

pub use ferrops_engine::config::{ClusterConfig, WorkerConfig};
pub use ferrops_engine::{
    Completed, Consistency, EngineError, KeyList, TableId, TableSpec, Ticket, Worker, WorkerInfo,
};
pub use ferrops_kernels::Rule;

/// The configuration of a worker process started by `ferrops local` or an HPC launcher: the
/// `FERROPS_*` environment variables (`FERROPS_SCHEDULER`, `FERROPS_NUM_SERVERS`,
/// `FERROPS_NUM_WORKERS`, ...) and the file named by `FERROPS_CONFIG`.
pub fn worker_config_from_env() -> anyhow::Result<WorkerConfig> {
    config::ConfigInput::gather(&config::Overrides::default())?.worker()
}
