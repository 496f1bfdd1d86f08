//! What to start: the [`LocalSpec`] of a local cluster, and the command line and environment of
//! its scheduler, servers and worker processes. Server i and worker i are started with
//! `FERROPS_RANK=i`, so the scheduler gives them rank i and calls them what the launcher does
//! (`server 1`, `worker 0`); with several shards per server, the shards of server i have ranks
//! `i × shards` onwards.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferrops_net::auth::Secret;
use ferrops_net::TransportMode;

use crate::config::{
    ENV_BIND, ENV_INSECURE, ENV_METRICS_ADDR, ENV_NUM_SERVERS, ENV_NUM_WORKERS,
    ENV_PAYLOAD_CHECKSUM, ENV_RANK, ENV_REPLICATION, ENV_REPLICATION_MODE, ENV_REPORT_FILE,
    ENV_ROLE, ENV_SCHEDULER, ENV_SECRET, ENV_SECRET_FILE, ENV_TRANSPORT,
};

/// What to launch.
#[derive(Clone, Debug)]
pub struct LocalSpec {
    /// Number of servers.
    pub servers: usize,
    /// Number of workers (processes running `command` for [`run_local`]; for [`LocalCluster`]
    /// only the count the cluster is configured with).
    pub workers: usize,
    /// Worker command and arguments (unused by [`LocalCluster::start`]). A program named
    /// `ferrops` is replaced by `node_exe`.
    pub command: Vec<OsString>,
    /// The ferrops binary that runs the scheduler and servers.
    pub node_exe: PathBuf,
    /// How long the scheduler has to announce its address.
    pub startup_timeout: Duration,
    /// How long the scheduler and servers get to exit by themselves once the workers are done,
    /// and how long any child gets between the first signal and SIGKILL.
    pub shutdown_grace: Duration,
    /// Prefix every line of the children's output with `[server 0]`, `[worker 1]`, ...
    pub prefix_output: bool,
    /// Worker↔server transport of every node; `None` leaves it to each child's environment
    /// (`FERROPS_TRANSPORT`, default auto).
    pub transport: Option<TransportMode>,
    /// The job's cluster secret, handed to every child in `FERROPS_SECRET`: the one in this
    /// process's environment when set (so that nodes started by hand can join), else a fresh
    /// random one.
    pub secret: Secret,
    /// Give every child its own metrics endpoint (`127.0.0.1:0`); otherwise none has one (one
    /// fixed address cannot serve several children).
    pub metrics: bool,
    /// A checkpoint directory the scheduler starts the job from (`ferrops scheduler
    /// --restore`); it checks the checkpoint before it announces its address, so nothing else
    /// starts when it is refused.
    pub restore: Option<PathBuf>,
    /// Replication factor handed to every child (`FERROPS_REPLICATION`); `None` leaves it to
    /// their environment (default 1).
    pub replication: Option<usize>,
    /// When a chain's head replicates, handed to every child (`FERROPS_REPLICATION_MODE`);
    /// `None` leaves it to their environment.
    pub replication_mode: Option<ferrops_engine::config::ReplicationMode>,
    /// A directory each server writes its memory report to when it stops
    /// (`server-<index>.json`, see `FERROPS_REPORT_FILE`); `None`: no report file.
    pub report_dir: Option<PathBuf>,
    /// Whether every node puts a payload CRC-32C on its frames (`FERROPS_PAYLOAD_CHECKSUM`);
    /// `None` leaves it to their environment (default off).
    pub payload_checksum: Option<bool>,
}

