//! Worker job `l1lr`: L1-regularised logistic regression, min Σ log(1 + exp(−y·wᵀx)) + λ‖w‖₁, by
//! delayed block proximal gradient (Li et al., 2014), each worker on its byte range of a LIBSVM
//! file.
//!
//! # The scheme, and why each step is the true proximal step
//!
//! Features are dealt to B blocks; a step `s` updates block `b = s mod B`, an iteration is B
//! steps. In step `s` every worker pulls block b's weights, updates its margins, computes its
//! shard's gradient `g_k` and diagonal curvature `h_k` for block b and pushes them to a `Sum`
//! accumulator table. The proximal step needs the *sums* `g = Σ_k g_k`, `h = Σ_k h_k` in one
//! application of `w ← S_{λ/(h+δ)}(w − g/(h+δ))`, but a server applies each push as it comes,
//! so pushing every worker's share straight to a `ScaledProxL1` table would take W partial
//! steps. Instead worker 0 is also the *applier*: once every worker's share of step s is in the
//! accumulator, it pulls the sums, pushes them once to the weights table (rule
//! `ScaledProxL1 { l1: λ, delta: δ }`), and pushes the negated sums back so the accumulator
//! slot is exactly zero again (x + (−x) = 0 in floating point).
//!
//! Clocks make the waiting exact. Every worker finishes two clocks per step: one after pushing
//! its share (clock 2s+1), one after the apply phase (clock 2s+2; only worker 0 does work in
//! between). The accumulator tables are sequential, so worker 0's pull at clock 2s+1 waits
//! until every worker has completed clock 2s+1, i.e. pushed its share of step s. The weights
//! table has bounded delay 2τ: a pull in step s (at clock 2s) waits until every worker has
//! completed clock 2s − 2τ, in particular until worker 0 has applied step s − τ − 1. In step s
//! each worker pulls the block updated in step s − τ − 1 and moves its margins to those
//! weights (the gradient needs only the margins), so a step sees every update older than τ
//! steps, and τ = 0 is the sequential block method. Accumulator
//! slots cycle through τ + 2 tables; slot reuse is safe because a worker's push for step
//! s + τ + 2 needs worker 0 past clock 2s + 2, when slot s was read and zeroed.
//!
//! The curvature pushed for feature j is Σ_i n_i x_ij² σ(m_i)(1 − σ(m_i)), n_i being row i's
//! nonzeros in block b and the τ blocks before it (the ones that may be updated from the same
//! stale margins): by Cauchy–Schwarz it bounds the Hessian of those τ + 1 blocks together at the
//! current margins, so the delayed steps stay a majorised step (`--window` changes how many
//! blocks it covers; 1 ignores the delay: larger steps, no guarantee). δ is added on the server.
//!
//! Worker 0 also keeps an exact copy of the weights (the server's f32 arithmetic mirrored), prints
//! a progress line per iteration and writes the trace. At the end every worker pulls the final
//! weights, recomputes its margins from scratch, and the final record is the exact objective.
//!
//! # The KKT filter (`--kkt`)
//!
//! A weight that is zero stays zero under the proximal step exactly when the summed gradient
//! satisfies |g| ≤ λ, so its gradient need not be pushed. Only worker 0 sees the summed
//! gradient, and every worker must skip the same keys (a key some workers push and others do
//! not would get a partial sum). So after applying a block, worker 0 runs the engine's
//! [`KktFilter`] on the block's new weights and summed gradient, and publishes the keys to push
//! next time as a bit mask (16 keys per float, table `l1lr.kkt`, rule `Assign`). When the block
//! comes round again every worker pulls the mask and pushes only those keys (`push_selected`);
//! worker 0 zeroes only those accumulator slots. The prediction is one iteration old, so a
//! skipped key whose gradient has since grown past λ misses updates until the filter's next
//! recheck round (every [`KKT_RECHECK`] iterations every key is pushed; no mask travels then).
//! The mask table has bounded delay 2B − 2 clocks: a pull in step s is guaranteed worker 0's
//! mask from step s − B, and cannot see a newer one, because worker 0 writes the next only after
//! every worker's push of step s. With τ ≥ B that wait is stricter than the weights' one.
//!
//! # Stopping (`--tol`, `--max-seconds`)
//!
//! Worker 0 measures the KKT violation of each iteration from the summed gradients it applies,
//! decides, and publishes the decision; every worker reads it ⌈τ/B⌉ iterations later at the
//! same step, so all stop after the same iteration (`stopping.rs` has the clock argument).

