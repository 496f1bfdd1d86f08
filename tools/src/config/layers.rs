//! The layers under a configuration: each setting's names in every source (flag, environment
//! variable, file key), the TOML file's schema, and the lookup that takes a setting from the
//! highest-precedence source and names that source in errors.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferrops_engine::config::{ClusterConfig, LivenessConfig, ReplicationMode};
use ferrops_net::auth::ClusterKey;
use ferrops_net::{Budgets, FrameLimits, TransportMode};
use serde::Deserialize;

use super::values::{
    env_value, parse_address, parse_bool, parse_busy_poll_us, parse_count, parse_positive,
    parse_rank, parse_secret, read_secret_file,
};
use super::{
    ConfigFile, EnvMap, Overrides, DEFAULT_CONNECT_TIMEOUT, ENV_BIND, ENV_BUSY_POLL_US,
    ENV_CONNECT_TIMEOUT_MS, ENV_FRAME_BUDGET_BYTES, ENV_HEARTBEAT_INTERVAL_MS,
    ENV_HEARTBEAT_TIMEOUT_MS, ENV_INSECURE, ENV_MAX_CONNECTIONS, ENV_METRICS_ADDR, ENV_NUM_SERVERS,
    ENV_NUM_WORKERS, ENV_PAYLOAD_CHECKSUM, ENV_RANK, ENV_REPLICATION, ENV_REPLICATION_MODE,
    ENV_REPLY_BUDGET_BYTES, ENV_REPLY_BUDGET_TOTAL_BYTES, ENV_SCHEDULER, ENV_SCHEDULER_OUTAGE_MS,
    ENV_SECRET, ENV_SECRET_FILE, ENV_SERVER_SHARDS, ENV_STARTUP_DEADLINE_MS, ENV_TRANSPORT,
};

/// Every setting after layering, before the role decides which are required.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) scheduler: Option<SocketAddr>,
    pub(super) num_servers: Option<usize>,
    pub(super) num_workers: Option<usize>,
    pub(super) bind: Option<SocketAddr>,
    pub(super) key: ClusterKey,
    pub(super) connect_timeout: Duration,
    pub(super) busy_poll: Option<Duration>,
    pub(super) payload_checksum: Option<bool>,
    pub(super) limits: FrameLimits,
    pub(super) budgets: Budgets,
    pub(super) server_shards: Option<usize>,
    pub(super) replication: Option<usize>,
    pub(super) replication_mode: ReplicationMode,
    pub(super) transport: TransportMode,
    pub(super) liveness: LivenessConfig,
    pub(super) rank: Option<u32>,
    pub(super) metrics_addr: Option<SocketAddr>,
}

impl Settings {
    pub(super) fn require_scheduler(&self) -> Result<SocketAddr> {
        self.scheduler.ok_or_else(|| {
            anyhow!(
                "the scheduler address is not set: pass --scheduler, set {ENV_SCHEDULER}, \
                 or set `scheduler` in the config file"
            )
        })
    }

    /// A server's cluster settings: the job's size may be left unset (0), and is then the
    /// scheduler's; when set, the server checks it against the job it joins.
    pub(super) fn server_cluster(&self, scheduler: SocketAddr) -> Result<ClusterConfig> {
        let sized = Settings {
            num_servers: Some(self.num_servers.unwrap_or(0)),
            num_workers: Some(self.num_workers.unwrap_or(0)),
            ..self.clone()
        };
        sized.cluster(scheduler)
    }

    pub(super) fn cluster(&self, scheduler: SocketAddr) -> Result<ClusterConfig> {
        let num_servers = self.num_servers.ok_or_else(|| {
            anyhow!(
                "the number of servers is not set: pass --num-servers, set {ENV_NUM_SERVERS}, \
                 or set `num_servers` in the config file"
            )
        })?;
        let num_workers = self.num_workers.ok_or_else(|| {
            anyhow!(
                "the number of workers is not set: pass --num-workers, set {ENV_NUM_WORKERS}, \
                 or set `num_workers` in the config file"
            )
        })?;
        let mut cluster = ClusterConfig::new(scheduler, num_servers, num_workers);
        cluster.limits = self.limits;
        cluster.key = self.key.clone();
        cluster.budgets = self.budgets;
        cluster.connect_timeout = self.connect_timeout;
        if let Some(spin) = self.busy_poll {
            cluster.busy_poll = spin;
        }
        if let Some(crc) = self.payload_checksum {
            cluster.payload_checksum = crc;
        }
        cluster.server_shards = self.server_shards.unwrap_or(1);
        cluster.replication = self.replication.unwrap_or(1);
        cluster.replication_mode = self.replication_mode;
        cluster.transport = self.transport;
        cluster.liveness = self.liveness;
        cluster.rank = self.rank;
        cluster.metrics_addr = self.metrics_addr;
        Ok(cluster)
    }
}

