//! Fleet supervision: every child of a cluster with its role and label, reaping them as they
//! exit, finding the first failure, and stopping them all (a signal to each process group, a
//! grace period, then SIGKILL).
//!
//! Each child has a thread blocked in `wait` that reports its exit with the time it saw it, so
//! the first failure is the child that died first, not the first in spawn order among those
//! that died since the last poll: a killed server, not the scheduler that exits a moment later
//! because it lost that server. And a node that exits with [`EXIT_SHUT_DOWN`] (it stopped
//! because the job was shut down after another node failed) is held back for up to
//! [`SETTLE`]: the node that failed first then gets reported even when the launcher itself was
//! too starved for its waiter thread to run first.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::output::{forward_lines, forward_scheduler_stdout, Stream};
use super::process::{
    command_line, describe_status, die_with_parent, display_command, exit_code, signal_group,
    SignalFlag,
};
use super::{ENV_LOG_LABEL, EXIT_SHUT_DOWN, POLL_INTERVAL};
use crate::config::Role;

/// How long output forwarders get to flush after the children are gone.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// How long a failure caused by another one waits for that other one to be seen.
const SETTLE: Duration = Duration::from_secs(2);

/// How long the launcher waits for SIGKILLed children to be reaped before it gives up on them.
const REAP_TIMEOUT: Duration = Duration::from_secs(30);

/// One child process and its exit status once reaped.
pub(super) struct Node {
    pub(super) kind: Role,
    pub(super) label: String,
    pub(super) pid: u32,
    pub(super) exited: Option<ExitStatus>,
}

impl Node {
    /// The child's process group (it leads its own).
    pub(super) fn group(&self) -> libc::pid_t {
        self.pid as libc::pid_t
    }
}

/// A child's exit as its waiter thread saw it: the node's index, its status (or why waiting
/// failed) and when.
type Exit = (usize, io::Result<ExitStatus>, Instant);

/// A child that exited unsuccessfully.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) label: String,
    pub(super) status: ExitStatus,
    pub(super) exit_code: i32,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.label, describe_status(self.status))
    }
}

/// Every child of a cluster plus the threads forwarding their output.
pub(super) struct Fleet {
    pub(super) nodes: Vec<Node>,
    exits: mpsc::Receiver<Exit>,
    exit_sender: mpsc::Sender<Exit>,
    /// The earliest failure seen with [`EXIT_SHUT_DOWN`], while the one that caused it may
    /// still be on its way.
    held: Option<(Instant, Failure)>,
    pub(super) forwarders: Vec<JoinHandle<()>>,
    pub(super) grace: Duration,
    pub(super) prefix_output: bool,
    /// A signal arriving while stopping the children skips the rest of the grace period.
    pub(super) escalate: Option<SignalFlag>,
    /// Whether server failures are survivable (replication R > 1): then each is logged, not a
    /// failure, and the scheduler decides — it fails over, brings chains back to R on the
    /// servers left or on spares, and ends the job (failing) when a range lost every copy.
    pub(super) servers_replicated: bool,
    /// Whether a scheduler killed by a signal is restarted (with `--recover`) instead of being
    /// a failure, and whether one was killed since the supervisor last looked.
    pub(super) restart_scheduler: bool,
    pub(super) scheduler_killed: bool,
    /// Set once [`Fleet::terminate`] starts: exits after that are the launcher's own doing.
    stopping: bool,
}

impl Fleet {
    pub(super) fn new(grace: Duration, prefix_output: bool) -> Self {
        let (exit_sender, exits) = mpsc::channel();
        Self {
            nodes: Vec::new(),
            exits,
            exit_sender,
            held: None,
            forwarders: Vec::new(),
            grace,
            prefix_output,
            escalate: None,
            servers_replicated: false,
            restart_scheduler: false,
            scheduler_killed: false,
            stopping: false,
        }
    }