mod blocks;
mod kkt;
mod line;
mod newton;
mod plan;
mod report;
mod stopping;
mod straggler;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use blocks::{Block, Shard};
use kkt::Kkt;
use plan::block_plan;
use report::{opening_line, push_stats, stat_keys, summarize, Progress, StepChange};
use stopping::Stopping;
use straggler::Straggler;

pub use report::final_line;

use super::checkpoints::{CheckpointFlags, Checkpoints};
use super::stop::StopArgs;
use super::{delay, non_negative_number, positive_count, positive_number};
use crate::data::{read_part, DimBound, Rows};
use crate::logistic::scaled_prox_l1;
use crate::trace;

/// The KKT filter's safety margin: a zero weight is skipped only if |g| ≤ λ(1 − margin).
pub const KKT_MARGIN: f32 = 0.1;
/// Every this many iterations the KKT filter has every key pushed.
pub const KKT_RECHECK: u64 = 5;
/// Keys per float of a KKT mask (integers below 2¹⁶ are exact in f32).
const MASK_BITS: usize = 16;

/// How a block's step is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// `line` at τ = 0 without the KKT filter, `bound` otherwise.
    Auto,
    /// The proximal step with the curvature bound of `--window` blocks, applied on the
    /// servers: a majorised step, so it converges under delay τ.
    Bound,
    /// The proximal step with the exact diagonal curvature, shortened by a backtracking line
    /// search on the block's objective (τ = 0 only).
    Line,
    /// A Newton direction (coordinate descent on a quadratic model with the block's exact
    /// Hessian over its working set, run on worker 0) sized by the same line search (τ = 0
    /// only).
    Newton,
}

/// The model and schedule of an L1-LR run: the options `ferrops train l1lr` takes and hands
/// on to the `l1lr` job unchanged.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct L1lrSettings {
    /// Training data (LIBSVM/svmlight).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// L1 penalty λ.
    #[arg(long, value_name = "λ", value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 1.0)]
    pub lambda: f32,

    /// Maximal delay τ in blocks (0: sequential block updates).
    #[arg(long, value_name = "τ", value_parser = delay, default_value_t = 0)]
    pub tau: u32,

    /// Feature blocks.
    #[arg(long, value_name = "B", value_parser = positive_count, default_value_t = 8)]
    pub blocks: usize,

    /// Iterations (passes over all blocks); at most this many with `--tol` or `--max-seconds`.
    #[arg(long, value_name = "T", value_parser = positive_count, default_value_t = 20)]
    pub iters: usize,

    /// When to stop before `--iters`: the KKT violation relative to the first iteration's
    /// below `--tol`, or `--max-seconds` of training.
    #[command(flatten)]
    #[serde(flatten)]
    pub stop: StopArgs,

    /// Damping δ added to the curvature on the servers.
    #[arg(long, value_name = "δ", value_parser = positive_number::<f32>, allow_hyphen_values = true,
        default_value_t = 1.0)]
    pub delta: f32,

    /// Consecutive blocks the curvature bound covers [default: τ + 1, which keeps delayed steps
    /// majorised]; 1 ignores the delay (larger steps, no guarantee).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub window: Option<usize>,

    /// KKT filter: workers skip the gradients of zero weights predicted to stay zero (|g| well
    /// inside λ at the previous update), with every key pushed every few iterations.
    #[arg(long)]
    pub kkt: bool,

    /// Step rule: `bound` (majorised, any τ), `line` (exact diagonal curvature and a line
    /// search; τ = 0), `newton` (coordinate descent on a quadratic model with the block's exact Hessian, and the
    /// line search; τ = 0; best with a small `--delta`, e.g. 0.01), `auto` (line where it
    /// applies, bound otherwise).
    #[arg(long, value_enum, default_value_t = Step::Auto)]
    pub step: Step,

    /// Inject a straggler: in a fraction P of its block steps each worker takes K times as long
    /// to compute (it sleeps (K − 1) × its compute time, as if on a slower machine), as `P,K`,
    /// e.g. `0.25,4`; the bound step only.
    #[arg(long, value_name = "P,K", value_parser = straggler::parse)]
    pub straggler: Option<String>,

    /// A dedicated applier: worker 0 holds no data and only applies the block steps (as the
    /// paper's servers do), so no worker that computes gradients waits for the slowest one at
    /// every step; the data goes to workers 1 … W − 1 (`ferrops train` starts one more worker
    /// process for it). The bound step only.
    #[arg(long)]
    pub applier: bool,

    #[command(flatten)]
    #[serde(flatten)]
    pub checkpoints: CheckpointFlags,
}