/// A setting's names in each source, and how to read its flag.
struct Setting {
    flag: &'static str,
    flag_value: fn(&Overrides) -> Option<&String>,
    env: &'static str,
    key: &'static str,
}

/// A setting with a flag: `$flag`, the [`Overrides`] field `$field` (also its config file key)
/// and the environment variable `$env`; or one without a flag, with the config file key `$key`
/// (empty for none) and the environment variable `$env`.
macro_rules! setting {
    ($name:ident: $flag:literal, $field:ident, $env:ident) => {
        const $name: Setting = Setting {
            flag: $flag,
            flag_value: |o| o.$field.as_ref(),
            env: $env,
            key: stringify!($field),
        };
    };
    ($name:ident: no flag, $key:literal, $env:ident) => {
        const $name: Setting = Setting {
            flag: "",
            flag_value: |_| None,
            env: $env,
            key: $key,
        };
    };
}

setting!(SCHEDULER: "--scheduler", scheduler, ENV_SCHEDULER);
setting!(NUM_SERVERS: "--num-servers", num_servers, ENV_NUM_SERVERS);
setting!(NUM_WORKERS: "--num-workers", num_workers, ENV_NUM_WORKERS);
setting!(BIND: "--bind", bind, ENV_BIND);
// No flag on purpose: a secret on the command line is visible to every user through `ps`.
setting!(SECRET: no flag, "secret", ENV_SECRET);
setting!(SECRET_FILE: "--secret-file", secret_file, ENV_SECRET_FILE);
setting!(INSECURE: "--insecure", insecure, ENV_INSECURE);
// Environment only: a rank belongs to one process, not to a file the job's nodes share.
setting!(RANK: no flag, "", ENV_RANK);
setting!(SERVER_SHARDS: "--server-shards", server_shards, ENV_SERVER_SHARDS);
setting!(REPLICATION: "--replication", replication, ENV_REPLICATION);
setting!(REPLICATION_MODE: "--replication-mode", replication_mode, ENV_REPLICATION_MODE);
setting!(TRANSPORT: "--transport", transport, ENV_TRANSPORT);
setting!(CONNECT_TIMEOUT_MS: "--connect-timeout-ms", connect_timeout_ms, ENV_CONNECT_TIMEOUT_MS);
setting!(BUSY_POLL_US: "--busy-poll-us", busy_poll_us, ENV_BUSY_POLL_US);
setting!(PAYLOAD_CHECKSUM: "--payload-checksum", payload_checksum, ENV_PAYLOAD_CHECKSUM);
setting!(METRICS_ADDR: "--metrics-addr", metrics_addr, ENV_METRICS_ADDR);
setting!(MAX_CONNECTIONS: "--max-connections", max_connections, ENV_MAX_CONNECTIONS);
setting!(REPLY_BUDGET: "--reply-budget-bytes", reply_budget_bytes, ENV_REPLY_BUDGET_BYTES);
setting!(
    REPLY_BUDGET_TOTAL: "--reply-budget-total-bytes",
    reply_budget_total_bytes,
    ENV_REPLY_BUDGET_TOTAL_BYTES
);
setting!(FRAME_BUDGET: "--frame-budget-bytes", frame_budget_bytes, ENV_FRAME_BUDGET_BYTES);
setting!(HEARTBEAT_INTERVAL_MS: "--heartbeat-interval-ms", heartbeat_interval_ms, ENV_HEARTBEAT_INTERVAL_MS);
setting!(HEARTBEAT_TIMEOUT_MS: "--heartbeat-timeout-ms", heartbeat_timeout_ms, ENV_HEARTBEAT_TIMEOUT_MS);
setting!(STARTUP_DEADLINE_MS: "--startup-deadline-ms", startup_deadline_ms, ENV_STARTUP_DEADLINE_MS);
setting!(SCHEDULER_OUTAGE_MS: "--scheduler-outage-ms", scheduler_outage_ms, ENV_SCHEDULER_OUTAGE_MS);

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Flag(&'static str),
    Env(&'static str),
    File { origin: String, key: &'static str },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::File { origin, key } => write!(f, "key `{key}` in config file {origin}"),
        }
    }
}

/// Declares the TOML file's schema, [`FileSettings`], from its scalar keys and their types, and
/// [`FileSettings::scalars`], which gives each one that is set as text so all sources share one
/// parser per setting.
macro_rules! file_settings {
    ($($key:ident: $ty:ty),* $(,)?) => {
        /// The TOML file's schema.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            $($key: Option<$ty>,)*
            limits: Option<FileLimits>,
        }

        impl FileSettings {
            /// Each scalar the file sets, as text, by its key.
            fn scalars(&self) -> HashMap<&'static str, String> {
                let mut values = HashMap::new();
                $(
                    if let Some(value) = &self.$key {
                        values.insert(stringify!($key), value.to_string());
                    }
                )*
                values
            }
        }
    };
}

