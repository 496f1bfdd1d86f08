//! Resolves role configurations from overrides (the command line's flags), environment
//! variables and a TOML file.
//!
//! Precedence, highest first: overrides > environment > file > defaults. The overrides are a
//! plain [`Overrides`] struct that the binary fills from its flags; a program linking ferrops
//! passes `Overrides::default()` (see `worker_config_from_env`). A [`ConfigInput`] holds all three
//! sources; its role methods (`scheduler`, `server`, `worker`) resolve the settings once, the
//! same way for every role, and are pure over an explicit environment map and the file's text,
//! so tests never touch the process environment; [`ConfigInput::gather`] is the one place that
//! reads the real environment and the file from disk.
//!
//! Errors name where the offending value came from (flag, environment variable, or key in a named
//! file) and the value itself.

mod layers;
#[cfg(test)]
mod tests;
mod values;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferrops_engine::config::{ClusterConfig, SchedulerConfig, ServerConfig, WorkerConfig};

use layers::{resolve_settings, Settings};
use values::env_value;

/// Environment variables as a plain map, so resolution can be tested without touching the process.
pub type EnvMap = HashMap<String, String>;

/// Environment variable naming the role a bare `ferrops` runs.
pub const ENV_ROLE: &str = "FERROPS_ROLE";
/// Environment variable naming the TOML configuration file.
pub const ENV_CONFIG: &str = "FERROPS_CONFIG";
/// Environment variable with the scheduler address.
pub const ENV_SCHEDULER: &str = "FERROPS_SCHEDULER";
/// Environment variable with the number of servers.
pub const ENV_NUM_SERVERS: &str = "FERROPS_NUM_SERVERS";
/// Shards (threads, each with its own key range) per server process.
pub const ENV_SERVER_SHARDS: &str = "FERROPS_SERVER_SHARDS";
/// Replication factor: servers holding each key range (1: no replicas).
pub const ENV_REPLICATION: &str = "FERROPS_REPLICATION";
/// When a chain's head replicates: `each` push, or `aggregated` batches.
pub const ENV_REPLICATION_MODE: &str = "FERROPS_REPLICATION_MODE";
/// Environment variable with the number of workers.
pub const ENV_NUM_WORKERS: &str = "FERROPS_NUM_WORKERS";
/// Environment variable with the address a node listens on.
pub const ENV_BIND: &str = "FERROPS_BIND";
/// Environment variable with the cluster secret.
pub const ENV_SECRET: &str = "FERROPS_SECRET";
/// Environment variable naming a file that holds the cluster secret (refused when others can
/// read it).
pub const ENV_SECRET_FILE: &str = "FERROPS_SECRET_FILE";
/// Environment variable that, set to `1`/`true`, runs without a cluster secret.
pub const ENV_INSECURE: &str = "FERROPS_INSECURE";
/// Environment variable with the connect timeout in milliseconds.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "FERROPS_CONNECT_TIMEOUT_MS";
/// Worker↔server transport: `auto`, `rdma` or `tcp`.
pub const ENV_TRANSPORT: &str = "FERROPS_TRANSPORT";
/// How often every node sends the scheduler a heartbeat, in milliseconds.
pub const ENV_HEARTBEAT_INTERVAL_MS: &str = "FERROPS_HEARTBEAT_INTERVAL_MS";
/// Silence after which a node (or the scheduler) is declared dead, in milliseconds.
pub const ENV_HEARTBEAT_TIMEOUT_MS: &str = "FERROPS_HEARTBEAT_TIMEOUT_MS";
/// How long the scheduler waits for the whole job to assemble, in milliseconds.
pub const ENV_STARTUP_DEADLINE_MS: &str = "FERROPS_STARTUP_DEADLINE_MS";
/// How long a node goes on without the scheduler before it gives up, in milliseconds.
pub const ENV_SCHEDULER_OUTAGE_MS: &str = "FERROPS_SCHEDULER_OUTAGE_MS";

/// Where a node serves its metrics (`IP:PORT`, port 0 picks one; unset: no endpoint).
pub const ENV_METRICS_ADDR: &str = "FERROPS_METRICS_ADDR";
/// A file a server writes its memory report to (JSON, [`crate::roles::ServerMemory`]) when it
/// stops: what a benchmark reads back from the servers it started.
pub const ENV_REPORT_FILE: &str = "FERROPS_REPORT_FILE";
/// How long a worker's wait and a server's loop busy-poll before they sleep, in microseconds.
pub const ENV_BUSY_POLL_US: &str = "FERROPS_BUSY_POLL_US";
/// Whether frames a node sends carry a CRC-32C of their payload (`true`/`false`).
pub const ENV_PAYLOAD_CHECKSUM: &str = "FERROPS_PAYLOAD_CHECKSUM";

