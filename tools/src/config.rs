//! Resolves role configurations from flags, environment variables and a TOML file.
//!
//! Precedence, highest first: flags > environment > file > defaults. Every function here is pure
//! over an explicit environment map and the file's text, so tests never touch the process
//! environment; [`ConfigInput::gather`] is the one place that reads the real environment and the
//! file from disk.
//!
//! Errors name where the offending value came from (flag, environment variable, or key in a named
//! file) and the value itself.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferrops_engine::config::{ClusterConfig, SchedulerConfig, ServerConfig, WorkerConfig};
use ferrops_net::{FrameLimits, TransportMode};
use serde::Deserialize;

use crate::cli::ClusterFlags;

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
/// Environment variable with the number of workers.
pub const ENV_NUM_WORKERS: &str = "FERROPS_NUM_WORKERS";
/// Environment variable with the address a node listens on.
pub const ENV_BIND: &str = "FERROPS_BIND";
/// Environment variable with the cluster secret.
pub const ENV_SECRET: &str = "FERROPS_SECRET";
/// Environment variable with the connect timeout in milliseconds.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "FERROPS_CONNECT_TIMEOUT_MS";
/// Worker↔server transport: `auto`, `rdma` or `tcp`.
pub const ENV_TRANSPORT: &str = "FERROPS_TRANSPORT";

/// How long a node waits for the scheduler unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The process environment (variables that are not valid UTF-8 are skipped).
pub fn process_env() -> EnvMap {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// A role of a ferrops process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Server,
    Worker,
}

impl Role {
    /// The role's name as used by `FERROPS_ROLE` and the subcommands.
    pub fn name(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Server => "server",
            Role::Worker => "worker",
        }
    }
}

/// The role named by `FERROPS_ROLE`, if set (an empty value counts as unset).
pub fn role_from_env(env: &EnvMap) -> Result<Option<Role>> {
    let Some(value) = env_value(env, ENV_ROLE) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "scheduler" => Ok(Some(Role::Scheduler)),
        "server" => Ok(Some(Role::Server)),
        "worker" => Ok(Some(Role::Worker)),
        _ => bail!(
            "invalid value `{value}` from environment variable {ENV_ROLE}: \
             expected scheduler, server or worker"
        ),
    }
}

/// A configuration file's name (for messages) and text.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub origin: String,
    pub text: String,
}

/// Everything configuration is resolved from: flags, environment and the optional file.
#[derive(Clone, Debug, Default)]
pub struct ConfigInput {
    pub flags: ClusterFlags,
    pub env: EnvMap,
    pub file: Option<ConfigFile>,
}

impl ConfigInput {
    /// Reads the process environment and the file named by `--config` or `FERROPS_CONFIG`.
    pub fn gather(flags: &ClusterFlags) -> Result<Self> {
        let env = process_env();
        let file = read_config_file(flags, &env)?;
        Ok(Self {
            flags: flags.clone(),
            env,
            file,
        })
    }

    /// The scheduler's configuration.
    pub fn scheduler(&self) -> Result<SchedulerConfig> {
        scheduler_config(&self.flags, &self.env, self.file.as_ref())
    }

    /// A server's configuration.
    pub fn server(&self) -> Result<ServerConfig> {
        server_config(&self.flags, &self.env, self.file.as_ref())
    }

    /// A worker's configuration.
    pub fn worker(&self) -> Result<WorkerConfig> {
        worker_config(&self.flags, &self.env, self.file.as_ref())
    }
}

