//! Local launcher: runs a whole ferrops cluster (scheduler, servers, workers) as child processes
//! on loopback, for `ferrops local`, tests, benchmarks and the demo.
//!
//! * [`run_local`] starts the scheduler, reads its `FERROPS_SCHEDULER=<addr>` announcement, starts
//!   the servers and the worker command, and supervises them: the first failure stops everything
//!   and its exit code (128+N for signal N) becomes the launcher's.
//! * [`LocalCluster`] starts only the scheduler and servers and returns the scheduler's address,
//!   so a benchmark can run its workers in-process; dropping it stops the cluster.
//!
//! No child outlives the launcher: each runs in its own process group (signals go to the whole
//! group, catching grandchildren such as a `sh -c` worker's children), and on Linux each gets
//! `PR_SET_PDEATHSIG(SIGKILL)`, so even a SIGKILLed launcher takes its children with it. Because
//! the kernel ties that signal to the *thread* that spawned the child, start clusters from a
//! thread that lives as long as the cluster (normally the main thread).
//!
//! The parts: [`spec`] says what to start, [`fleet`] supervises the children, [`process`]
//! handles processes (spawning options, signals, exit codes), [`output`] forwards their output.

mod fleet;
mod output;
#[allow(unsafe_code)] // pre_exec (parent-death signal) and kill of a process group
pub(crate) mod process;
pub mod slurm;
mod spec;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use ferrops_engine::config::{ClusterConfig, WorkerConfig};
use ferrops_net::TransportMode;

use crate::config::Role;
use fleet::Fleet;
use process::{describe_status, display_command, signal_name, SignalFlag};
pub use spec::LocalSpec;
use spec::{scheduler_command, server_command, worker_command};

/// The line prefix the scheduler announces its address with on stdout.
pub const ANNOUNCE_PREFIX: &str = "FERROPS_SCHEDULER=";

/// Environment variable overriding the label ferrops prefixes its log lines with; the launcher
/// sets it empty for children whose lines it prefixes itself.
pub const ENV_LOG_LABEL: &str = "FERROPS_LOG_LABEL";

/// The exit code of a node that stopped because the scheduler shut the job down after another
/// node failed: the launcher reports such a node only when no other failure shows up.
pub const EXIT_SHUT_DOWN: i32 = 3;

/// How often the supervisor checks its children.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Runs a whole cluster until the job ends and returns the exit code for the launcher: 0 when all
/// workers exited 0, otherwise the first failed child's code (128+N for signal N), or 128+N when
/// the launcher itself got SIGINT/SIGTERM/SIGHUP (which it forwards to every child).
///
/// Errors are problems of the launcher itself (a program that cannot be started, a scheduler that
/// never announces its address).
pub fn run_local(spec: &LocalSpec) -> Result<i32> {
    spec.validate()?;
    ensure!(!spec.command.is_empty(), "no worker command given");
    let signals = SignalFlag::install()?;
    let mut cluster = LocalCluster::start_interruptible(spec, Some(&signals))?;
    let Some(scheduler) = cluster.scheduler else {
        return Ok(cluster.stop_on_signal(&signals));
    };
    for index in 0..spec.workers {
        let command = worker_command(spec, scheduler, index);
        cluster.fleet.spawn(Role::Worker, index, command)?;
    }
    tracing::info!(
        "started {} server(s) and {} worker(s): {}",
        spec.servers,
        spec.workers,
        display_command(&spec.command)
    );
    Ok(cluster.supervise(&signals))
}

/// Runs the built-in worker job `job` with `args` on a whole local cluster (as `ferrops local
/// -- ferrops worker --job JOB -- ARGS` would), with the workers' output unprefixed and the
/// roles' start-up logging quiet unless `FERROPS_LOG`/`RUST_LOG` ask otherwise. Returns the
/// job's exit code.
pub fn run_job_locally(
    servers: usize,
    workers: usize,
    replication: Option<usize>,
    job: &str,
    args: &[String],
    restore: Option<&Path>,
) -> Result<i32> {
    if std::env::var_os("FERROPS_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The job's own output is the point; the roles' chatter stays quiet.
        std::env::set_var("FERROPS_LOG", "warn");
    }
    let mut spec = LocalSpec::new(servers, workers)?;
    spec.replication = replication;
    spec.prefix_output = false;
    spec.restore = restore.map(Path::to_path_buf);
    spec.command = ["ferrops", "worker", "--job", job, "--"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned())
        .map(Into::into)
        .collect();
    run_local(&spec)
}

