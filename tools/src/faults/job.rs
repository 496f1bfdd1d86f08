//! One job of the run: a scheduler, servers and workers running the built-in `check` job, each
//! in its own namespace, and spares started in free server slots to replace servers that died.
//! When the workers are done it reads the outcome from their logs: passed, or failed, and
//! whether a failure was a wrong sum.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::netns::Network;
use super::node::Node;
use crate::launch::process::describe_status;

/// The scheduler's port, on its own address.
const SCHEDULER_PORT: u16 = 7070;

/// How long the scheduler and servers get to exit by themselves once the workers are done.
const SHUTDOWN: Duration = Duration::from_secs(15);

/// What every job of a run looks like.
#[derive(Clone, Debug)]
pub struct JobShape {
    pub servers: usize,
    /// Server slots beyond `servers`, for spares.
    pub spares: usize,
    pub workers: usize,
    pub replication: usize,
    /// `check --clocks`.
    pub clocks: usize,
    /// `check --keys`.
    pub keys: usize,
    /// `check --checkpoint-every` (into the job's log directory), if checkpoints are on.
    pub checkpoint_every: Option<usize>,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
}

impl JobShape {
    /// Network slots the run needs: the scheduler, servers and spares, workers.
    pub fn slots(&self) -> usize {
        1 + self.servers + self.spares + self.workers
    }

    fn server_slots(&self) -> std::ops::Range<usize> {
        1..1 + self.servers + self.spares
    }

    fn worker_slot(&self, index: usize) -> usize {
        1 + self.servers + self.spares + index
    }
}

/// How a job ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: bool,
    /// A worker saw a wrong sum (the exact-sum or sequential check failed).
    pub mismatch: bool,
    /// Why it failed: the failing workers' error lines, or a hang.
    pub errors: Vec<String>,
    /// The longest gap between acknowledged pushes, over the workers that passed.
    pub max_stall_ms: Option<f64>,
    /// Failovers the scheduler logged.
    pub failovers: usize,
    /// Range copies the scheduler counted complete.
    pub copies: usize,
    pub spares_started: usize,
    /// Checkpoints the scheduler completed, and writes it asked for again (routing changes).
    pub checkpoints: usize,
    pub checkpoints_rewritten: usize,
    /// The clock of the job's last checkpoint, checked whole and exact after it.
    pub checkpoint_clock: Option<u32>,
}

/// A running job.
pub struct Job<'n> {
    net: &'n Network,
    exe: PathBuf,
    shape: JobShape,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    pub scheduler_addr: SocketAddr,
    scheduler: Node,
    scheduler_env: Vec<(String, String)>,
    /// The logs of schedulers killed before the one running (`FaultKind::Scheduler`).
    past_schedulers: Vec<String>,
    /// Every server started, spares included, in start order.
    pub servers: Vec<Node>,
    workers: Vec<Node>,
    spares_started: usize,
    started: Instant,
}

