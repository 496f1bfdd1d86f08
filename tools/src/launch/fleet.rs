//! Fleet supervision: every child of a cluster with its role and label, reaping them as they
//! exit, finding the first failure, and stopping them all (a signal to each process group, a
//! grace period, then SIGKILL).

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::output::{forward_lines, forward_scheduler_stdout, Stream};
use super::process::{
    command_line, describe_status, die_with_parent, display_command, exit_code, signal_group,
    SignalFlag,
};
use super::{ENV_LOG_LABEL, POLL_INTERVAL};
use crate::config::Role;

/// How long output forwarders get to flush after the children are gone.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// One child process and its exit status once reaped.
pub(super) struct Node {
    pub(super) kind: Role,
    pub(super) label: String,
    pub(super) child: Child,
    pub(super) exited: Option<ExitStatus>,
}

impl Node {
    /// The child's process group (it leads its own).
    pub(super) fn group(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }
}

/// A child that exited unsuccessfully.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: Role,
    pub(super) label: String,
    pub(super) status: ExitStatus,
    pub(super) exit_code: i32,
}

impl Failure {
    /// How likely this failure is the cause of the others, most likely first. A ferrops process
    /// exits 1 when the job is shut down around it (the scheduler ends the job when a node
    /// dies), so a death by a signal (itself, or 128+N as a shell reports a child's) comes
    /// first, then any other exit code, then a node's 1, then the scheduler's.
    fn rank(&self) -> u8 {
        match (self.exit_code, self.kind) {
            (code, _) if code > 128 => 0,
            (code, _) if code != 1 => 1,
            (_, Role::Scheduler) => 3,
            _ => 2,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.label, describe_status(self.status))
    }
}

/// Every child of a cluster plus the threads forwarding their output.
pub(super) struct Fleet {
    pub(super) nodes: Vec<Node>,
    pub(super) forwarders: Vec<JoinHandle<()>>,
    pub(super) grace: Duration,
    pub(super) prefix_output: bool,
    /// A signal arriving while stopping the children skips the rest of the grace period.
    pub(super) escalate: Option<SignalFlag>,
}

impl Fleet {
    pub(super) fn new(grace: Duration, prefix_output: bool) -> Self {
        Self {
            nodes: Vec::new(),
            forwarders: Vec::new(),
            grace,
            prefix_output,
            escalate: None,
        }
    }

    /// Starts the scheduler; its stdout's `FERROPS_SCHEDULER=` line arrives on the receiver.
    pub(super) fn spawn_scheduler(
        &mut self,
        mut command: Command,
    ) -> Result<mpsc::Receiver<String>> {
        command.stdout(Stdio::piped());
        let label = Role::Scheduler.name().to_string();
        let node = self.spawn_node(Role::Scheduler, label.clone(), command)?;
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
    pub(super) fn spawn(&mut self, kind: Role, index: usize, command: Command) -> Result<()> {
        self.spawn_node(kind, format!("{} {index}", kind.name()), command)?;
        Ok(())
    }

    pub(super) fn spawn_node(
        &mut self,
        kind: Role,
        label: String,
        mut command: Command,
    ) -> Result<&mut Node> {
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
        if kind != Role::Scheduler {
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

    /// Reaps children that exited; returns the failure to report among those that failed now,
    /// the likeliest cause of the others (see [`Failure::rank`]).
    pub(super) fn poll(&mut self) -> io::Result<Option<Failure>> {
        Ok(self.reap()?.into_iter().min_by_key(Failure::rank))
    }

    /// The failure that explains `first`: when that is an exit 1 (how ferrops processes end
    /// when the job is shut down around them), a death by a signal or another exit code that
    /// shows within `window` is the likelier cause; a shell around a killed node, for one,
    /// reports it only once its own wait returns, after the others reacted.
    pub(super) fn cause_of(&mut self, first: Failure, window: Duration) -> Failure {
        if first.rank() <= 1 {
            return first;
        }
        let deadline = Instant::now() + window;
        while Instant::now() < deadline && !self.all_exited() {
            thread::sleep(POLL_INTERVAL);
            match self.reap() {
                Ok(failures) => {
                    if let Some(cause) = failures
                        .into_iter()
                        .filter(|f| f.rank() <= 1)
                        .min_by_key(Failure::rank)
                    {
                        return cause;
                    }
                }
                Err(_) => break,
            }
        }
        first
    }

    /// Reaps the children that exited since the last call; returns those that failed.
    fn reap(&mut self) -> io::Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for node in self.nodes.iter_mut().filter(|n| n.exited.is_none()) {
            let Some(status) = node.child.try_wait()? else {
                continue;
            };
            node.exited = Some(status);
            tracing::debug!("{} exited: {}", node.label, describe_status(status));
            if !status.success() {
                failures.push(Failure {
                    kind: node.kind,
                    label: node.label.clone(),
                    status,
                    exit_code: exit_code(status),
                });
            }
        }
        Ok(failures)
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