impl L1lrSettings {
    /// Whether the step is sized by the line search (`line` or `newton`, asked for or by
    /// `auto`).
    pub fn searches_lines(&self) -> bool {
        matches!(self.resolved_step(), Step::Line | Step::Newton)
    }

    /// The step rule `auto` resolves to.
    pub fn resolved_step(&self) -> Step {
        match self.step {
            Step::Auto if self.tau == 0 && !self.kkt => Step::Line,
            Step::Auto => Step::Bound,
            other => other,
        }
    }
}

/// Arguments of the `l1lr` job: the run's settings and what the driver works out for the
/// workers (the data's dimension, where the trace goes, whether worker 0 prints lines).
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct L1lrArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub settings: L1lrSettings,

    /// Number of features (largest index + 1); every worker must agree.
    #[arg(long, value_parser = positive_count)]
    pub dim: usize,

    /// Where worker 0 writes the JSON-lines trace.
    #[arg(long)]
    pub trace: Option<PathBuf>,

    /// Worker 0 prints a line per iteration and the final line (off when the driver draws a
    /// progress bar from the trace instead).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub lines: bool,
}

impl L1lrArgs {
    /// What the command line cannot check on its own.
    pub fn validate(&self) -> Result<()> {
        let o = &self.settings;
        ensure!(
            !o.kkt || o.lambda > 0.0,
            "the KKT filter needs an L1 penalty (--lambda > 0)"
        );
        ensure!(
            !o.searches_lines() || (o.tau == 0 && !o.kkt),
            "--step {} needs --tau 0 and no KKT filter",
            if o.step == Step::Line {
                "line"
            } else {
                "newton"
            }
        );
        ensure!(
            o.straggler.is_none() || o.resolved_step() == Step::Bound,
            "--straggler applies to the bound step: add --step bound (or --tau above 0)"
        );
        ensure!(
            !o.applier || o.resolved_step() == Step::Bound,
            "--applier applies to the bound step: add --step bound (or --tau above 0)"
        );
        ensure!(
            !o.kkt || o.checkpoints.checkpoint_every.is_none(),
            "--checkpoint-every cannot be used with --kkt: the KKT filter keeps per-worker \
             state that a checkpoint does not hold"
        );
        Ok(())
    }
}