/// Reads the file named by `--config` (or else `FERROPS_CONFIG`), if any.
pub fn read_config_file(flags: &ClusterFlags, env: &EnvMap) -> Result<Option<ConfigFile>> {
    let (path, source) = match (&flags.config, env_value(env, ENV_CONFIG)) {
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

/// The scheduler's configuration. It listens on the bind address, or else on the scheduler
/// address itself (ps-lite style: every node is given the same `FERROPS_SCHEDULER`).
pub fn scheduler_config(
    flags: &ClusterFlags,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<SchedulerConfig> {
    let settings = resolve_settings(flags, env, file)?;
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
    })
}

/// A server's configuration. Without a bind address it listens on an ephemeral port of the
/// loopback interface when the scheduler is on loopback, and of every interface otherwise.
pub fn server_config(
    flags: &ClusterFlags,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<ServerConfig> {
    let settings = resolve_settings(flags, env, file)?;
    let scheduler = settings.require_scheduler()?;
    let bind = settings
        .bind
        .unwrap_or_else(|| default_server_bind(scheduler));
    Ok(ServerConfig::new(settings.cluster(scheduler)?, bind))
}

/// A worker's configuration.
pub fn worker_config(
    flags: &ClusterFlags,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<WorkerConfig> {
    let settings = resolve_settings(flags, env, file)?;
    let scheduler = settings.require_scheduler()?;
    Ok(WorkerConfig {
        cluster: settings.cluster(scheduler)?,
    })
}

fn default_server_bind(scheduler: SocketAddr) -> SocketAddr {
    let ip = match scheduler.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Every setting after layering, before the role decides which are required.
#[derive(Debug)]
struct Settings {
    scheduler: Option<SocketAddr>,
    num_servers: Option<usize>,
    num_workers: Option<usize>,
    bind: Option<SocketAddr>,
    secret: Option<String>,
    connect_timeout: Duration,
    limits: FrameLimits,
    server_shards: Option<usize>,
    transport: TransportMode,
}

impl Settings {
    fn require_scheduler(&self) -> Result<SocketAddr> {
        self.scheduler.ok_or_else(|| {
            anyhow!(
                "the scheduler address is not set: pass --scheduler, set {ENV_SCHEDULER}, \
                 or set `scheduler` in the config file"
            )
        })
    }

    fn cluster(&self, scheduler: SocketAddr) -> Result<ClusterConfig> {
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
        cluster.secret = self.secret.clone();
        cluster.connect_timeout = self.connect_timeout;
        cluster.server_shards = self.server_shards.unwrap_or(1);
        cluster.transport = self.transport;
        Ok(cluster)
    }
}

/// A setting's names in each source, and how to read its flag.
struct Setting {
    flag: &'static str,
    flag_value: fn(&ClusterFlags) -> Option<&String>,
    env: &'static str,
    key: &'static str,
}

const SCHEDULER: Setting = Setting {
    flag: "--scheduler",
    flag_value: |flags| flags.scheduler.as_ref(),
    env: ENV_SCHEDULER,
    key: "scheduler",
};
const NUM_SERVERS: Setting = Setting {
    flag: "--num-servers",
    flag_value: |flags| flags.num_servers.as_ref(),
    env: ENV_NUM_SERVERS,
    key: "num_servers",
};
const NUM_WORKERS: Setting = Setting {
    flag: "--num-workers",
    flag_value: |flags| flags.num_workers.as_ref(),
    env: ENV_NUM_WORKERS,
    key: "num_workers",
};
const BIND: Setting = Setting {
    flag: "--bind",
    flag_value: |flags| flags.bind.as_ref(),
    env: ENV_BIND,
    key: "bind",
};
/// No flag on purpose: a secret on the command line is visible to every user through `ps`.
const SECRET: Setting = Setting {
    flag: "",
    flag_value: |_| None,
    env: ENV_SECRET,
    key: "secret",
};
const SERVER_SHARDS: Setting = Setting {
    flag: "--server-shards",
    flag_value: |flags| flags.server_shards.as_ref(),
    env: ENV_SERVER_SHARDS,
    key: "server_shards",
};
const TRANSPORT: Setting = Setting {
    flag: "--transport",
    flag_value: |flags| flags.transport.as_ref(),
    env: ENV_TRANSPORT,
    key: "transport",
};
const CONNECT_TIMEOUT_MS: Setting = Setting {
    flag: "--connect-timeout-ms",
    flag_value: |flags| flags.connect_timeout_ms.as_ref(),
    env: ENV_CONNECT_TIMEOUT_MS,
    key: "connect_timeout_ms",
};

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

/// The TOML file's schema.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    scheduler: Option<String>,
    num_servers: Option<u64>,
    num_workers: Option<u64>,
    bind: Option<String>,
    secret: Option<String>,
    connect_timeout_ms: Option<u64>,
    server_shards: Option<u64>,
    transport: Option<String>,
    limits: Option<FileLimits>,
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
        let scalars = [
            ("scheduler", parsed.scheduler),
            ("num_servers", parsed.num_servers.map(|n| n.to_string())),
            ("num_workers", parsed.num_workers.map(|n| n.to_string())),
            ("bind", parsed.bind),
            ("secret", parsed.secret),
            (
                "connect_timeout_ms",
                parsed.connect_timeout_ms.map(|n| n.to_string()),
            ),
            ("server_shards", parsed.server_shards.map(|n| n.to_string())),
            ("transport", parsed.transport),
        ];
        Ok(Self {
            origin: file.origin.clone(),
            values: scalars
                .into_iter()
                .filter_map(|(key, value)| Some((key, value?)))
                .collect(),
            limits: parsed.limits.unwrap_or_default(),
        })
    }
}

/// The three layers below defaults.
struct Layers<'a> {
    flags: &'a ClusterFlags,
    env: &'a EnvMap,
    file: FileLayer,
}

impl Layers<'_> {
    /// The highest-precedence value of `setting`, with its source.
    fn lookup(&self, setting: &Setting) -> Option<(Source, String)> {
        if let Some(value) = (setting.flag_value)(self.flags) {
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

fn resolve_settings(
    flags: &ClusterFlags,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<Settings> {
    let layers = Layers {
        flags,
        env,
        file: file
            .map(FileLayer::parse)
            .transpose()?
            .unwrap_or_else(FileLayer::empty),
    };
    let timeout_ms = layers.get(&CONNECT_TIMEOUT_MS, parse_positive)?;
    Ok(Settings {
        scheduler: layers.get(&SCHEDULER, parse_address)?,
        num_servers: layers.get(&NUM_SERVERS, parse_count)?,
        num_workers: layers.get(&NUM_WORKERS, parse_count)?,
        bind: layers.get(&BIND, parse_address)?,
        secret: layers.get(&SECRET, parse_secret)?,
        connect_timeout: timeout_ms.map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis),
        limits: layers.limits()?,
        server_shards: layers.get(&SERVER_SHARDS, parse_count)?,
        transport: layers
            .get(&TRANSPORT, |t| t.parse::<TransportMode>())?
            .unwrap_or_default(),
    })
}

/// An environment variable's value; empty counts as unset (launch scripts often export empties).
fn env_value<'a>(env: &'a EnvMap, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn parse_positive(text: &str) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

fn parse_count(text: &str) -> Result<usize, String> {
    let n = parse_positive(text)?;
    usize::try_from(n).map_err(|_| "too large".to_string())
}

/// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (resolved now; an IPv4 address is preferred, as
/// `localhost` often resolves to `::1` first while services listen on 127.0.0.1).
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err("expected HOST:PORT".to_string());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("host `{host}` has no address"))
}

fn parse_secret(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile {
            origin: "job.toml".to_string(),
            text: text.to_string(),
        }
    }

    fn error_text(result: Result<impl fmt::Debug>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }

    const FULL_FILE: &str = r#"
        scheduler = "10.0.0.1:9000"
        num_servers = 4
        num_workers = 8
        bind = "10.0.0.1:9000"
        secret = "s3cret"
        connect_timeout_ms = 5000
        [limits]
        max_keys_bytes = 1024
    "#;

    #[test]
    fn file_alone_fills_every_setting() {
        let cfg =
            scheduler_config(&ClusterFlags::default(), &env(&[]), Some(&file(FULL_FILE))).unwrap();
        assert_eq!(cfg.bind, "10.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.cluster.scheduler, "10.0.0.1:9000".parse().unwrap());
        assert_eq!((cfg.cluster.num_servers, cfg.cluster.num_workers), (4, 8));
        assert_eq!(cfg.cluster.secret.as_deref(), Some("s3cret"));
        assert_eq!(cfg.cluster.connect_timeout, Duration::from_millis(5000));
        assert_eq!(cfg.cluster.limits.max_keys_bytes, 1024);
        let defaults = FrameLimits::default();
        assert_eq!(
            cfg.cluster.limits.max_values_bytes,
            defaults.max_values_bytes
        );
        assert_eq!(cfg.cluster.limits.max_extra_bytes, defaults.max_extra_bytes);
    }

    #[test]
    fn environment_beats_file() {
        let env = env(&[
            (ENV_NUM_SERVERS, "2"),
            (ENV_SCHEDULER, "127.0.0.1:7000"),
            (ENV_SECRET, "from-env"),
        ]);
        let cfg = worker_config(&ClusterFlags::default(), &env, Some(&file(FULL_FILE))).unwrap();
        assert_eq!(cfg.cluster.num_servers, 2);
        assert_eq!(cfg.cluster.num_workers, 8);
        assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(cfg.cluster.secret.as_deref(), Some("from-env"));
    }

    #[test]
    fn server_shards_come_from_env_or_file_and_default_to_one() {
        let base = env(&[
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "2"),
            (ENV_SCHEDULER, "127.0.0.1:7000"),
        ]);
        let cfg = worker_config(&ClusterFlags::default(), &base, None).unwrap();
        assert_eq!(cfg.cluster.server_shards, 1);
        let mut with_env = base.clone();
        with_env.insert(ENV_SERVER_SHARDS.into(), "4".into());
        let cfg = worker_config(&ClusterFlags::default(), &with_env, None).unwrap();
        assert_eq!(cfg.cluster.server_shards, 4);
        let cfg = worker_config(
            &ClusterFlags::default(),
            &base,
            Some(&file("server_shards = 3")),
        )
        .unwrap();
        assert_eq!(cfg.cluster.server_shards, 3);
        with_env.insert(ENV_SERVER_SHARDS.into(), "0".into());
        assert!(worker_config(&ClusterFlags::default(), &with_env, None).is_err());
    }

    #[test]
    fn transport_layers_like_every_setting_and_rejects_unknown_names() {
        let base = env(&[
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "2"),
            (ENV_SCHEDULER, "127.0.0.1:7000"),
        ]);
        let cfg = worker_config(&ClusterFlags::default(), &base, None).unwrap();
        assert_eq!(cfg.cluster.transport, TransportMode::Auto);
        let from_file = Some(file("transport = \"tcp\""));
        let cfg = worker_config(&ClusterFlags::default(), &base, from_file.as_ref()).unwrap();
        assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
        let mut with_env = base.clone();
        with_env.insert(ENV_TRANSPORT.into(), "rdma".into());
        let cfg = worker_config(&ClusterFlags::default(), &with_env, from_file.as_ref()).unwrap();
        assert_eq!(cfg.cluster.transport, TransportMode::Rdma);
        let flags = ClusterFlags {
            transport: Some("tcp".into()),
            ..Default::default()
        };
        let cfg = worker_config(&flags, &with_env, None).unwrap();
        assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
        with_env.insert(ENV_TRANSPORT.into(), "infiniband".into());
        let err = worker_config(&ClusterFlags::default(), &with_env, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("infiniband") && err.contains(ENV_TRANSPORT),
            "{err}"
        );
    }

    #[test]
    fn flags_beat_environment_and_file() {
        let flags = ClusterFlags {
            num_servers: Some("3".into()),
            scheduler: Some("127.0.0.1:6000".into()),
            connect_timeout_ms: Some("250".into()),
            ..Default::default()
        };
        let env = env(&[(ENV_NUM_SERVERS, "2"), (ENV_SCHEDULER, "127.0.0.1:7000")]);
        let cfg = worker_config(&flags, &env, Some(&file(FULL_FILE))).unwrap();
        assert_eq!(cfg.cluster.num_servers, 3);
        assert_eq!(cfg.cluster.scheduler, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(cfg.cluster.connect_timeout, Duration::from_millis(250));
    }

    #[test]
    fn defaults_apply_without_file() {
        let env = env(&[
            (ENV_SCHEDULER, "127.0.0.1:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
        ]);
        let cfg = server_config(&ClusterFlags::default(), &env, None).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cfg.cluster.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(cfg.cluster.secret, None);
        let defaults = FrameLimits::default();
        assert_eq!(cfg.cluster.limits.max_keys_bytes, defaults.max_keys_bytes);
    }

    #[test]
    fn server_on_a_remote_scheduler_listens_everywhere() {
        let env = env(&[
            (ENV_SCHEDULER, "10.1.2.3:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
        ]);
        let cfg = server_config(&ClusterFlags::default(), &env, None).unwrap();
        assert_eq!(cfg.bind, "0.0.0.0:0".parse().unwrap());
    }

    #[test]
    fn scheduler_binds_its_own_address_or_the_bind_flag() {
        let env = env(&[
            (ENV_SCHEDULER, "127.0.0.1:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
        ]);
        let cfg = scheduler_config(&ClusterFlags::default(), &env, None).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:7000".parse().unwrap());
        let flags = ClusterFlags {
            bind: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let cfg = scheduler_config(&flags, &env, None).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
    }

    #[test]
    fn empty_environment_variable_counts_as_unset() {
        let env = env(&[(ENV_NUM_SERVERS, ""), (ENV_SCHEDULER, "127.0.0.1:1")]);
        let cfg = worker_config(&ClusterFlags::default(), &env, Some(&file(FULL_FILE))).unwrap();
        assert_eq!(cfg.cluster.num_servers, 4);
    }

    #[test]
    fn unknown_file_key_is_named_with_the_file() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("num_server = 2\n")),
        ));
        assert!(err.contains("job.toml"), "{err}");
        assert!(err.contains("num_server"), "{err}");
    }

    #[test]
    fn unknown_limits_key_is_an_error() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("[limits]\nmax_key_bytes = 2\n")),
        ));
        assert!(
            err.contains("job.toml") && err.contains("max_key_bytes"),
            "{err}"
        );
    }

    #[test]
    fn zero_servers_from_each_source_names_that_source() {
        let flags = ClusterFlags {
            num_servers: Some("0".into()),
            ..Default::default()
        };
        let err = error_text(worker_config(&flags, &env(&[]), None));
        assert!(
            err.contains("flag --num-servers") && err.contains("`0`"),
            "{err}"
        );

        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[(ENV_NUM_SERVERS, "0")]),
            None,
        ));
        assert!(
            err.contains("environment variable FERROPS_NUM_SERVERS"),
            "{err}"
        );

        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("num_servers = 0")),
        ));
        assert!(
            err.contains("key `num_servers` in config file job.toml"),
            "{err}"
        );
    }

    #[test]
    fn unparseable_address_names_source_and_value() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[(ENV_SCHEDULER, "not-an-address")]),
            None,
        ));
        assert!(
            err.contains("environment variable FERROPS_SCHEDULER"),
            "{err}"
        );
        assert!(err.contains("`not-an-address`"), "{err}");

        let flags = ClusterFlags {
            bind: Some("1.2.3.4:99999".into()),
            ..Default::default()
        };
        let err = error_text(server_config(&flags, &env(&[]), None));
        assert!(
            err.contains("flag --bind") && err.contains("1.2.3.4:99999"),
            "{err}"
        );
    }

    #[test]
    fn host_names_are_resolved_preferring_ipv4() {
        let env = env(&[
            (ENV_SCHEDULER, "localhost:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
        ]);
        let cfg = worker_config(&ClusterFlags::default(), &env, None).unwrap();
        assert!(cfg.cluster.scheduler.ip().is_loopback());
        assert_eq!(cfg.cluster.scheduler.port(), 7000);
    }

    #[test]
    fn non_numeric_count_names_source() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[(ENV_NUM_WORKERS, "four")]),
            None,
        ));
        assert!(
            err.contains("FERROPS_NUM_WORKERS") && err.contains("`four`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_in_file_names_the_file() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("num_workers = \"four\"")),
        ));
        assert!(
            err.contains("job.toml") && err.contains("num_workers"),
            "{err}"
        );
    }

    #[test]
    fn zero_limit_is_an_error() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("[limits]\nmax_values_bytes = 0")),
        ));
        assert!(
            err.contains("limits.max_values_bytes") && err.contains("job.toml"),
            "{err}"
        );
    }

    #[test]
    fn missing_settings_say_how_to_set_them() {
        let err = error_text(worker_config(&ClusterFlags::default(), &env(&[]), None));
        assert!(
            err.contains("--scheduler") && err.contains(ENV_SCHEDULER),
            "{err}"
        );

        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[(ENV_SCHEDULER, "127.0.0.1:1"), (ENV_NUM_SERVERS, "1")]),
            None,
        ));
        assert!(err.contains("number of workers"), "{err}");

        let err = error_text(scheduler_config(
            &ClusterFlags::default(),
            &env(&[(ENV_NUM_SERVERS, "1"), (ENV_NUM_WORKERS, "1")]),
            None,
        ));
        assert!(err.contains("--bind"), "{err}");
    }

    #[test]
    fn secret_value_is_not_echoed_in_errors() {
        let err = error_text(worker_config(
            &ClusterFlags::default(),
            &env(&[]),
            Some(&file("secret = \"\"")),
        ));
        assert!(err.contains("<hidden>") && err.contains("secret"), "{err}");
    }

    #[test]
    fn role_from_environment() {
        assert_eq!(role_from_env(&env(&[])).unwrap(), None);
        assert_eq!(
            role_from_env(&env(&[(ENV_ROLE, "Server")])).unwrap(),
            Some(Role::Server)
        );
        let err = error_text(role_from_env(&env(&[(ENV_ROLE, "boss")])));
        assert!(
            err.contains("FERROPS_ROLE") && err.contains("`boss`"),
            "{err}"
        );
    }

    #[test]
    fn config_file_comes_from_flag_then_environment() {
        let missing = std::env::temp_dir().join("ferrops-config-test-does-not-exist.toml");
        let env = env(&[(ENV_CONFIG, missing.to_str().unwrap())]);
        let err = error_text(read_config_file(&ClusterFlags::default(), &env));
        assert!(err.contains("environment variable FERROPS_CONFIG"), "{err}");
        assert!(read_config_file(&ClusterFlags::default(), &EnvMap::new())
            .unwrap()
            .is_none());
    }
}
