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

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use ferrops_engine::config::{ClusterConfig, WorkerConfig};
use ferrops_net::TransportMode;

use crate::config::{
    ENV_BIND, ENV_NUM_SERVERS, ENV_NUM_WORKERS, ENV_ROLE, ENV_SCHEDULER, ENV_TRANSPORT,
};

/// The line prefix the scheduler announces its address with on stdout.
pub const ANNOUNCE_PREFIX: &str = "FERROPS_SCHEDULER=";

/// Environment variable overriding the label ferrops prefixes its log lines with; the launcher
/// sets it empty for children whose lines it prefixes itself.
pub const ENV_LOG_LABEL: &str = "FERROPS_LOG_LABEL";

/// How often the supervisor checks its children.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long output forwarders get to flush after the children are gone.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

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
}

impl LocalSpec {
    /// A spec with `servers` and `workers`, the running executable as the node binary, no worker
    /// command, a 30 s startup timeout, a 10 s shutdown grace, and prefixed output.
    pub fn new(servers: usize, workers: usize) -> Result<Self> {
        let node_exe = std::env::current_exe().context("finding the ferrops executable")?;
        Ok(Self {
            servers,
            workers,
            command: Vec::new(),
            node_exe,
            startup_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            prefix_output: true,
            transport: None,
        })
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.servers >= 1,
            "a local cluster needs at least one server"
        );
        ensure!(
            self.workers >= 1,
            "a local cluster needs at least one worker"
        );
        Ok(())
    }
}

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
        let command = worker_command(spec, scheduler);
        cluster.fleet.spawn(NodeKind::Worker, index, command)?;
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
pub fn run_job_locally(servers: usize, workers: usize, job: &str, args: &[String]) -> Result<i32> {
    if std::env::var_os("FERROPS_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The job's own output is the point; the roles' chatter stays quiet.
        std::env::set_var("FERROPS_LOG", "warn");
    }
    let mut spec = LocalSpec::new(servers, workers)?;
    spec.prefix_output = false;
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
        if let Some(t) = self.transport {
            cfg.transport = t;
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
        match self.fleet.poll()? {
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
        };
        let Some(scheduler) = scheduler else {
            return Ok(cluster);
        };
        tracing::info!("scheduler listening on {scheduler}");
        for index in 0..spec.servers {
            let command = server_command(spec, scheduler);
            cluster.fleet.spawn(NodeKind::Server, index, command)?;
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
            match self.fleet.poll() {
                Ok(Some(failure)) => {
                    tracing::error!("{failure}; stopping the cluster");
                    self.fleet.terminate(libc::SIGTERM);
                    return Some(failure.exit_code);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!("cannot check the children: {error}; stopping the cluster");
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

    /// Forwards the received signal to every child, stops them, and returns 128+signal.
    fn stop_on_signal(&mut self, signals: &SignalFlag) -> i32 {
        let signal = signals.take().unwrap_or(libc::SIGTERM);
        tracing::warn!("received {}; stopping the cluster", signal_name(signal));
        self.fleet.terminate(signal);
        128 + signal
    }
}

/// Which part of the cluster a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    Scheduler,
    Server,
    Worker,
}

impl NodeKind {
    fn name(self) -> &'static str {
        match self {
            NodeKind::Scheduler => "scheduler",
            NodeKind::Server => "server",
            NodeKind::Worker => "worker",
        }
    }
}

/// One child process and its exit status once reaped.
struct Node {
    kind: NodeKind,
    label: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Node {
    /// The child's process group (it leads its own).
    fn group(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }
}

/// A child that exited unsuccessfully.
#[derive(Debug)]
struct Failure {
    label: String,
    status: ExitStatus,
    exit_code: i32,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.label, describe_status(self.status))
    }
}

/// Every child of a cluster plus the threads forwarding their output.
struct Fleet {
    nodes: Vec<Node>,
    forwarders: Vec<JoinHandle<()>>,
    grace: Duration,
    prefix_output: bool,
    /// A signal arriving while stopping the children skips the rest of the grace period.
    escalate: Option<SignalFlag>,
}

impl Fleet {
    fn new(grace: Duration, prefix_output: bool) -> Self {
        Self {
            nodes: Vec::new(),
            forwarders: Vec::new(),
            grace,
            prefix_output,
            escalate: None,
        }
    }

    /// Starts the scheduler; its stdout's `FERROPS_SCHEDULER=` line arrives on the receiver.
    fn spawn_scheduler(&mut self, mut command: Command) -> Result<mpsc::Receiver<String>> {
        command.stdout(Stdio::piped());
        let label = NodeKind::Scheduler.name().to_string();
        let node = self.spawn_node(NodeKind::Scheduler, label.clone(), command)?;
        let stdout = node.child.stdout.take().expect("scheduler stdout is piped");
        let (sender, receiver) = mpsc::channel();
        let prefix = self.prefix_output.then(|| label.clone());
        self.forwarders.push(
            thread::Builder::new()
                .name(format!("{label} stdout"))
                .spawn(move || forward_scheduler_stdout(stdout, prefix, sender))
                .context("starting an output thread")?,
        );
        Ok(receiver)
    }

    /// Starts a server or worker.
    fn spawn(&mut self, kind: NodeKind, index: usize, command: Command) -> Result<()> {
        self.spawn_node(kind, format!("{} {index}", kind.name()), command)?;
        Ok(())
    }

    fn spawn_node(
        &mut self,
        kind: NodeKind,
        label: String,
        mut command: Command,
    ) -> Result<&mut Node> {
        command.stdin(Stdio::null()).process_group(0);
        if self.prefix_output {
            command.env(ENV_LOG_LABEL, "").stderr(Stdio::piped());
            if kind != NodeKind::Scheduler {
                command.stdout(Stdio::piped());
            }
        }
        die_with_parent(&mut command);
        let mut child = command.spawn().with_context(|| {
            format!(
                "starting {label} ({})",
                display_command(command_line(&command))
            )
        })?;
        if kind != NodeKind::Scheduler {
            if let Some(stdout) = child.stdout.take() {
                self.forward(stdout, &label, Stream::Stdout)?;
            }
        }
        if let Some(stderr) = child.stderr.take() {
            self.forward(stderr, &label, Stream::Stderr)?;
        }
        tracing::debug!("started {label} (pid {})", child.id());
        self.nodes.push(Node {
            kind,
            label,
            child,
            exited: None,
        });
        Ok(self.nodes.last_mut().expect("just pushed"))
    }

    fn forward(&mut self, pipe: impl Read + Send + 'static, label: &str, to: Stream) -> Result<()> {
        let prefix = label.to_string();
        let handle = thread::Builder::new()
            .name(format!("{label} output"))
            .spawn(move || forward_lines(pipe, Some(prefix), to))
            .context("starting an output thread")?;
        self.forwarders.push(handle);
        Ok(())
    }

    /// Reaps children that exited; returns the first unsuccessful one.
    fn poll(&mut self) -> io::Result<Option<Failure>> {
        let mut first_failure = None;
        for node in self.nodes.iter_mut().filter(|n| n.exited.is_none()) {
            let Some(status) = node.child.try_wait()? else {
                continue;
            };
            node.exited = Some(status);
            tracing::debug!("{} exited: {}", node.label, describe_status(status));
            if !status.success() && first_failure.is_none() {
                first_failure = Some(Failure {
                    label: node.label.clone(),
                    status,
                    exit_code: exit_code(status),
                });
            }
        }
        Ok(first_failure)
    }

    fn workers_succeeded(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Worker)
            .all(|n| n.exited.is_some_and(|s| s.success()))
    }

    fn all_exited(&self) -> bool {
        self.nodes.iter().all(|n| n.exited.is_some())
    }

    fn live_labels(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.exited.is_none())
            .map(|n| n.label.clone())
            .collect()
    }

    /// Sends `signal` to every live child's process group, waits up to the grace period, then
    /// SIGKILLs what is left, including leftover members of groups whose leader already exited.
    fn terminate(&mut self, signal: i32) {
        if let Some(flag) = &self.escalate {
            flag.take();
        }
        for node in self.nodes.iter().filter(|n| n.exited.is_none()) {
            signal_group(node.group(), signal);
        }
        let deadline = Instant::now() + self.grace;
        while !self.all_exited() && Instant::now() < deadline && !self.escalated() {
            if let Err(error) = self.poll() {
                tracing::warn!("cannot check the children: {error}");
                break;
            }
            thread::sleep(POLL_INTERVAL);
        }
        if self.escalated() {
            tracing::warn!("second signal: killing the cluster now");
        }
        for node in &mut self.nodes {
            signal_group(node.group(), libc::SIGKILL);
            if node.exited.is_none() {
                node.exited = node.child.wait().ok();
            }
        }
        self.drain_output();
    }

    fn escalated(&self) -> bool {
        self.escalate.as_ref().is_some_and(|f| f.peek().is_some())
    }

    /// Gives the output threads a moment to pass on what the children wrote last.
    fn drain_output(&mut self) {
        let deadline = Instant::now() + OUTPUT_DRAIN;
        while self.forwarders.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        self.forwarders.retain(|h| !h.is_finished());
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.terminate(libc::SIGTERM);
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
        let scheduler = &mut fleet.nodes[0];
        if let Some(status) = scheduler.child.try_wait()? {
            scheduler.exited = Some(status);
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

fn scheduler_command(spec: &LocalSpec) -> Command {
    let mut command = Command::new(&spec.node_exe);
    command
        .arg("scheduler")
        .env(ENV_ROLE, "scheduler")
        .env(ENV_BIND, "127.0.0.1:0")
        .env_remove(ENV_SCHEDULER);
    set_counts(&mut command, spec);
    command
}

fn server_command(spec: &LocalSpec, scheduler: SocketAddr) -> Command {
    let mut command = Command::new(&spec.node_exe);
    command
        .arg("server")
        .env(ENV_ROLE, "server")
        .env(ENV_BIND, "127.0.0.1:0")
        .env(ENV_SCHEDULER, scheduler.to_string());
    set_counts(&mut command, spec);
    command
}

fn worker_command(spec: &LocalSpec, scheduler: SocketAddr) -> Command {
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
        .env(ENV_SCHEDULER, scheduler.to_string())
        .env_remove(ENV_BIND);
    set_counts(&mut command, spec);
    command
}

fn set_counts(command: &mut Command, spec: &LocalSpec) {
    command
        .env(ENV_NUM_SERVERS, spec.servers.to_string())
        .env(ENV_NUM_WORKERS, spec.workers.to_string());
    if let Some(t) = spec.transport {
        command.env(ENV_TRANSPORT, t.to_string());
    }
}

/// Makes the child die with SIGKILL when the spawning thread's process goes away (Linux).
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and getppid,
    // which are async-signal-safe, and builds an io::Error without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The launcher died between fork and prctl: the death signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Sends `signal` to process group `group`; a group that no longer exists is not an error.
fn signal_group(group: libc::pid_t, signal: i32) {
    if group <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// The launcher's exit code for a child's status: its code, or 128+N for signal N.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {}", signal_name(signal)),
        (None, None) => status.to_string(),
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    format!("{name} (signal {signal})")
}

fn command_line(command: &Command) -> Vec<OsString> {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_os_string)
        .collect()
}

fn display_command(words: impl AsRef<[OsString]>) -> String {
    words
        .as_ref()
        .iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which of the launcher's streams a child's pipe is copied to.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Copies `pipe` line by line to the launcher's stream, each line prefixed with `[prefix] `.
fn forward_lines(pipe: impl Read, prefix: Option<String>, to: Stream) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => write_line(&line, prefix.as_deref(), to),
        }
    }
}