/// Runs the job in this worker process.
pub fn run(cfg: &WorkerConfig, args: &L1lrArgs) -> Result<()> {
    args.validate()?;
    let o = &args.settings;
    let w = Worker::connect(cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    ensure!(
        !o.applier || workers >= 2,
        "--applier needs at least two worker processes: the applier and one with data"
    );
    // With a dedicated applier, worker 0 reads nothing and the others share the data.
    let data_workers = workers - usize::from(o.applier);
    let holds_data = !o.applier || rank > 0;
    let rows = if holds_data {
        let part = rank - usize::from(o.applier);
        read_part(&o.data, part, data_workers, DimBound::Dim(args.dim as u64))?
    } else {
        Rows::new()
    };
    let local_nnz = rows.idx.len() as f32;
    let step = o.resolved_step();
    let window = match (o.window, o.searches_lines()) {
        (Some(n), _) => n,
        (None, true) => 0, // the exact diagonal: the line search keeps the step safe
        (None, false) => o.tau as usize + 1,
    };
    let planning = Instant::now();
    let (plan, spread) = block_plan(&w, &rows, args.dim, o.blocks.min(args.dim))?;
    tracing::debug!("block plan in {:.1?}", planning.elapsed());
    let mut shard = Shard::with_plan(&rows, &plan, window);
    drop((rows, plan));
    let nb = shard.blocks.len();
    ensure!(
        shard.blocks.iter().all(|b| !b.keys.is_empty()),
        "--blocks {} is more than the {} features",
        o.blocks,
        args.dim
    );
    let weights = w.declare_table(if o.searches_lines() {
        // The line search's weights are worker 0's, assigned once chosen.
        TableSpec::new("l1lr.w", 1)
            .rule(Rule::Assign)
            .consistency(Consistency::Sequential)
    } else {
        TableSpec::new("l1lr.w", 1)
            .rule(Rule::ScaledProxL1 {
                l1: o.lambda,
                delta: o.delta,
            })
            .consistency(Consistency::BoundedDelay(o.tau.saturating_mul(2)))
    })?;
    // τ + 2 slots make reuse safe (module docs); a run of fewer steps never reuses one.
    let slots = (o.tau as usize + 2).min(o.iters * nb + 1);
    let acc = (0..slots)
        .map(|q| {
            w.declare_table(
                TableSpec::new(format!("l1lr.acc{q}"), 2)
                    .rule(Rule::Sum)
                    .consistency(Consistency::Sequential),
            )
        })
        .collect::<Result<Vec<TableId>, _>>()?;
    let stats = w.declare_table(
        TableSpec::new("l1lr.stats", 1)
            .rule(Rule::Sum)
            .consistency(Consistency::Sequential),
    )?;
    let mut checkpoints = Checkpoints::declare(&w, "l1lr", &o.checkpoints)?;
    let first = checkpoints.resumed(&w)?.min(o.iters);
    if first > 0 {
        // Restored: this shard's weights and margins from the saved weights.
        for b in 0..nb {
            let values = w.pull(weights, &shard.blocks[b].keys)?;
            shard.set_weights(b, &values);
        }
        if rank == 0 && args.lines {
            println!("l1lr: resuming after iteration {first}");
        }
    }
    let line_tables = if o.searches_lines() {
        Some(line::Tables::declare(&w, step == Step::Newton)?)
    } else {
        None
    };
    let mut kkt = if o.kkt {
        Some(Kkt::new(&w, &shard, o.lambda, rank == 0)?)
    } else {
        None
    };
    let clocks_per_step = match step {
        Step::Newton => 6,
        Step::Line => 3,
        _ => 2,
    };
    let mut stopping = Stopping::declare(&w, &o.stop, o.tau, clocks_per_step, nb)?;
    let out = match (&args.trace, rank) {
        (Some(path), 0) => Some(
            trace::Writer::create(path)
                .with_context(|| format!("creating the trace {}", path.display()))?,
        ),
        _ => None,
    };
    if rank == 0 && args.lines {
        println!("{}", opening_line(args, nb, spread, data_workers));
    }
    w.barrier()?; // every worker has its data: the clock starts together
    let started = Instant::now();
    let mut idle = Duration::ZERO;
    // The idle time a worker reports: a dedicated applier's waits are the servers' part in the
    // paper's scheme, not a worker's (it prints them at the end instead).
    let worker_idle = |idle: Duration| {
        if holds_data {
            idle
        } else {
            Duration::ZERO
        }
    };
    // Worker 0's exact copy of the weights, per block in key order.
    let mut exact: Vec<Vec<f32>> = shard.weights.clone();
    let mut progress = Progress::new(args, data_workers, stats, started, out);
    // The iterations completed and, when training ended before `--iters`, why.
    let stopped = if o.searches_lines() {
        let run = line::Run {
            w: &w,
            settings: o,
            tables: line_tables.context("line-search tables")?,
            weights,
            acc: [acc[0], acc[slots.min(2) - 1]],
            stats,
            local_nnz,
            newton: step == Step::Newton,
        };
        let rounds = (first, &mut checkpoints);
        run.train(
            rounds,
            &mut shard,
            &mut exact,
            &mut idle,
            &mut progress,
            &mut stopping,
        )?
    } else {
        let (mut buf, mut gc, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        let mut scratch = Scratch::default();
        let mut stopped = None;
        let seed = 0x5752_4147 ^ rank as u64;
        // The applier computes nothing a slower machine would slow down.
        let mut straggler = match &o.straggler {
            Some(s) if holds_data => Some(Straggler::new(s, seed)),
            _ => None,
        };
        for t in first..o.iters {
            // The read waits where this step's weights pull would: count it as idle time.
            let t0 = Instant::now();
            let decision = stopping.read(&w, t)?;
            idle += t0.elapsed();
            if let Some(stop) = decision {
                stopped = Some((t, stop));
                break;
            }
            for b in 0..nb {
                let s = t * nb + b;
                if let Some(done) = s.checked_sub(o.tau as usize + 1) {
                    // Step `done` is the newest one this step is guaranteed to see: bring the
                    // margins up to date with its block (the features this shard has).
                    let d = done % nb;
                    let keys = &shard.blocks[d].present_keys;
                    buf.resize(keys.len(), 0.0);
                    let t0 = Instant::now();
                    if !keys.is_empty() {
                        w.pull_into(weights, keys, &mut buf)?;
                    }
                    idle += t0.elapsed();
                    shard.set_present_weights(d, &buf);
                }
                let computing = Instant::now();
                shard.grad_curv(b, &mut gc);
                if let Some(s) = straggler.as_mut() {
                    // Sleep rather than spin: a slow machine does not take the others' cores.
                    std::thread::sleep(s.extra(computing.elapsed()));
                }
                let block = &shard.blocks[b];
                // The keys to push: all present ones unless the KKT filter says otherwise.
                let chosen = match &mut kkt {
                    Some(k) => {
                        // The mask pull blocks like the weights' pulls: count it as idle time.
                        let t0 = Instant::now();
                        let chosen = k.chosen(&w, t, b, block.keys.len())?;
                        idle += t0.elapsed();
                        chosen
                    }
                    None => None,
                };
                push_present(
                    &w,
                    acc[s % slots],
                    block,
                    chosen.as_deref(),
                    &gc,
                    &mut scratch,
                )?;
                let last_step = b == nb - 1;
                if last_step {
                    push_stats(&w, stats, t, &shard, worker_idle(idle), local_nnz)?;
                }
                w.clock()?;
                if rank == 0 {
                    // Apply step s: every worker's share is in once all have completed clock
                    // 2s+1.
                    let keys = &block.keys;
                    let t0 = Instant::now();
                    sums.resize(2 * keys.len(), 0.0);
                    w.pull_into(acc[s % slots], keys, &mut sums)?;
                    idle += t0.elapsed();
                    stopping.add_block(&exact[b], &sums, o.lambda);
                    apply_sums(
                        &w,
                        weights,
                        acc[s % slots],
                        keys,
                        &sums,
                        &exact[b],
                        &mut scratch,
                    )?;
                    for (c, x) in exact[b].iter_mut().enumerate() {
                        *x = scaled_prox_l1(*x, sums[2 * c], sums[2 * c + 1], o.lambda, o.delta);
                    }
                    if let Some(k) = &mut kkt {
                        if t + 1 < o.iters {
                            k.publish(&w, t, b, keys, &exact[b], &sums)?;
                        }
                    }
                    if last_step {
                        progress.record(&w, t, &exact, kkt.as_ref(), StepChange::default())?;
                        stopping.decide(&w, t, started.elapsed().as_secs_f64())?;
                    }
                }
                w.clock()?;
            }
            checkpoints.after_round(&w, t + 1)?;
        }
        if let Some(s) = &straggler {
            println!("{}", s.summary(rank));
        }
        stopped
    };
    let done = stopped.map_or(o.iters, |(t, _)| t);
    let stopped = stopped.map(|(t, stop)| stopping.describe(&stop, t));
    if let (true, Some(why)) = (args.lines, &stopped) {
        if rank == 0 {
            println!("{why}");
        }
        println!("worker {rank}: stopped after iteration {done}");
    }
    // Exact final evaluation: everyone pulls the final weights and recomputes its margins.
    w.barrier()?;
    let elapsed = started.elapsed();
    // The shard is done with: its margins are recomputed in place rather than in a copy (a
    // copy of the columns costs page faults in the measured wall time).
    let mut fresh = shard;
    fresh.margins.fill(0.0);
    for block in &mut fresh.weights {
        block.fill(0.0);
    }
    let mut final_w = Vec::with_capacity(nb);
    for b in 0..nb {
        let keys = &fresh.blocks[b].keys;
        let values = if keys.is_empty() {
            Vec::new()
        } else {
            w.pull(weights, keys)?
        };
        fresh.set_weights(b, &values);
        final_w.push(values);
    }
    if rank == 0 {
        ensure!(
            final_w == exact,
            "the servers' weights differ from worker 0's mirror of the updates"
        );
    }
    push_stats(&w, stats, done, &fresh, worker_idle(idle), local_nnz)?;
    w.barrier()?;
    if rank == 0 {
        let f = w.pull(stats, &stat_keys(done))?;
        let mut record = summarize(&f, &final_w, o.lambda, done, elapsed, data_workers, true);
        record.stopped = stopped;
        record.tau = Some(o.tau);
        if let Some(k) = &kkt {
            (record.kkt_offered, record.kkt_skipped) = k.totals(data_workers);
        }
        if args.lines {
            println!("{}", final_line(&record, args.dim));
            if let Some(k) = &kkt {
                println!("{}", k.report(data_workers));
            }
            if o.applier {
                println!(
                    "applier: waited {:.2} s for the workers' shares ({:.1}% of training)",
                    idle.as_secs_f64(),
                    100.0 * idle.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)
                );
            }
        }
        if let Some(out) = progress.trace() {
            out.write(&record)?;
        }
    }
    w.finish()?;
    Ok(())
}

/// Pushes key-major `(g, h)` pairs to a two-input (planar) table, one request per server: each
/// server's share is made planar on its own (all its g, then all its h). The worker client
/// slices a multi-server push as if values were key-major, which would hand a server part of
/// the g plane and part of the h plane, so the split is done here.
fn push_planar(
    w: &Worker,
    table: TableId,
    keys: &[u64],
    pairs: &[f32],
    planar: &mut Vec<f32>,
) -> Result<()> {
    let routing = w.routing();
    let mut tickets = Vec::new();
    for (_, part) in routing.slice(keys) {
        let (lo, hi) = (part.start, part.end);
        planar.clear();
        planar.extend(pairs[2 * lo..2 * hi].iter().step_by(2));
        planar.extend(pairs[2 * lo + 1..2 * hi].iter().step_by(2));
        tickets.push(w.push_async(table, &keys[lo..hi], planar)?);
    }
    for t in tickets {
        w.wait(t)?;
    }
    Ok(())
}

/// Reused buffers of the pushes.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    at: Vec<u32>,
    values: Vec<f32>,
    planar: Vec<f32>,
}