/// Connections one listener holds at most.
pub const ENV_MAX_CONNECTIONS: &str = "FERROPS_MAX_CONNECTIONS";
/// Queued reply bytes above which a connection's requests wait.
pub const ENV_REPLY_BUDGET_BYTES: &str = "FERROPS_REPLY_BUDGET_BYTES";
/// Queued reply bytes of the whole process above which connections with queued replies wait.
pub const ENV_REPLY_BUDGET_TOTAL_BYTES: &str = "FERROPS_REPLY_BUDGET_TOTAL_BYTES";
/// Bytes of large incoming frames the process holds at most.
pub const ENV_FRAME_BUDGET_BYTES: &str = "FERROPS_FRAME_BUDGET_BYTES";

/// The rank a server or worker asks the scheduler for (`ferrops local` numbers its children
/// with it, so that its names and the scheduler's agree).
pub const ENV_RANK: &str = "FERROPS_RANK";

/// How long a node waits for the scheduler unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The process environment (variables that are not valid UTF-8 are skipped).
pub fn process_env() -> EnvMap {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

pub use ferrops_engine::Role;

/// The role named by `FERROPS_ROLE`, if set (an empty value counts as unset).
pub fn role_from_env(env: &EnvMap) -> Result<Option<Role>> {
    let Some(value) = env_value(env, ENV_ROLE) else {
        return Ok(None);
    };
    match Role::from_name(value) {
        Some(role) => Ok(Some(role)),
        None => bail!(
            "invalid value `{value}` from environment variable {ENV_ROLE}: \
             expected scheduler, server or worker"
        ),
    }
}

/// Settings given by the caller, the highest-precedence layer: the `ferrops` binary fills them
/// from its flags (`--scheduler`, `--num-servers`, ...). Values stay text, as typed, so they are
/// parsed and checked by the same code as every other source and errors name the flag.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// The TOML file (`--config`); else `FERROPS_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--scheduler`: the scheduler address.
    pub scheduler: Option<String>,
    /// `--num-servers`.
    pub num_servers: Option<String>,
    /// `--server-shards`: shards per server process.
    pub server_shards: Option<String>,
    /// `--replication`: servers holding each key range.
    pub replication: Option<String>,
    /// `--replication-mode`: `each` or `aggregated`.
    pub replication_mode: Option<String>,
    /// `--num-workers`.
    pub num_workers: Option<String>,
    /// `--bind`: the address this node listens on.
    pub bind: Option<String>,
    /// `--transport`: `auto`, `rdma` or `tcp`.
    pub transport: Option<String>,
    /// `--connect-timeout-ms`.
    pub connect_timeout_ms: Option<String>,
    /// `--busy-poll-us`.
    pub busy_poll_us: Option<String>,
    /// `--payload-checksum`: `true` or `false`.
    pub payload_checksum: Option<String>,
    /// `--secret-file`: a file holding the cluster secret.
    pub secret_file: Option<String>,
    /// `--insecure` (as `"true"`): run without a cluster secret.
    pub insecure: Option<String>,
    /// `--metrics-addr`: where this node serves Prometheus metrics.
    pub metrics_addr: Option<String>,
    /// `--max-connections`: connections per listener.
    pub max_connections: Option<String>,
    /// `--reply-budget-bytes`: queued reply bytes per connection before its requests wait.
    pub reply_budget_bytes: Option<String>,
    /// `--reply-budget-total-bytes`: queued reply bytes of the process.
    pub reply_budget_total_bytes: Option<String>,
    /// `--frame-budget-bytes`: bytes of large incoming frames of the process.
    pub frame_budget_bytes: Option<String>,
    /// `--heartbeat-interval-ms`.
    pub heartbeat_interval_ms: Option<String>,
    /// `--heartbeat-timeout-ms`.
    pub heartbeat_timeout_ms: Option<String>,
    /// `--startup-deadline-ms`.
    pub startup_deadline_ms: Option<String>,
    /// `--scheduler-outage-ms`.
    pub scheduler_outage_ms: Option<String>,
}

/// A configuration file's name (for messages) and text.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub origin: String,
    pub text: String,
}

/// Everything configuration is resolved from: overrides, environment and the optional file.
#[derive(Clone, Debug, Default)]
pub struct ConfigInput {
    pub overrides: Overrides,
    pub env: EnvMap,
    pub file: Option<ConfigFile>,
}