    /// Starts the scheduler; its stdout's `FERROPS_SCHEDULER=` line arrives on the receiver.
    pub(super) fn spawn_scheduler(
        &mut self,
        mut command: Command,
    ) -> Result<mpsc::Receiver<String>> {
        command.stdout(Stdio::piped());
        let label = Role::Scheduler.name().to_string();
        let stdout = self
            .spawn_node(Role::Scheduler, label.clone(), command)?
            .expect("scheduler stdout is piped");
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
    pub(super) fn spawn(&mut self, kind: Role, index: usize, command: Command) -> Result<()> {
        self.spawn_node(kind, format!("{} {index}", kind.name()), command)?;
        Ok(())
    }

    /// Starts a child and its waiter thread; returns the scheduler's stdout (the others' is
    /// forwarded here).
    pub(super) fn spawn_node(
        &mut self,
        kind: Role,
        label: String,
        mut command: Command,
    ) -> Result<Option<ChildStdout>> {
        command.stdin(Stdio::null()).process_group(0);
        if self.prefix_output {
            command.env(ENV_LOG_LABEL, "").stderr(Stdio::piped());
            if kind != Role::Scheduler {
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
        let mut stdout = child.stdout.take();
        if kind != Role::Scheduler {
            if let Some(stdout) = stdout.take() {
                self.forward(stdout, &label, Stream::Stdout)?;
            }
        }
        if let Some(stderr) = child.stderr.take() {
            self.forward(stderr, &label, Stream::Stderr)?;
        }
        let pid = child.id();
        tracing::info!("started {label} (pid {pid})");
        let index = self.nodes.len();
        let exits = self.exit_sender.clone();
        let waiter = thread::Builder::new()
            .name(format!("{label} waiter"))
            .spawn(move || {
                let status = child.wait();
                let _ = exits.send((index, status, Instant::now()));
            });
        if let Err(error) = waiter {
            // The child is already gone with the closure; make sure it does not outlive us.
            signal_group(pid as libc::pid_t, libc::SIGKILL);
            return Err(error).context("starting a waiter thread");
        }
        self.nodes.push(Node {
            kind,
            label,
            pid,
            exited: None,
        });
        Ok(stdout)
    }

    pub(super) fn forward(
        &mut self,
        pipe: impl Read + Send + 'static,
        label: &str,
        to: Stream,
    ) -> Result<()> {
        let prefix = label.to_string();
        let handle = thread::Builder::new()
            .name(format!("{label} output"))
            .spawn(move || forward_lines(pipe, Some(prefix), to))
            .context("starting an output thread")?;
        self.forwarders.push(handle);
        Ok(())
    }

    /// Takes in the exits the waiter threads reported; returns the unsuccessful one seen first,
    /// except that one caused by another failure is held back (see the module docs).
    pub(super) fn poll(&mut self) -> Option<Failure> {
        let mut first: Option<(Instant, Failure)> = None;
        while let Ok(exit) = self.exits.try_recv() {
            let Some((at, failure)) = self.record(exit) else {
                continue;
            };
            let slot = match failure.exit_code {
                EXIT_SHUT_DOWN => &mut self.held,
                _ => &mut first,
            };
            if slot.as_ref().is_none_or(|(earliest, _)| at < *earliest) {
                *slot = Some((at, failure));
            }
        }
        if let Some((_, failure)) = first {
            self.held = None;
            return Some(failure);
        }
        let settled = match &self.held {
            Some((at, _)) => at.elapsed() >= SETTLE || self.all_exited(),
            None => false,
        };
        if settled {
            return self.held.take().map(|(_, failure)| failure);
        }
        None
    }

    /// Marks a node exited; a failure comes back with the time it was seen.
    fn record(&mut self, (index, status, at): Exit) -> Option<(Instant, Failure)> {
        let node = &mut self.nodes[index];
        let status = status.unwrap_or_else(|error| {
            tracing::warn!("cannot wait for {}: {error}", node.label);
            ExitStatus::from_raw(1 << 8) // counts as exit code 1
        });
        node.exited = Some(status);
        tracing::debug!("{} exited: {}", node.label, describe_status(status));
        if status.success() {
            return None;
        }
        if node.kind == Role::Scheduler
            && self.restart_scheduler
            && !self.stopping
            && status.signal().is_some()
        {
            tracing::warn!(
                "{} died: {}; restarting it to recover the job",
                node.label,
                describe_status(status)
            );
            self.scheduler_killed = true;
            return None;
        }
        if node.kind == Role::Server && self.servers_replicated {
            tracing::warn!(
                "{} failed: {}; replication covers it, the job goes on unless a range lost \
                 every copy",
                node.label,
                describe_status(status)
            );
            return None;
        }
        let failure = Failure {
            label: node.label.clone(),
            status,
            exit_code: exit_code(status),
        };
        Some((at, failure))
    }

    pub(super) fn workers_succeeded(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.kind == Role::Worker)
            .all(|n| n.exited.is_some_and(|s| s.success()))
    }

    pub(super) fn all_exited(&self) -> bool {
        self.nodes.iter().all(|n| n.exited.is_some())
    }

    pub(super) fn live_labels(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.exited.is_none())
            .map(|n| n.label.clone())
            .collect()
    }

    /// Sends `signal` to every live child's process group, waits up to the grace period, then
    /// SIGKILLs what is left, including leftover members of groups whose leader already exited.
    pub(super) fn terminate(&mut self, signal: i32) {
        self.stopping = true;
        if let Some(flag) = &self.escalate {
            flag.take();
        }
        for node in self.nodes.iter().filter(|n| n.exited.is_none()) {
            signal_group(node.group(), signal);
        }
        let deadline = Instant::now() + self.grace;
        while !self.all_exited() && Instant::now() < deadline && !self.escalated() {
            // Failures while stopping are expected: the cluster is being stopped.
            let _ = self.poll();
            thread::sleep(POLL_INTERVAL);
        }
        if self.escalated() {
            tracing::warn!("second signal: killing the cluster now");
        }
        for node in &self.nodes {
            signal_group(node.group(), libc::SIGKILL);
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        while !self.all_exited() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exits.recv_timeout(left) {
                Ok(exit) => {
                    self.record(exit);
                }
                Err(_) => {
                    let stuck = self.live_labels().join(", ");
                    tracing::warn!("{stuck} not reaped {REAP_TIMEOUT:?} after SIGKILL");
                    break;
                }
            }
        }
        self.drain_output();
    }

    pub(super) fn escalated(&self) -> bool {
        self.escalate.as_ref().is_some_and(|f| f.peek().is_some())
    }

    /// Gives the output threads a moment to pass on what the children wrote last.
    pub(super) fn drain_output(&mut self) {
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
