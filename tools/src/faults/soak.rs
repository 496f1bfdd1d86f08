//! The run: jobs back to back (a number of them, or until the minutes are up), each driven
//! while it runs — dead servers replaced by spares, a fault every few seconds, fenced servers
//! watched — and then tallied into the [`Report`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use ferrops::internal::synth::Rng;

use super::inject::Injector;
use super::job::{Job, JobShape};
use super::kinds::{Fault, FaultKind};
use super::report::Report;
use super::Until;
use crate::launch::process::SignalFlag;

/// How often a running job is looked at.
const TICK: Duration = Duration::from_millis(50);

/// How long after a stall or partition past the heartbeat timeout ends the server has to
/// find itself fenced and exit, in heartbeat timeouts (plus a second).
const FENCE_TIMEOUTS: u32 = 4;

/// What the run does besides injecting.
pub struct Plan<'a> {
    pub shape: &'a JobShape,
    pub injector: Injector<'a>,
    pub every: Duration,
    pub faults_per_job: usize,
    pub until: Until,
    pub job_timeout: Duration,
    pub logs: PathBuf,
    pub keep_logs: bool,
    pub seed: u64,
}

/// What driving one job gave.
#[derive(Default)]
struct Driven {
    faults: Vec<Fault>,
    fenced: usize,
    not_fenced: Vec<String>,
    hung: bool,
    interrupted: bool,
}

/// Runs jobs until `plan.until`, or a signal; returns the report and whether a signal ended it.
pub fn run(plan: &Plan<'_>, signals: &SignalFlag) -> Result<(Report, bool)> {
    let started = Instant::now();
    let mut rng = Rng::new(plan.seed);
    let mut report = Report {
        seed: plan.seed,
        ..Report::default()
    };
    let mut interrupted = false;
    for index in 1.. {
        let more = match plan.until {
            Until::Jobs(n) => index <= n,
            Until::Minutes(m) => started.elapsed().as_secs_f64() < m * 60.0,
        };
        if !more || signals.peek().is_some() {
            break;
        }
        let dir = plan.logs.join(format!("job-{index}"));
        let mut job = Job::start(
            plan.injector.net,
            plan.injector.exe,
            plan.shape,
            plan.injector.secret,
            dir.clone(),
        )?;
        let driven = drive(plan, &mut job, &mut rng, signals)?;
        let outcome = job.finish(driven.hung || driven.interrupted);
        if driven.interrupted {
            interrupted = true;
            break;
        }
        report.fenced += driven.fenced;
        report.not_fenced.extend(
            driven
                .not_fenced
                .iter()
                .map(|label| format!("job {index}: {label}")),
        );
        report.add(index, &driven.faults, &outcome, &dir);
        let faults: Vec<String> = driven.faults.iter().map(ToString::to_string).collect();
        println!(
            "job {index}: {} after {:.1} s; faults [{}]; max_stall_ms={}",
            if outcome.passed { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64(),
            faults.join("; "),
            outcome
                .max_stall_ms
                .map_or("-".to_string(), |ms| format!("{ms:.1}"))
        );
        if outcome.passed && !plan.keep_logs {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    report.elapsed = started.elapsed();
    Ok((report, interrupted))
}

/// Drives `job` until its workers are done (or it hangs, or a signal comes).
fn drive(
    plan: &Plan<'_>,
    job: &mut Job<'_>,
    rng: &mut Rng,
    signals: &SignalFlag,
) -> Result<Driven> {
    let mut driven = Driven::default();
    let mut next = Instant::now() + jitter(plan.every, rng);
    // Servers that must exit (fenced) by a deadline.
    let mut watch: Vec<(String, Instant)> = Vec::new();
    let fence_wait = plan.injector.heartbeat_timeout * FENCE_TIMEOUTS + Duration::from_secs(1);
    loop {
        if signals.peek().is_some() {
            driven.interrupted = true;
            return Ok(driven);
        }
        if job.workers_done() {
            return Ok(driven);
        }
        if job.elapsed() > plan.job_timeout {
            driven.hung = true;
            return Ok(driven);
        }
        job.replenish()?;
        watch.retain(|(label, deadline)| {
            let exited = job
                .servers
                .iter_mut()
                .find(|s| &s.label == label)
                .is_none_or(|s| !s.alive());
            if exited {
                driven.fenced += 1;
                false
            } else if Instant::now() > *deadline {
                driven.not_fenced.push(label.clone());
                false
            } else {
                true
            }
        });
        if !plan.injector.kinds.is_empty()
            && driven.faults.len() < plan.faults_per_job
            && Instant::now() >= next
        {
            match plan.injector.inject(job, rng)? {
                Some(fault) => {
                    let fenced = matches!(fault.kind, FaultKind::Stall | FaultKind::Partition);
                    if fault.long && fenced {
                        watch.push((fault.target.clone(), Instant::now() + fence_wait));
                    }
                    driven.faults.push(fault);
                    next = Instant::now() + jitter(plan.every, rng);
                }
                None => next = Instant::now() + Duration::from_millis(200),
            }
        }
        std::thread::sleep(TICK);
    }
}

/// `every` scaled by a random factor from 0.5 to 1.5.
fn jitter(every: Duration, rng: &mut Rng) -> Duration {
    every.mul_f64(0.5 + rng.unit())
}