impl LocalSpec {
    /// A spec with `servers` and `workers`, the running executable as the node binary, no worker
    /// command, a 30 s startup timeout, a 10 s shutdown grace, and prefixed output.
    pub fn new(servers: usize, workers: usize) -> Result<Self> {
        let node_exe = std::env::current_exe().context("finding the ferrops executable")?;
        let secret = match std::env::var(ENV_SECRET) {
            Ok(text) if !text.is_empty() => {
                Secret::new(&text).with_context(|| format!("environment variable {ENV_SECRET}"))?
            }
            _ => Secret::generate().context("generating the job's secret")?,
        };
        Ok(Self {
            servers,
            workers,
            command: Vec::new(),
            node_exe,
            startup_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            prefix_output: true,
            transport: None,
            secret,
            metrics: false,
            restore: None,
            replication: None,
            replication_mode: None,
            report_dir: None,
            payload_checksum: None,
        })
    }

    pub(super) fn validate(&self) -> Result<()> {
        ensure!(
            self.servers >= 1,
            "a local cluster needs at least one server"
        );
        ensure!(
            self.workers >= 1,
            "a local cluster needs at least one worker"
        );
        if let Some(r) = self.replication {
            ensure!(
                r >= 1,
                "the replication factor must be at least 1 (1: no replicas)"
            );
            ensure!(
                r <= self.servers,
                "replication factor {r} needs at least {r} servers, but the job has {} \
                 (a chain never holds two copies on one server)",
                self.servers
            );
        }
        Ok(())
    }
}

pub(super) fn scheduler_command(spec: &LocalSpec) -> Command {
    let mut command = Command::new(&spec.node_exe);
    command
        .arg("scheduler")
        .env(ENV_ROLE, "scheduler")
        .env(ENV_BIND, "127.0.0.1:0")
        .env_remove(ENV_SCHEDULER)
        .env_remove(ENV_RANK);
    if let Some(dir) = &spec.restore {
        command.arg("--restore").arg(dir);
    }
    set_counts(&mut command, spec);
    command
}

pub(super) fn server_command(spec: &LocalSpec, scheduler: SocketAddr, index: usize) -> Command {
    let mut command = Command::new(&spec.node_exe);
    command
        .arg("server")
        .env(ENV_ROLE, "server")
        .env(ENV_RANK, index.to_string())
        .env(ENV_BIND, "127.0.0.1:0")
        .env(ENV_SCHEDULER, scheduler.to_string());
    match &spec.report_dir {
        Some(dir) => command.env(ENV_REPORT_FILE, dir.join(format!("server-{index}.json"))),
        None => command.env_remove(ENV_REPORT_FILE),
    };
    set_counts(&mut command, spec);
    command
}

pub(super) fn worker_command(spec: &LocalSpec, scheduler: SocketAddr, index: usize) -> Command {
    let (program, args) = spec.command.split_first().expect("validated non-empty");
    let program = if program == OsStr::new("ferrops") {
        spec.node_exe.as_os_str()
    } else {
        program.as_os_str()
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env(ENV_ROLE, "worker")
        .env(ENV_RANK, index.to_string())
        .env(ENV_SCHEDULER, scheduler.to_string())
        .env_remove(ENV_BIND);
    set_counts(&mut command, spec);
    command
}

/// What every child of the job shares: its size, its secret, its transport.
pub(super) fn set_counts(command: &mut Command, spec: &LocalSpec) {
    command
        .env(ENV_NUM_SERVERS, spec.servers.to_string())
        .env(ENV_NUM_WORKERS, spec.workers.to_string())
        .env(ENV_SECRET, spec.secret.expose())
        .env_remove(ENV_SECRET_FILE)
        .env_remove(ENV_INSECURE);
    if let Some(t) = spec.transport {
        command.env(ENV_TRANSPORT, t.to_string());
    }
    if let Some(r) = spec.replication {
        command.env(ENV_REPLICATION, r.to_string());
    }
    if let Some(crc) = spec.payload_checksum {
        command.env(ENV_PAYLOAD_CHECKSUM, crc.to_string());
    }
    if let Some(mode) = spec.replication_mode {
        command.env(ENV_REPLICATION_MODE, mode.to_string());
    }
    match spec.metrics {
        true => command.env(ENV_METRICS_ADDR, "127.0.0.1:0"),
        false => command.env_remove(ENV_METRICS_ADDR),
    };
}