/// Like [`forward_lines`] for the scheduler's stdout, but its first `FERROPS_SCHEDULER=` line is
/// sent to `announcements` instead of being printed.
fn forward_scheduler_stdout(
    stdout: ChildStdout,
    prefix: Option<String>,
    announcements: mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(addr) = line.trim_end().strip_prefix(ANNOUNCE_PREFIX) {
            let _ = announcements.send(addr.to_string());
            break;
        }
        write_line(line.as_bytes(), prefix.as_deref(), Stream::Stdout);
    }
    forward_lines(reader, prefix, Stream::Stdout);
}

fn write_line(line: &[u8], prefix: Option<&str>, to: Stream) {
    let mut out = Vec::with_capacity(line.len() + 16);
    if let Some(prefix) = prefix {
        out.extend_from_slice(format!("[{prefix}] ").as_bytes());
    }
    out.extend_from_slice(line);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    // Output errors (a closed terminal) must not stop the draining that keeps children unblocked.
    let _ = match to {
        Stream::Stdout => io::stdout().lock().write_all(&out),
        Stream::Stderr => io::stderr().lock().write_all(&out),
    };
}

/// The last of SIGINT/SIGTERM/SIGHUP received, recorded by signal-hook's handler.
#[derive(Clone)]
struct SignalFlag {
    received: Arc<AtomicUsize>,
}