/// A scheduler and its servers running as child processes; dropping it stops them (SIGTERM, the
/// spec's grace period, then SIGKILL).
pub struct LocalCluster {
    fleet: Fleet,
    /// `None` only while a signal interrupted the start of [`run_local`].
    scheduler: Option<SocketAddr>,
    servers: usize,
    workers: usize,
    transport: Option<TransportMode>,
    secret: ferrops_net::auth::Secret,
    replication: Option<usize>,
    /// What the scheduler was started with (a killed one is restarted from it, recovering).
    spec: LocalSpec,
}

impl LocalCluster {
    /// Starts the scheduler and `spec.servers` servers, configured for `spec.workers` workers, and
    /// returns once the scheduler has announced its address.
    pub fn start(spec: &LocalSpec) -> Result<Self> {
        spec.validate()?;
        Self::start_interruptible(spec, None)
    }

    /// The address workers connect to.
    pub fn scheduler_addr(&self) -> SocketAddr {
        self.scheduler
            .expect("a started cluster always knows its scheduler")
    }

    /// Cluster settings for a node of this cluster.
    pub fn cluster_config(&self) -> ClusterConfig {
        let mut cfg = ClusterConfig::new(self.scheduler_addr(), self.servers, self.workers);
        cfg.key = ferrops_net::auth::ClusterKey::Secret(self.secret.clone());
        if let Some(t) = self.transport {
            cfg.transport = t;
        }
        if let Some(r) = self.replication {
            cfg.replication = r;
        }
        if let Some(crc) = self.spec.payload_checksum {
            cfg.payload_checksum = crc;
        }
        cfg
    }

