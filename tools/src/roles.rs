//! Runs one role (scheduler, server, built-in worker job) in this process.

use std::net::SocketAddr;

use anyhow::Context;
use ferrops_engine::config::{SchedulerConfig, ServerConfig, WorkerConfig};

/// Runs the scheduler until the job ends; `announce` is called once with the bound address.
pub fn run_scheduler(
    cfg: SchedulerConfig,
    announce: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let summary = ferrops_engine::scheduler::run_scheduler(&cfg, announce).context("scheduler")?;
    tracing::info!(
        "job finished: {} workers done, {} lost, {} tables",
        summary.workers_done,
        summary.workers_lost,
        summary.tables
    );
    Ok(())
}

/// Runs a server until the scheduler shuts the cluster down.
pub fn run_server(cfg: ServerConfig) -> anyhow::Result<()> {
    ferrops_engine::server::run_server(&cfg).context("server")?;
    Ok(())
}

/// Runs the built-in worker job `name` with its arguments.
pub fn run_worker_job(cfg: &WorkerConfig, name: &str, args: &[String]) -> anyhow::Result<()> {
    crate::jobs::Job::parse(name, args)?.run(cfg)
}