file_settings! {
    scheduler: String,
    num_servers: u64,
    num_workers: u64,
    bind: String,
    secret: String,
    secret_file: String,
    insecure: bool,
    connect_timeout_ms: u64,
    busy_poll_us: u64,
    payload_checksum: bool,
    server_shards: u64,
    replication: u64,
    replication_mode: String,
    transport: String,
    metrics_addr: String,
    max_connections: u64,
    reply_budget_bytes: u64,
    reply_budget_total_bytes: u64,
    frame_budget_bytes: u64,
    heartbeat_interval_ms: u64,
    heartbeat_timeout_ms: u64,
    startup_deadline_ms: u64,
    scheduler_outage_ms: u64,
}

/// The `[limits]` table: overrides of individual [`FrameLimits`] fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_keys_bytes: Option<u64>,
    max_values_bytes: Option<u64>,
    max_extra_bytes: Option<u64>,
}

/// The parsed file, with every scalar as text so all sources share one parser per setting.
struct FileLayer {
    origin: String,
    values: HashMap<&'static str, String>,
    limits: FileLimits,
}

impl FileLayer {
    fn empty() -> Self {
        Self {
            origin: String::new(),
            values: HashMap::new(),
            limits: FileLimits::default(),
        }
    }

    fn parse(file: &ConfigFile) -> Result<Self> {
        let parsed: FileSettings = toml::from_str(&file.text)
            .with_context(|| format!("invalid config file {}", file.origin))?;
        Ok(Self {
            origin: file.origin.clone(),
            values: parsed.scalars(),
            limits: parsed.limits.unwrap_or_default(),
        })
    }
}

/// The three layers below defaults.
struct Layers<'a> {
    overrides: &'a Overrides,
    env: &'a EnvMap,
    file: FileLayer,
}

impl Layers<'_> {
    /// The highest-precedence value of `setting`, with its source.
    fn lookup(&self, setting: &Setting) -> Option<(Source, String)> {
        if let Some(value) = (setting.flag_value)(self.overrides) {
            return Some((Source::Flag(setting.flag), value.clone()));
        }
        if let Some(value) = env_value(self.env, setting.env) {
            return Some((Source::Env(setting.env), value.to_string()));
        }
        let value = self.file.values.get(setting.key)?;
        let source = Source::File {
            origin: self.file.origin.clone(),
            key: setting.key,
        };
        Some((source, value.clone()))
    }

    /// The value of `setting` parsed by `parse`; errors name the source and the value.
    fn get<T>(
        &self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>> {
        let Some((source, text)) = self.lookup(setting) else {
            return Ok(None);
        };
        let shown = if setting.key == "secret" {
            "<hidden>".to_string()
        } else {
            text.clone()
        };
        parse(&text)
            .map(Some)
            .map_err(|why| anyhow!("invalid value `{shown}` from {source}: {why}"))
    }

    /// The default budgets with each one set by its highest-precedence source.
    fn budgets(&self) -> Result<Budgets> {
        let mut budgets = Budgets::default();
        let fields = [
            (&MAX_CONNECTIONS, &mut budgets.max_connections),
            (&REPLY_BUDGET, &mut budgets.reply_bytes_per_connection),
            (&REPLY_BUDGET_TOTAL, &mut budgets.reply_bytes_total),
            (&FRAME_BUDGET, &mut budgets.frame_bytes_total),
        ];
        for (setting, field) in fields {
            if let Some(value) = self.get(setting, parse_count)? {
                *field = value;
            }
        }
        Ok(budgets)
    }

    /// Heartbeat and start-up settings, each from its source or the default; a timeout shorter
    /// than two intervals is refused naming where both came from.
    fn liveness(&self) -> Result<LivenessConfig> {
        let defaults = LivenessConfig::default();
        let ms = |setting: &Setting, default: Duration| -> Result<Duration> {
            let value = self.get(setting, parse_positive)?;
            Ok(value.map_or(default, Duration::from_millis))
        };
        let cfg = LivenessConfig {
            heartbeat_interval: ms(&HEARTBEAT_INTERVAL_MS, defaults.heartbeat_interval)?,
            heartbeat_timeout: ms(&HEARTBEAT_TIMEOUT_MS, defaults.heartbeat_timeout)?,
            startup_deadline: ms(&STARTUP_DEADLINE_MS, defaults.startup_deadline)?,
            scheduler_outage: ms(&SCHEDULER_OUTAGE_MS, defaults.scheduler_outage)?,
        };
        cfg.validate().map_err(|why| {
            let from = |setting: &Setting| {
                self.lookup(setting)
                    .map_or("the default".to_string(), |(source, _)| source.to_string())
            };
            anyhow!(
                "{why} (the interval from {}, the timeout from {})",
                from(&HEARTBEAT_INTERVAL_MS),
                from(&HEARTBEAT_TIMEOUT_MS)
            )
        })?;
        Ok(cfg)
    }

    /// The defaults with the file's `[limits]` overrides applied.
    fn limits(&self) -> Result<FrameLimits> {
        let mut limits = FrameLimits::default();
        let file = &self.file.limits;
        let overrides = [
            (
                "max_keys_bytes",
                file.max_keys_bytes,
                &mut limits.max_keys_bytes,
            ),
            (
                "max_values_bytes",
                file.max_values_bytes,
                &mut limits.max_values_bytes,
            ),
            (
                "max_extra_bytes",
                file.max_extra_bytes,
                &mut limits.max_extra_bytes,
            ),
        ];
        for (key, value, field) in overrides {
            let Some(value) = value else { continue };
            if value == 0 {
                bail!(
                    "invalid value `0` from key `limits.{key}` in config file {}: \
                     must be at least 1",
                    self.file.origin
                );
            }
            *field = value;
        }
        Ok(limits)
    }
}