/// Pushes this worker's `(g, h)` pairs of `block` (`pairs` holds one per present feature): all
/// present features, or those of them at the indices `chosen` of the block's keys.
fn push_present(
    w: &Worker,
    table: TableId,
    block: &Block,
    chosen: Option<&[u32]>,
    pairs: &[f32],
    scratch: &mut Scratch,
) -> Result<()> {
    let Some(chosen) = chosen else {
        if !block.present_keys.is_empty() {
            w.push(table, &block.present_keys, pairs)?;
        }
        return Ok(());
    };
    // Both lists ascend: merge them.
    scratch.at.clear();
    scratch.values.clear();
    let mut next = chosen.iter().peekable();
    for (p, &c) in block.present.iter().enumerate() {
        while next.next_if(|&&k| k < c).is_some() {}
        if next.next_if_eq(&&c).is_some() {
            scratch.at.push(c);
            scratch.values.extend_from_slice(&pairs[2 * p..2 * p + 2]);
        }
    }
    if !scratch.at.is_empty() {
        w.push_selected(table, &block.keys, &scratch.at, &scratch.values)?;
    }
    Ok(())
}

/// Worker 0's apply phase of a bound step: the summed pairs `sums` (key-major, for all `keys`)
/// go once to the weights table, for the keys with a nonzero sum or weight (the others stay
/// zero under the step), and the accumulator slot is zeroed by pushing the negated nonzero sums
/// (x + (−x) = 0 exactly; a zero sum is a zero slot already).
fn apply_sums(
    w: &Worker,
    weights: TableId,
    acc: TableId,
    keys: &[u64],
    sums: &[f32],
    current: &[f32],
    scratch: &mut Scratch,
) -> Result<()> {
    scratch.keys.clear();
    scratch.values.clear();
    for (c, &k) in keys.iter().enumerate() {
        if sums[2 * c] != 0.0 || sums[2 * c + 1] != 0.0 || current[c] != 0.0 {
            scratch.keys.push(k);
            scratch.values.extend_from_slice(&sums[2 * c..2 * c + 2]);
        }
    }
    if !scratch.keys.is_empty() {
        push_planar(
            w,
            weights,
            &scratch.keys,
            &scratch.values,
            &mut scratch.planar,
        )?;
    }
    scratch.keys.clear();
    scratch.values.clear();
    for (c, &k) in keys.iter().enumerate() {
        if sums[2 * c] != 0.0 || sums[2 * c + 1] != 0.0 {
            scratch.keys.push(k);
            scratch.values.extend([-sums[2 * c], -sums[2 * c + 1]]);
        }
    }
    if !scratch.keys.is_empty() {
        w.push(acc, &scratch.keys, &scratch.values)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
