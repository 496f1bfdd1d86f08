//! `ferrops faults`: fault injection against real jobs on a private network. Every node
//! (scheduler, servers, spares, workers) runs in a network namespace of its own, all joined by
//! veths on a bridge ([`netns`]); jobs of the built-in `check` job (exact sums under sequential
//! consistency) run back to back ([`job`], [`soak`]) while servers are killed, stopped or cut
//! off at random ([`kinds`], [`inject`]) — only servers whose loss leaves every range a copy,
//! by the scheduler's status ([`status`]) — and dead servers are replaced by spares. At the end
//! a [`report`]: jobs run and passed, faults by kind, recoveries, recovery times, wrong sums.
//!
//! A host that cannot make namespaces (not root, no veth or bridge) skips the run: it prints
//! `SKIPPED: <reason>` and exits [`EXIT_SKIPPED`]; so does `--netem` on a kernel without the
//! netem qdisc.

mod inject;
mod job;
mod kinds;
mod netns;
mod node;
mod report;
mod saved;
mod soak;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrops_net::auth::Secret;

pub use job::JobShape;
pub use kinds::{FaultKind, Hold};

use crate::launch::process::SignalFlag;
use inject::Injector;
use netns::{Network, SetupError};

/// The exit code of a run that could not check anything here (automake's "skipped").
pub const EXIT_SKIPPED: i32 = 77;

/// When the run stops starting jobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Until {
    /// After this many jobs.
    Jobs(usize),
    /// Once this many minutes have passed (the job under way finishes).
    Minutes(f64),
}

/// What `ferrops faults` does.
#[derive(Clone, Debug)]
pub struct FaultsOptions {
    pub shape: JobShape,
    /// Fault kinds to draw from; empty: no faults (a baseline run).
    pub kinds: Vec<FaultKind>,
    pub hold: Hold,
    /// The mean time between two faults of a job.
    pub every: Duration,
    /// At most this many faults per job.
    pub faults_per_job: usize,
    pub seed: u64,
    pub until: Until,
    /// A netem qdisc (`delay 5ms loss 1%`) on every node's interface.
    pub netem: Option<String>,
    /// Where each job's node logs go (a failed job's are kept).
    pub logs: PathBuf,
    pub keep_logs: bool,
    /// A job still running after this long is killed and counted failed (hung).
    pub job_timeout: Duration,
    /// The ferrops binary the nodes run.
    pub node_exe: PathBuf,
}

/// Runs the faults; returns the exit code: 0 when every job passed, 1 when one failed or saw a
/// wrong sum, [`EXIT_SKIPPED`] when this host cannot run it, 128+N after signal N.
pub fn run(opts: &FaultsOptions) -> Result<i32> {
    let signals = SignalFlag::install()?;
    let net = match Network::create(opts.shape.slots()) {
        Ok(net) => net,
        Err(SetupError::Unsupported(why)) => {
            println!("SKIPPED: {why}");
            return Ok(EXIT_SKIPPED);
        }
        Err(SetupError::Failed(error)) => return Err(error.context("setting up the network")),
    };
    if let Some(netem) = &opts.netem {
        if !net.apply_netem(netem)? {
            println!("SKIPPED: no netem qdisc (sch_netem) in this kernel");
            return Ok(EXIT_SKIPPED);
        }
    }
    std::fs::create_dir_all(&opts.logs)
        .with_context(|| format!("creating {}", opts.logs.display()))?;
    let secret = Secret::generate().context("generating the jobs' secret")?;
    let kinds: Vec<&str> = opts.kinds.iter().map(|k| k.name()).collect();
    println!(
        "faults: seed {}, kinds [{}], a fault every ~{:.1} s, {:?}, {} servers (+{} spare slots), \
         {} workers, R = {}, netem {}; logs in {}",
        opts.seed,
        kinds.join(","),
        opts.every.as_secs_f64(),
        opts.until,
        opts.shape.servers,
        opts.shape.spares,
        opts.shape.workers,
        opts.shape.replication,
        opts.netem.as_deref().unwrap_or("none"),
        opts.logs.display()
    );
    let plan = soak::Plan {
        shape: &opts.shape,
        injector: Injector {
            net: &net,
            exe: &opts.node_exe,
            secret: secret.expose(),
            kinds: &opts.kinds,
            hold: opts.hold,
            heartbeat_timeout: opts.shape.heartbeat_timeout,
        },
        every: opts.every,
        faults_per_job: opts.faults_per_job,
        until: opts.until,
        job_timeout: opts.job_timeout,
        logs: opts.logs.clone(),
        keep_logs: opts.keep_logs,
        seed: opts.seed,
    };
    let (report, interrupted) = soak::run(&plan, &signals)?;
    print!("{report}");
    if interrupted {
        let signal = signals.take().unwrap_or(libc::SIGINT);
        println!("faults: interrupted (signal {signal}); every node stopped, network removed");
        return Ok(128 + signal);
    }
    if !report.ok() {
        println!(
            "faults: FAILED with seed {}: {} of {} jobs failed, {} with wrong sums (node logs kept \
             as listed above)",
            opts.seed,
            report.jobs - report.passed,
            report.jobs,
            report.mismatches
        );
        return Ok(1);
    }
    if opts.keep_logs {
        println!("faults: passed; logs in {}", opts.logs.display());
    } else {
        let _ = std::fs::remove_dir(&opts.logs);
        println!("faults: passed");
    }
    Ok(0)
}
