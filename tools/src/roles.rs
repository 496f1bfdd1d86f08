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

/// Runs a server until the scheduler shuts the cluster down; with `FERROPS_REPORT_FILE` set,
/// then writes its memory report there.
pub fn run_server(cfg: ServerConfig) -> anyhow::Result<()> {
    let report = ferrops_engine::server::run_server(&cfg).context("server")?;
    if let Some(path) = std::env::var_os(crate::config::ENV_REPORT_FILE) {
        let memory = ServerMemory::of(&report);
        std::fs::write(&path, serde_json::to_vec(&memory)?)
            .with_context(|| format!("writing the server report to {path:?}"))?;
    }
    Ok(())
}

/// What a server held when it stopped: its resident set and each table's parts.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ServerMemory {
    /// The process's resident set (0 if unknown).
    pub resident_bytes: u64,
    pub tables: Vec<TableMemory>,
}

/// One table's memory on a server (its stores of every range it held, each listed).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TableMemory {
    pub table: String,
    pub keys: u64,
    pub values_bytes: u64,
    pub state_bytes: u64,
    pub key_map_bytes: u64,
    pub resolution_cache_bytes: u64,
}

impl ServerMemory {
    /// The memory part of a server's report.
    pub fn of(report: &ferrops_engine::server::ServerReport) -> ServerMemory {
        ServerMemory {
            resident_bytes: report.resident_bytes,
            tables: report
                .tables
                .iter()
                .map(|(name, m)| TableMemory {
                    table: name.clone(),
                    keys: m.keys,
                    values_bytes: m.values_bytes,
                    state_bytes: m.state_bytes,
                    key_map_bytes: m.key_map_bytes,
                    resolution_cache_bytes: m.resolution_cache_bytes,
                })
                .collect(),
        }
    }
}

/// Runs the built-in worker job `name` with its arguments.
pub fn run_worker_job(cfg: &WorkerConfig, name: &str, args: &[String]) -> anyhow::Result<()> {
    crate::jobs::Job::parse(name, args)?.run(cfg)
}