impl SignalFlag {
    const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    fn install() -> Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        for signal in Self::SIGNALS {
            signal_hook::flag::register_usize(signal, Arc::clone(&received), signal as usize)
                .with_context(|| format!("installing a handler for {}", signal_name(signal)))?;
        }
        Ok(Self { received })
    }

    fn peek(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }

    fn take(&self) -> Option<i32> {
        match self.received.swap(0, Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(shell: &str) -> ExitStatus {
        Command::new("sh").arg("-c").arg(shell).status().unwrap()
    }

    #[test]
    fn exit_codes_follow_shell_conventions() {
        assert_eq!(exit_code(status_of("exit 0")), 0);
        assert_eq!(exit_code(status_of("exit 3")), 3);
        assert_eq!(exit_code(status_of("kill -KILL $$")), 137);
        assert_eq!(exit_code(status_of("kill -TERM $$")), 143);
    }

    #[test]
    fn statuses_are_described_for_people() {
        assert_eq!(describe_status(status_of("exit 3")), "exit code 3");
        assert_eq!(
            describe_status(status_of("kill -KILL $$")),
            "killed by SIGKILL (signal 9)"
        );
    }

    #[test]
    fn worker_command_named_ferrops_runs_the_node_binary() {
        let mut spec = LocalSpec::new(1, 1).unwrap();
        spec.node_exe = PathBuf::from("/opt/ferrops/bin/ferrops");
        spec.command = vec!["ferrops".into(), "worker".into()];
        let command = worker_command(&spec, "127.0.0.1:5".parse().unwrap());
        assert_eq!(command.get_program(), spec.node_exe.as_os_str());
        let envs: Vec<_> = command.get_envs().collect();
        assert!(envs.contains(&(OsStr::new(ENV_ROLE), Some(OsStr::new("worker")))));
        assert!(envs.contains(&(OsStr::new(ENV_SCHEDULER), Some(OsStr::new("127.0.0.1:5")))));
        assert!(envs.contains(&(OsStr::new(ENV_NUM_WORKERS), Some(OsStr::new("1")))));
    }

    #[test]
    fn scheduler_that_dies_before_announcing_is_reported_with_its_status() {
        let mut spec = LocalSpec::new(1, 1).unwrap();
        spec.node_exe = PathBuf::from("false");
        let error = format!("{:#}", LocalCluster::start(&spec).err().unwrap());
        assert!(
            error.contains("before announcing") && error.contains("exit code 1"),
            "{error}"
        );
    }

    /// A spec whose scheduler and servers are `sh` running `body` (with `$1` the role); the
    /// scheduler announces 127.0.0.1:9 first.
    fn fake_node_spec(test: &str, body: &str) -> (LocalSpec, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ferrops-launch-unit-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("node.sh");
        let text = format!(
            "#!/bin/sh\necho $$ >> '{}'\n[ \"$1\" = scheduler ] && echo {ANNOUNCE_PREFIX}127.0.0.1:9\n{body}\n",
            dir.join("pids").display()
        );
        std::fs::write(&script, text).unwrap();
        assert!(status_of(&format!("chmod +x '{}'", script.display())).success());
        let mut spec = LocalSpec::new(2, 3).unwrap();
        spec.node_exe = script;
        spec.shutdown_grace = Duration::from_secs(2);
        (spec, dir)
    }

    fn recorded_pids(dir: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn cluster_reports_the_announced_address_and_dies_on_drop() {
        let (spec, dir) = fake_node_spec("drop", "exec sleep 600");
        let mut cluster = LocalCluster::start(&spec).unwrap();
        assert_eq!(cluster.scheduler_addr(), "127.0.0.1:9".parse().unwrap());
        let cfg = cluster.worker_config();
        assert_eq!((cfg.cluster.num_servers, cfg.cluster.num_workers), (2, 3));
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorded_pids(&dir).len() < 3 && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        cluster.check().unwrap();
        let pids = recorded_pids(&dir);
        assert_eq!(pids.len(), 3, "{pids:?}");
        drop(cluster);
        assert!(pids.iter().all(|&p| !alive(p)), "{pids:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cluster_wait_succeeds_when_nodes_exit_cleanly() {
        let (spec, dir) = fake_node_spec("wait-ok", "sleep 0.2; exit 0");
        let cluster = LocalCluster::start(&spec).unwrap();
        cluster.wait(Duration::from_secs(10)).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cluster_wait_reports_a_failed_server() {
        let body = "[ \"$1\" = server ] && exit 4; exec sleep 600";
        let (spec, dir) = fake_node_spec("wait-fail", body);
        let cluster = LocalCluster::start(&spec).unwrap();
        let error = format!("{:#}", cluster.wait(Duration::from_secs(10)).unwrap_err());
        assert!(
            error.contains("server") && error.contains("exit code 4"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn spec_rejects_empty_clusters() {
        let spec = LocalSpec::new(0, 1).unwrap();
        assert!(LocalCluster::start(&spec).is_err());
    }
}