impl ConfigInput {
    /// Reads the process environment and the file named by `--config` or `FERROPS_CONFIG`.
    pub fn gather(overrides: &Overrides) -> Result<Self> {
        let env = process_env();
        let file = read_config_file(overrides, &env)?;
        Ok(Self {
            overrides: overrides.clone(),
            env,
            file,
        })
    }

    /// Every setting, each from its highest-precedence source.
    fn settings(&self) -> Result<Settings> {
        resolve_settings(&self.overrides, &self.env, self.file.as_ref())
    }

    /// The scheduler's configuration. It listens on the bind address, or else on the scheduler
    /// address itself (ps-lite style: every node is given the same `FERROPS_SCHEDULER`).
    pub fn scheduler(&self) -> Result<SchedulerConfig> {
        let settings = self.settings()?;
        let bind = settings.bind.or(settings.scheduler).ok_or_else(|| {
            anyhow!(
                "the scheduler has no address to listen on: pass --bind or --scheduler, \
                 set {ENV_BIND} or {ENV_SCHEDULER}, or set `bind` in the config file"
            )
        })?;
        let scheduler = settings.scheduler.unwrap_or(bind);
        Ok(SchedulerConfig {
            cluster: settings.cluster(scheduler)?,
            bind,
            restore: None,
            recover: None,
        })
    }

    /// The configuration of a scheduler that recovers a job (`ferrops scheduler --recover`):
    /// the job's sizes come from the nodes that rejoin, so they need not be set.
    pub fn recovering_scheduler(&self, wait: std::time::Duration) -> Result<SchedulerConfig> {
        let mut settings = self.settings()?;
        // 0: unknown until the nodes report it.
        let (servers, workers) = (settings.num_servers, settings.num_workers);
        settings.num_servers.get_or_insert(1);
        settings.num_workers.get_or_insert(1);
        let bind = settings.bind.or(settings.scheduler).ok_or_else(|| {
            anyhow!("a recovering scheduler listens where the lost one did: pass --bind")
        })?;
        let mut cluster = settings.cluster(settings.scheduler.unwrap_or(bind))?;
        cluster.num_servers = servers.unwrap_or(0);
        cluster.num_workers = workers.unwrap_or(0);
        Ok(SchedulerConfig {
            cluster,
            bind,
            restore: None,
            recover: Some(wait),
        })
    }

    /// A server's configuration. Without a bind address it listens on an ephemeral port of the
    /// loopback interface when the scheduler is on loopback, and of every interface otherwise.
    pub fn server(&self) -> Result<ServerConfig> {
        let settings = self.settings()?;
        let scheduler = settings.require_scheduler()?;
        let bind = settings
            .bind
            .unwrap_or_else(|| default_server_bind(scheduler));
        Ok(ServerConfig::new(settings.server_cluster(scheduler)?, bind))
    }

    /// `ferrops ctl`'s configuration: how to reach and authenticate to a running job's
    /// scheduler. The job's sizes are the scheduler's business: they need not be set.
    pub fn ctl(&self) -> Result<ClusterConfig> {
        let mut settings = self.settings()?;
        let scheduler = settings.require_scheduler()?;
        settings.num_servers.get_or_insert(1);
        settings.num_workers.get_or_insert(1);
        settings.cluster(scheduler)
    }

    /// A worker's configuration.
    pub fn worker(&self) -> Result<WorkerConfig> {
        let settings = self.settings()?;
        let scheduler = settings.require_scheduler()?;
        Ok(WorkerConfig {
            cluster: settings.cluster(scheduler)?,
        })
    }
}

/// Reads the file named by `--config` (or else `FERROPS_CONFIG`), if any.
pub fn read_config_file(overrides: &Overrides, env: &EnvMap) -> Result<Option<ConfigFile>> {
    let (path, source) = match (&overrides.config, env_value(env, ENV_CONFIG)) {
        (Some(path), _) => (path.clone(), "flag --config".to_string()),
        (None, Some(path)) => (
            PathBuf::from(path),
            format!("environment variable {ENV_CONFIG}"),
        ),
        (None, None) => return Ok(None),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {} (from {source})", path.display()))?;
    Ok(Some(ConfigFile {
        origin: path.display().to_string(),
        text,
    }))
}

/// Where a server listens when not told: on loopback for a loopback scheduler; otherwise on
/// the address of the interface that routes to the scheduler (the network the job shares),
/// not on every interface of the host; on every interface only when no route is known.
fn default_server_bind(scheduler: SocketAddr) -> SocketAddr {
    let ip = match scheduler.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        remote => ferrops_net::netdev::source_address_towards(scheduler).unwrap_or(match remote {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }),
    };
    SocketAddr::new(ip, 0)
}
