//! What the `l1lr` job reports: the per-iteration figures every worker adds to the stats
//! table, the trace records and lines worker 0 makes of them, and the final line.

use std::time::{Duration, Instant};

use anyhow::Result;
use ferrops_engine::{TableId, Worker};

use super::blocks::Shard;
use super::kkt::Kkt;
use crate::trace::{self, Record};

/// Per-iteration figures each worker adds to the stats table.
const STATS: u64 = 7;

/// The stats-table keys of iteration `t`.
pub(super) fn stat_keys(t: usize) -> Vec<u64> {
    let base = t as u64 * STATS;
    (base..base + STATS).collect()
}

/// Adds this worker's figures of iteration `t` to the stats table: loss and correct predictions
/// on its shard, its rows, idle seconds, bytes sent and received, and its nonzeros.
pub(super) fn push_stats(
    w: &Worker,
    stats: TableId,
    t: usize,
    shard: &Shard,
    idle: Duration,
    local_nnz: f32,
) -> Result<()> {
    let (loss, correct) = shard.loss_and_correct();
    let m = w.metrics();
    let figures = [
        loss as f32,
        correct as f32,
        shard.labels.len() as f32,
        idle.as_secs_f32(),
        m.bytes_sent() as f32,
        m.bytes_received() as f32,
        local_nnz,
    ];
    w.push(stats, &stat_keys(t), &figures)?;
    Ok(())
}

/// A trace record from the summed stats `f` and worker 0's weights.
pub(super) fn summarize(
    f: &[f32],
    w: &[Vec<f32>],
    lambda: f32,
    iteration: usize,
    elapsed: Duration,
    workers: usize,
    last: bool,
) -> Record {
    let l1: f64 = w.iter().flatten().map(|v| f64::from(v.abs())).sum();
    let nnz = w.iter().flatten().filter(|v| **v != 0.0).count();
    let loss = f64::from(f[0]);
    let time = elapsed.as_secs_f64();
    Record {
        time,
        iteration,
        objective: loss + f64::from(lambda) * l1,
        loss,
        nnz,
        accuracy: f64::from(f[1]) / f64::from(f[2]).max(1.0),
        bytes_sent: f64::from(f[4]),
        bytes_received: f64::from(f[5]),
        idle_seconds: f64::from(f[3]),
        idle_fraction: f64::from(f[3]) / (workers as f64 * time).max(1e-9),
        last,
        kkt_offered: 0.0,
        kkt_skipped: 0.0,
        stopped: None,
        tau: None,
    }
}

/// Worker 0's first line: the problem, the cluster and the step (`nb` blocks whose nonzeros
/// spread as `spread` says, `data_workers` holding data).
pub(super) fn opening_line(
    args: &super::L1lrArgs,
    nb: usize,
    spread: super::plan::Spread,
    data_workers: usize,
) -> String {
    let o = &args.settings;
    let spread = spread.map_or(String::new(), |(lo, hi)| {
        format!(" (nonzeros per block {lo:.2}–{hi:.2}× the mean)")
    });
    let applier = if o.applier {
        " and a dedicated applier"
    } else {
        ""
    };
    let step = match o.resolved_step() {
        super::Step::Newton => "Newton",
        super::Step::Line => "line-search",
        _ => "bound",
    };
    format!(
        "l1lr: {} features in {nb} blocks{spread}, {data_workers} workers{applier}, λ = {}, \
         τ = {}, δ = {}, {step} step{}",
        args.dim,
        o.lambda,
        o.tau,
        o.delta,
        if o.kkt { ", KKT filter" } else { "" }
    )
}

/// The summary line of the final record.
pub fn final_line(r: &Record, dim: usize) -> String {
    format!(
        "final: objective {:.6e}  loss {:.6e}  nnz {} / {} ({:.2}%)  accuracy {:.2}%  {:.2} s  idle {:.1}%",
        r.objective,
        r.loss,
        r.nnz,
        dim,
        100.0 * r.nnz as f64 / dim.max(1) as f64,
        100.0 * r.accuracy,
        r.time,
        100.0 * r.idle_fraction
    )
}

/// What the iteration's last block step changed after the workers took their stats: the
/// summed loss and rows classified correctly. The line search knows both for the length it took;
/// the bound step does not (zero: its records are stale by up to τ + 1 blocks).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StepChange {
    pub loss: f32,
    pub correct: f32,
}

/// Worker 0's per-iteration report: a trace record and a progress line.
pub(super) struct Progress {
    stats: TableId,
    started: Instant,
    workers: usize,
    lambda: f32,
    tau: u32,
    dim: usize,
    lines: bool,
    out: Option<trace::Writer>,
}

impl Progress {
    /// The report of a run of `args` on `workers` workers, reading the summed stats from
    /// `stats`, timed from `started`, writing the trace to `out` if any.
    pub(super) fn new(
        args: &super::L1lrArgs,
        workers: usize,
        stats: TableId,
        started: Instant,
        out: Option<trace::Writer>,
    ) -> Progress {
        Progress {
            stats,
            started,
            workers,
            lambda: args.settings.lambda,
            tau: args.settings.tau,
            dim: args.dim,
            lines: args.lines,
            out,
        }
    }

    /// Seconds since training started.
    pub(super) fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The trace being written, if any.
    pub(super) fn trace(&mut self) -> Option<&mut trace::Writer> {
        self.out.as_mut()
    }

    /// Records iteration `t` (0-based) from the summed stats, what the last step changed after
    /// they were taken, and worker 0's weights.
    pub(super) fn record(
        &mut self,
        w: &Worker,
        t: usize,
        exact: &[Vec<f32>],
        kkt: Option<&Kkt>,
        moved: StepChange,
    ) -> Result<()> {
        let mut f = w.pull(self.stats, &stat_keys(t))?;
        f[0] += moved.loss;
        f[1] += moved.correct;
        let mut record = summarize(
            &f,
            exact,
            self.lambda,
            t + 1,
            self.started.elapsed(),
            self.workers,
            false,
        );
        record.tau = Some(self.tau);
        if let Some(k) = kkt {
            (record.kkt_offered, record.kkt_skipped) = k.totals(self.workers);
        }
        if self.lines {
            progress(&record, self.dim, f64::from(f[6]));
        }
        if let Some(out) = &mut self.out {
            out.write(&record)?;
        }
        Ok(())
    }
}

/// Prints worker 0's progress line for an iteration.
fn progress(r: &Record, dim: usize, total_nnz: f64) {
    println!(
        "iter {:>3}  objective {:.6e}  nnz {:>8} / {dim}  accuracy {:5.2}%  idle {:4.1}%  {:6.2} s  {:.1} M nonzeros/s",
        r.iteration,
        r.objective,
        r.nnz,
        100.0 * r.accuracy,
        100.0 * r.idle_fraction,
        r.time,
        total_nnz * r.iteration as f64 / r.time.max(1e-9) / 1e6
    );
}