/// The cluster secret from exactly one of its sources, or `--insecure`; neither is an error.
fn cluster_key(layers: &Layers<'_>) -> Result<ClusterKey> {
    let insecure = layers.get(&INSECURE, parse_bool)?.unwrap_or(false);
    let secret = layers.get(&SECRET, parse_secret)?;
    let file = layers.get(&SECRET_FILE, read_secret_file)?;
    match (secret, file, insecure) {
        (Some(_), Some(_), _) => bail!(
            "both a cluster secret ({ENV_SECRET} or `secret`) and a secret file \
             (--secret-file, {ENV_SECRET_FILE} or `secret_file`) are set: keep one"
        ),
        (Some(_), None, true) | (None, Some(_), true) => bail!(
            "--insecure ({ENV_INSECURE}, `insecure`) and a cluster secret are both set: \
             a node either authenticates its peers or does not"
        ),
        (Some(secret), None, false) | (None, Some(secret), false) => Ok(ClusterKey::Secret(secret)),
        (None, None, true) => Ok(ClusterKey::Insecure),
        (None, None, false) => bail!(
            "no cluster secret: set {ENV_SECRET}, or name a file holding it with --secret-file \
             ({ENV_SECRET_FILE}, `secret_file`); `ferrops local` makes one for its job. \
             Pass --insecure to run without authentication (any local process could then \
             join the job and change the model)"
        ),
    }
}

/// Every setting, each from its highest-precedence source.
pub(super) fn resolve_settings(
    overrides: &Overrides,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<Settings> {
    let layers = Layers {
        overrides,
        env,
        file: file
            .map(FileLayer::parse)
            .transpose()?
            .unwrap_or_else(FileLayer::empty),
    };
    let timeout_ms = layers.get(&CONNECT_TIMEOUT_MS, parse_positive)?;
    let num_servers = layers.get(&NUM_SERVERS, parse_count)?;
    let replication = layers.get(&REPLICATION, parse_count)?;
    if let (Some(servers), Some(r)) = (num_servers, replication) {
        // Refused here, naming where R came from, before any work starts.
        if r > servers {
            let source = layers.lookup(&REPLICATION).map(|(s, _)| s.to_string());
            bail!(
                "invalid value `{r}` from {}: replication factor {r} needs at least {r} \
                 servers, but the job has {servers} (a chain never holds two copies on one \
                 server)",
                source.unwrap_or_default()
            );
        }
    }
    Ok(Settings {
        scheduler: layers.get(&SCHEDULER, parse_address)?,
        num_servers,
        num_workers: layers.get(&NUM_WORKERS, parse_count)?,
        bind: layers.get(&BIND, parse_address)?,
        key: cluster_key(&layers)?,
        connect_timeout: timeout_ms.map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis),
        busy_poll: layers
            .get(&BUSY_POLL_US, parse_busy_poll_us)?
            .map(Duration::from_micros),
        payload_checksum: layers.get(&PAYLOAD_CHECKSUM, parse_bool)?,
        limits: layers.limits()?,
        budgets: layers.budgets()?,
        server_shards: layers.get(&SERVER_SHARDS, parse_count)?,
        replication,
        replication_mode: layers
            .get(&REPLICATION_MODE, |m| m.parse::<ReplicationMode>())?
            .unwrap_or_default(),
        transport: layers
            .get(&TRANSPORT, |t| t.parse::<TransportMode>())?
            .unwrap_or_default(),
        liveness: layers.liveness()?,
        rank: layers.get(&RANK, parse_rank)?,
        metrics_addr: layers.get(&METRICS_ADDR, parse_address)?,
    })
}