impl<'n> Job<'n> {
    /// Starts the scheduler, the servers and the workers, logging into `dir`.
    pub fn start(
        net: &'n Network,
        exe: &Path,
        shape: &JobShape,
        secret: &str,
        dir: PathBuf,
    ) -> Result<Job<'n>> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        net.forget_neighbours()?;
        let scheduler_addr = SocketAddr::new(net.addr(0).into(), SCHEDULER_PORT);
        let env = vec![
            ("FERROPS_SECRET".to_string(), secret.to_string()),
            ("FERROPS_SCHEDULER".to_string(), scheduler_addr.to_string()),
            (
                "FERROPS_REPLICATION".to_string(),
                shape.replication.to_string(),
            ),
            ("FERROPS_TRANSPORT".to_string(), "tcp".to_string()),
            ("FERROPS_LOG".to_string(), "info".to_string()),
            (
                "FERROPS_HEARTBEAT_INTERVAL_MS".to_string(),
                shape.heartbeat_interval.as_millis().to_string(),
            ),
            (
                "FERROPS_HEARTBEAT_TIMEOUT_MS".to_string(),
                shape.heartbeat_timeout.as_millis().to_string(),
            ),
        ];
        let counts = [
            ("FERROPS_NUM_SERVERS".to_string(), shape.servers.to_string()),
            ("FERROPS_NUM_WORKERS".to_string(), shape.workers.to_string()),
        ];
        let mut scheduler_env = env.clone();
        scheduler_env.extend(counts.iter().cloned());
        scheduler_env.push(("FERROPS_BIND".to_string(), scheduler_addr.to_string()));
        let scheduler = Node::start(
            "scheduler".to_string(),
            0,
            net.namespace(0),
            exe,
            &["scheduler".to_string()],
            &scheduler_env,
            dir.join("scheduler.log"),
        )?;
        let scheduler_env = scheduler_env.clone();
        let mut job = Job {
            net,
            exe: exe.to_path_buf(),
            shape: shape.clone(),
            dir,
            env,
            scheduler_addr,
            scheduler,
            scheduler_env,
            past_schedulers: Vec::new(),
            servers: Vec::new(),
            workers: Vec::new(),
            spares_started: 0,
            started: Instant::now(),
        };
        for rank in 0..shape.servers {
            let mut env = job.env.clone();
            env.extend(counts.iter().cloned());
            env.push(("FERROPS_RANK".to_string(), rank.to_string()));
            job.start_server(1 + rank, env)?;
        }
        for rank in 0..shape.workers {
            let slot = shape.worker_slot(rank);
            let mut env = job.env.clone();
            env.extend(counts.iter().cloned());
            env.push(("FERROPS_RANK".to_string(), rank.to_string()));
            let mut args: Vec<String> = [
                "worker",
                "--job",
                "check",
                "--",
                "--clocks",
                &shape.clocks.to_string(),
                "--keys",
                &shape.keys.to_string(),
            ]
            .map(String::from)
            .to_vec();
            if let Some(every) = shape.checkpoint_every {
                args.extend(["--checkpoint-every".to_string(), every.to_string()]);
                args.push("--checkpoint-dir".to_string());
                args.push(job.checkpoint_dir().display().to_string());
            }
            let node = Node::start(
                format!("worker {rank}"),
                slot,
                net.namespace(slot),
                exe,
                &args,
                &env,
                job.dir.join(format!("worker-{rank}.log")),
            )?;
            job.workers.push(node);
        }
        Ok(job)
    }

    fn start_server(&mut self, slot: usize, env: Vec<(String, String)>) -> Result<()> {
        let n = self.servers.len();
        let label = format!("server {n} (slot {slot}, {})", self.net.addr(slot));
        let node = Node::start(
            label,
            slot,
            self.net.namespace(slot),
            &self.exe,
            &["server".to_string()],
            &env,
            self.dir.join(format!("server-{n}.log")),
        )?;
        self.servers.push(node);
        Ok(())
    }

    /// Starts spares (`ferrops server --scheduler ADDR`, no rank, no job size) in free server
    /// slots until `servers` server processes run again; returns how many it started.
    pub fn replenish(&mut self) -> Result<usize> {
        let mut started = 0;
        loop {
            let alive = self
                .servers
                .iter_mut()
                .map(|s| s.alive())
                .filter(|&a| a)
                .count();
            if alive >= self.shape.servers {
                return Ok(started);
            }
            let busy: Vec<usize> = self
                .servers
                .iter_mut()
                .filter_map(|s| s.alive().then_some(s.slot))
                .collect();
            let Some(slot) = self.shape.server_slots().find(|s| !busy.contains(s)) else {
                return Ok(started);
            };
            self.start_server(slot, self.env.clone())?;
            self.spares_started += 1;
            started += 1;
        }
    }

    /// Kills the scheduler (SIGKILL), waits `outage`, and starts another on the same address
    /// with `--recover`: the nodes re-register with what they hold and it rebuilds its state.
    pub fn restart_scheduler(&mut self, outage: Duration) -> Result<()> {
        self.scheduler.kill();
        self.past_schedulers.push(self.scheduler.output());
        std::thread::sleep(outage);
        let n = self.past_schedulers.len();
        self.scheduler = Node::start(
            format!("scheduler (restart {n})"),
            0,
            self.net.namespace(0),
            &self.exe,
            &["scheduler".to_string(), "--recover".to_string()],
            &self.scheduler_env,
            self.dir.join(format!("scheduler-{n}.log")),
        )?;
        Ok(())
    }

    /// Where the job's checkpoints go.
    fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    /// The running server in `slot`.
    pub fn server_in_slot(&mut self, slot: usize) -> Option<&mut Node> {
        self.servers
            .iter_mut()
            .filter(|s| s.slot == slot)
            .find_map(|s| s.alive().then_some(s))
    }

    /// Whether every worker has exited.
    pub fn workers_done(&mut self) -> bool {
        self.workers.iter_mut().all(|w| !w.alive())
    }

    /// How long it has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the job: waits for the scheduler and servers (or kills them when `hung`, or after
    /// a grace period), and reads the outcome.
    pub fn finish(mut self, hung: bool) -> Outcome {
        if hung {
            for node in self.workers.iter_mut().chain(&mut self.servers) {
                node.kill();
            }
        }
        let deadline = Instant::now() + SHUTDOWN;
        for node in std::iter::once(&mut self.scheduler).chain(&mut self.servers) {
            node.wait(deadline.saturating_duration_since(Instant::now()));
        }
        for node in std::iter::once(&mut self.scheduler).chain(&mut self.servers) {
            node.kill();
        }
        let mut outcome = Outcome {
            spares_started: self.spares_started,
            ..Outcome::default()
        };
        let mut scheduler_log = self.past_schedulers.join("\n");
        scheduler_log.push_str(&self.scheduler.output());
        outcome.failovers = scheduler_log
            .matches("the job goes on with routing version")
            .count();
        outcome.copies = scheduler_log.matches(" holds a copy (chain").count();
        outcome.checkpoints = scheduler_log.matches(" complete in ").count();
        outcome.checkpoints_rewritten = scheduler_log.matches("writing it again").count();
        if hung {
            outcome.errors.push(format!(
                "the job hung: still running after {:?}",
                self.elapsed()
            ));
        }
        let mut passed = !hung;
        for worker in &mut self.workers {
            let log = worker.output();
            let ok = worker.poll().is_some_and(|s| s.success());
            match log.lines().find(|l| l.starts_with("check passed")) {
                Some(line) if ok => {
                    let stall = line
                        .split("max_stall_ms=")
                        .nth(1)
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    if let Some(ms) = stall {
                        outcome.max_stall_ms = Some(outcome.max_stall_ms.unwrap_or(0.0).max(ms));
                    }
                }
                _ => {
                    passed = false;
                    if log.contains("final sum") || log.contains(", expected within [") {
                        outcome.mismatch = true;
                    }
                    let errors: Vec<&str> = log
                        .lines()
                        .filter(|l| {
                            l.starts_with("error:") || l.trim_start().starts_with("caused by:")
                        })
                        .collect();
                    let why = if hung {
                        "killed, hung".to_string()
                    } else if errors.is_empty() {
                        let status = worker
                            .poll()
                            .map_or("still running".to_string(), describe_status);
                        format!("exited without passing ({status})")
                    } else {
                        errors.join(" / ")
                    };
                    outcome.errors.push(format!("{}: {why}", worker.label));
                }
            }
        }
        if passed {
            passed = self.check_checkpoint(&mut outcome);
        }
        outcome.passed = passed;
        outcome
    }

    /// Checks the job's last checkpoint, if it was to write any ([`super::saved`]); whether it
    /// is whole and exact.
    fn check_checkpoint(&self, outcome: &mut Outcome) -> bool {
        let Some(every) = self.shape.checkpoint_every else {
            return true;
        };
        if self.shape.clocks < every {
            return true;
        }
        match super::saved::check(&self.checkpoint_dir(), self.shape.workers, self.shape.keys) {
            Ok(clock) => {
                outcome.checkpoint_clock = Some(clock);
                true
            }
            Err(why) => {
                outcome.mismatch = true;
                outcome.errors.push(format!("checkpoint: {why}"));
                false
            }
        }
    }
}