    /// Configuration for an in-process worker of this cluster.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            cluster: self.cluster_config(),
        }
    }

    /// Fails if the scheduler or a server has exited with a failure.
    pub fn check(&mut self) -> Result<()> {
        match self.fleet.poll() {
            Some(failure) => bail!("{failure}"),
            None => Ok(()),
        }
    }

    /// After the workers are done: waits up to `timeout` for the scheduler and servers to exit by
    /// themselves, then stops whatever is left. Fails if any of them exited with a failure.
    pub fn wait(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.fleet.all_exited() && Instant::now() < deadline {
            self.check()?;
            thread::sleep(POLL_INTERVAL);
        }
        self.check()?;
        let leftovers = self.fleet.live_labels();
        if !leftovers.is_empty() {
            tracing::warn!(
                "{} still running {timeout:?} after the workers finished; stopping them",
                leftovers.join(", ")
            );
        }
        self.fleet.terminate(libc::SIGTERM);
        Ok(())
    }

    fn start_interruptible(spec: &LocalSpec, signals: Option<&SignalFlag>) -> Result<Self> {
        let mut fleet = Fleet::new(spec.shutdown_grace, spec.prefix_output);
        fleet.servers_replicated = spec.replication.unwrap_or(1) > 1;
        if let Some(signals) = signals {
            fleet.escalate = Some(signals.clone());
        }
        let announcements = fleet.spawn_scheduler(scheduler_command(spec))?;
        let scheduler =
            await_announcement(&mut fleet, &announcements, spec.startup_timeout, signals)?;
        let mut cluster = Self {
            fleet,
            scheduler,
            servers: spec.servers,
            workers: spec.workers,
            transport: spec.transport,
            secret: spec.secret.clone(),
            replication: spec.replication,
            spec: spec.clone(),
        };
        let Some(scheduler) = scheduler else {
            return Ok(cluster);
        };
        tracing::info!("scheduler listening on {scheduler}");
        cluster.fleet.restart_scheduler = true;
        for index in 0..spec.servers {
            let command = server_command(spec, scheduler, index);
            cluster.fleet.spawn(Role::Server, index, command)?;
        }
        Ok(cluster)
    }

    /// Supervises a running job; see [`run_local`] for the exit code.
    fn supervise(&mut self, signals: &SignalFlag) -> i32 {
        if let Some(code) = self.run_until(signals, None, |fleet| fleet.workers_succeeded()) {
            return code;
        }
        tracing::info!("all workers finished; waiting for the scheduler and servers to exit");
        let deadline = Instant::now() + self.fleet.grace;
        if let Some(code) = self.run_until(signals, Some(deadline), Fleet::all_exited) {
            return code;
        }
        let leftovers = self.fleet.live_labels();
        if !leftovers.is_empty() {
            tracing::warn!(
                "{} still running {:?} after the workers finished; stopping them",
                leftovers.join(", "),
                self.fleet.grace
            );
        }
        self.fleet.terminate(libc::SIGTERM);
        0
    }

    /// Polls until `done` holds or `deadline` passes (`None`), or until a child fails or a signal
    /// arrives, which stop the cluster and yield the exit code (`Some`).
    fn run_until(
        &mut self,
        signals: &SignalFlag,
        deadline: Option<Instant>,
        done: impl Fn(&Fleet) -> bool,
    ) -> Option<i32> {
        loop {
            if signals.peek().is_some() {
                return Some(self.stop_on_signal(signals));
            }
            if let Some(failure) = self.fleet.poll() {
                tracing::error!("{failure}; stopping the cluster");
                self.fleet.terminate(libc::SIGTERM);
                return Some(failure.exit_code);
            }
            if std::mem::take(&mut self.fleet.scheduler_killed) {
                if let Err(e) = self.restart_scheduler() {
                    tracing::error!("cannot restart the scheduler: {e:#}; stopping the cluster");
                    self.fleet.terminate(libc::SIGTERM);
                    return Some(1);
                }
            }
            if done(&self.fleet) || deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the scheduler again on the lost one's address with `--recover`: the servers and
    /// workers, which go on without it, rejoin it and the job continues.
    fn restart_scheduler(&mut self) -> Result<()> {
        let addr = self.scheduler_addr();
        let mut spec = self.spec.clone();
        spec.restore = None;
        let mut command = scheduler_command(&spec);
        command
            .arg("--recover")
            .env(crate::config::ENV_BIND, addr.to_string());
        // Its announcement (the same address) is not waited for: the nodes redial it.
        drop(self.fleet.spawn_scheduler(command)?);
        tracing::info!("restarted the scheduler with --recover on {addr}");
        Ok(())
    }

    /// Forwards the received signal to every child, stops them, and returns 128+signal.
    fn stop_on_signal(&mut self, signals: &SignalFlag) -> i32 {
        let signal = signals.take().unwrap_or(libc::SIGTERM);
        tracing::warn!("received {}; stopping the cluster", signal_name(signal));
        self.fleet.terminate(signal);
        128 + signal
    }
}

/// Waits for the scheduler's address; `Ok(None)` if a signal arrived first.
fn await_announcement(
    fleet: &mut Fleet,
    announcements: &mpsc::Receiver<String>,
    timeout: Duration,
    signals: Option<&SignalFlag>,
) -> Result<Option<SocketAddr>> {
    let deadline = Instant::now() + timeout;
    loop {
        match announcements.recv_timeout(POLL_INTERVAL) {
            Ok(text) => {
                let addr = text.trim().parse().map_err(|_| {
                    anyhow!("the scheduler announced an unparseable address `{text}`")
                })?;
                return Ok(Some(addr));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(POLL_INTERVAL),
        }
        if signals.is_some_and(|s| s.peek().is_some()) {
            return Ok(None);
        }
        // Only the scheduler runs yet.
        let _ = fleet.poll();
        if let Some(status) = fleet.nodes[0].exited {
            bail!(
                "the scheduler exited ({}) before announcing its address",
                describe_status(status)
            );
        }
        if Instant::now() >= deadline {
            bail!("the scheduler did not announce its address within {timeout:?}");
        }
    }
}
