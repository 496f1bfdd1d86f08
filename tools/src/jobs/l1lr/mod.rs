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

mod blocks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::filter::KktFilter;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use blocks::Shard;

use super::positive_count;
use crate::data::read_part;
use crate::logistic::scaled_prox_l1;
use crate::synth::feature_key;
use crate::trace::{self, Record};

/// The KKT filter's safety margin: a zero weight is skipped only if |g| ≤ λ(1 − margin).
pub const KKT_MARGIN: f32 = 0.1;
/// Every this many iterations the KKT filter has every key pushed.
pub const KKT_RECHECK: u64 = 5;
/// Keys per float of a KKT mask (integers below 2¹⁶ are exact in f32).
const MASK_BITS: usize = 16;

/// The model and schedule of an L1-LR run: the options `ferrops train l1lr` takes and hands
/// on to the `l1lr` job unchanged.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct L1lrSettings {
    /// Training data (LIBSVM/svmlight).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// L1 penalty λ.
    #[arg(long, value_name = "λ", default_value_t = 1.0)]
    pub lambda: f32,

    /// Maximal delay τ in blocks (0: sequential block updates).
    #[arg(long, value_name = "τ", default_value_t = 0)]
    pub tau: u32,

    /// Feature blocks.
    #[arg(long, value_name = "B", value_parser = positive_count, default_value_t = 8)]
    pub blocks: usize,

    /// Iterations (passes over all blocks).
    #[arg(long, value_name = "T", default_value_t = 20)]
    pub iters: usize,

    /// Damping δ added to the curvature on the servers.
    #[arg(long, value_name = "δ", default_value_t = 1.0)]
    pub delta: f32,

    /// Consecutive blocks the curvature bound covers [default: τ + 1, which keeps delayed steps
    /// majorised]; 1 ignores the delay (larger steps, no guarantee).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub window: Option<usize>,

    /// KKT filter: workers skip the gradients of zero weights predicted to stay zero (|g| well
    /// inside λ at the previous update), with every key pushed every few iterations.
    #[arg(long)]
    pub kkt: bool,
}

/// Arguments of the `l1lr` job: the run's settings and what the driver works out for the
/// workers (the data's dimension, where the trace goes, whether worker 0 prints lines).
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct L1lrArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub settings: L1lrSettings,

    /// Number of features (largest index + 1); every worker must agree.
    #[arg(long)]
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
        ensure!(self.dim > 0, "--dim must be positive");
        ensure!(o.lambda >= 0.0, "--lambda must not be negative");
        ensure!(o.delta > 0.0, "--delta must be positive");
        ensure!(
            !o.kkt || o.lambda > 0.0,
            "the KKT filter needs an L1 penalty (--lambda > 0)"
        );
        Ok(())
    }
}

/// Per-iteration figures each worker adds to the stats table.
const STATS: u64 = 7;

/// The stats-table keys of iteration `t`.
fn stat_keys(t: usize) -> Vec<u64> {
    let base = t as u64 * STATS;
    (base..base + STATS).collect()
}

/// Adds this worker's figures of iteration `t` to the stats table: loss and correct predictions
/// on its shard, its rows, idle seconds, bytes sent and received, and its nonzeros.
fn push_stats(
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

/// Runs the job in this worker process.
pub fn run(cfg: &WorkerConfig, args: &L1lrArgs) -> Result<()> {
    args.validate()?;
    let o = &args.settings;
    let w = Worker::connect(cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    let rows = read_part(&o.data, rank, workers)?;
    ensure!(
        rows.dim() <= args.dim,
        "{}: feature index {} is beyond --dim {}",
        o.data.display(),
        rows.dim() - 1,
        args.dim
    );
    let local_nnz = rows.idx.len() as f32;
    let window = o.window.unwrap_or(o.tau as usize + 1);
    let mut shard = Shard::new(&rows, args.dim, o.blocks.min(args.dim), window);
    drop(rows);
    let nb = shard.blocks.len();
    ensure!(
        shard.blocks.iter().all(|b| !b.keys.is_empty()),
        "--blocks {} is more than the {} features",
        o.blocks,
        args.dim
    );
    let weights = w.declare_table(
        TableSpec::new("l1lr.w", 1)
            .rule(Rule::ScaledProxL1 {
                l1: o.lambda,
                delta: o.delta,
            })
            .consistency(Consistency::BoundedDelay(o.tau.saturating_mul(2))),
    )?;
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
    let mut kkt = if o.kkt {
        Some(Kkt::new(&w, &shard, o.lambda, rank == 0)?)
    } else {
        None
    };
    let mut out = match (&args.trace, rank) {
        (Some(path), 0) => Some(
            trace::Writer::create(path)
                .with_context(|| format!("creating the trace {}", path.display()))?,
        ),
        _ => None,
    };
    if rank == 0 && args.lines {
        println!(
            "l1lr: {} features in {nb} blocks, {workers} workers, λ = {}, τ = {}, δ = {}{}",
            args.dim,
            o.lambda,
            o.tau,
            o.delta,
            if o.kkt { ", KKT filter" } else { "" }
        );
    }
    w.barrier()?; // every worker has its data: the clock starts together
    let started = Instant::now();
    let mut idle = Duration::ZERO;
    // Worker 0's exact copy of the weights, per block in key order.
    let mut exact: Vec<Vec<f32>> = shard.weights.clone();
    let (mut buf, mut gc, mut sums, mut planar, mut neg) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in 0..o.iters {
        for b in 0..nb {
            let s = t * nb + b;
            if let Some(done) = s.checked_sub(o.tau as usize + 1) {
                // Step `done` is the newest one this step is guaranteed to see: bring the
                // margins up to date with its block.
                let d = done % nb;
                let keys = &shard.blocks[d].keys;
                buf.resize(keys.len(), 0.0);
                let t0 = Instant::now();
                w.pull_into(weights, keys, &mut buf)?;
                idle += t0.elapsed();
                shard.set_weights(d, &buf);
            }
            shard.grad_curv(b, &mut gc);
            let keys = &shard.blocks[b].keys;
            // The keys to push: all of them unless the KKT filter says otherwise.
            let chosen = match &mut kkt {
                Some(k) => {
                    // The mask pull blocks like the weights' pulls: count it as idle time.
                    let t0 = Instant::now();
                    let chosen = k.chosen(&w, t, b, keys.len())?;
                    idle += t0.elapsed();
                    chosen
                }
                None => None,
            };
            push_chosen(&w, acc[s % slots], keys, chosen.as_deref(), &gc, &mut neg)?;
            let last_step = b == nb - 1;
            if last_step {
                push_stats(&w, stats, t, &shard, idle, local_nnz)?;
            }
            w.clock()?;
            if rank == 0 {
                // Apply step s: every worker's share is in once all have completed clock 2s+1.
                let t0 = Instant::now();
                sums.resize(2 * keys.len(), 0.0);
                w.pull_into(acc[s % slots], keys, &mut sums)?;
                idle += t0.elapsed();
                push_planar(&w, weights, keys, &sums, &mut planar)?;
                // Zero the slot: keys nobody pushed are zero already.
                gc.clear();
                gc.extend(sums.iter().map(|v| -v));
                push_chosen(&w, acc[s % slots], keys, chosen.as_deref(), &gc, &mut neg)?;
                for (c, x) in exact[b].iter_mut().enumerate() {
                    *x = scaled_prox_l1(*x, sums[2 * c], sums[2 * c + 1], o.lambda, o.delta);
                }
                if let Some(k) = &mut kkt {
                    if t + 1 < o.iters {
                        k.publish(&w, t, b, keys, &exact[b], &sums)?;
                    }
                }
                if last_step {
                    let f = w.pull(stats, &stat_keys(t))?;
                    let mut record = summarize(
                        &f,
                        &exact,
                        o.lambda,
                        t + 1,
                        started.elapsed(),
                        workers,
                        false,
                    );
                    if let Some(k) = &kkt {
                        (record.kkt_offered, record.kkt_skipped) = k.totals(workers);
                    }
                    if args.lines {
                        progress(&record, args.dim, f64::from(f[6]));
                    }
                    if let Some(out) = &mut out {
                        out.write(&record)?;
                    }
                }
            }
            w.clock()?;
        }
    }
    // Exact final evaluation: everyone pulls the final weights and recomputes its margins.
    w.barrier()?;
    let elapsed = started.elapsed();
    let mut fresh = shard.clone();
    fresh.margins.fill(0.0);
    for block in &mut fresh.weights {
        block.fill(0.0);
    }
    let mut final_w = Vec::with_capacity(nb);
    for b in 0..nb {
        let keys = &shard.blocks[b].keys;
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
    push_stats(&w, stats, o.iters, &fresh, idle, local_nnz)?;
    w.barrier()?;
    if rank == 0 {
        let f = w.pull(stats, &stat_keys(o.iters))?;
        let mut record = summarize(&f, &final_w, o.lambda, o.iters, elapsed, workers, true);
        if let Some(k) = &kkt {
            (record.kkt_offered, record.kkt_skipped) = k.totals(workers);
        }
        if args.lines {
            println!("{}", final_line(&record, args.dim));
            if let Some(k) = &kkt {
                println!("{}", k.report(workers));
            }
        }
        if let Some(out) = &mut out {
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

/// A trace record from the summed stats `f` and worker 0's weights.
fn summarize(
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
    }
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

/// Pushes `(g, h)` pairs (key-major) for all `keys`, or only for those at the indices `chosen`
/// (nothing at all when `chosen` is empty). `picked` is scratch.
fn push_chosen(
    w: &Worker,
    table: TableId,
    keys: &[u64],
    chosen: Option<&[u32]>,
    pairs: &[f32],
    picked: &mut Vec<f32>,
) -> Result<()> {
    match chosen {
        None => w.push(table, keys, pairs)?,
        Some([]) => {}
        Some(at) => {
            picked.clear();
            picked.extend(
                at.iter()
                    .flat_map(|&i| [pairs[2 * i as usize], pairs[2 * i as usize + 1]]),
            );
            w.push_selected(table, keys, at, picked)?;
        }
    }
    Ok(())
}

/// The KKT filter's state on one worker (module docs): the mask table and its keys, and on
/// worker 0 one [`KktFilter`] per block.
struct Kkt {
    table: TableId,
    /// Per block, the keys of its mask floats (sorted; float `c` holds the block's keys
    /// `16c..16c + 16`).
    mask_keys: Vec<Vec<u64>>,
    /// Worker 0 only.
    filters: Vec<KktFilter>,
    mask: Vec<f32>,
    grads: Vec<f32>,
    /// This worker's coordinates offered and skipped, and mask floats pulled and pushed.
    offered: u64,
    skipped: u64,
    mask_pulled: u64,
    mask_pushed: u64,
}

impl Kkt {
    fn new(w: &Worker, shard: &Shard, lambda: f32, applier: bool) -> Result<Kkt> {
        let nb = shard.blocks.len();
        let table = w.declare_table(
            TableSpec::new("l1lr.kkt", 1)
                .rule(Rule::Assign)
                .consistency(Consistency::BoundedDelay(2 * nb as u32 - 2)),
        )?;
        let mut next = 0u64;
        let mask_keys = shard
            .blocks
            .iter()
            .map(|block| {
                let n = block.keys.len().div_ceil(MASK_BITS) as u64;
                let mut keys: Vec<u64> = (next..next + n).map(feature_key).collect();
                keys.sort_unstable();
                next += n;
                keys
            })
            .collect();
        let filters = if applier {
            (0..nb)
                .map(|_| KktFilter::new(1, lambda, KKT_MARGIN, KKT_RECHECK))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Kkt {
            table,
            mask_keys,
            filters,
            mask: Vec::new(),
            grads: Vec::new(),
            offered: 0,
            skipped: 0,
            mask_pulled: 0,
            mask_pushed: 0,
        })
    }

    /// Whether iteration `t` pushes every key: the first, and the one after each of the
    /// filter's recheck rounds (round r is run in iteration r and decides iteration r + 1).
    fn full(t: usize) -> bool {
        t == 0 || (t as u64 - 1).is_multiple_of(KKT_RECHECK)
    }

    /// The keys of block `b` to push in iteration `t` (`None`: all), from worker 0's mask.
    fn chosen(&mut self, w: &Worker, t: usize, b: usize, n: usize) -> Result<Option<Vec<u32>>> {
        self.offered += n as u64;
        if Kkt::full(t) {
            return Ok(None);
        }
        let keys = &self.mask_keys[b];
        self.mask.resize(keys.len(), 0.0);
        w.pull_into(self.table, keys, &mut self.mask)?;
        self.mask_pulled += keys.len() as u64;
        let mut out = Vec::new();
        for (c, &v) in self.mask.iter().enumerate() {
            ensure!(
                (0.0..65_536.0).contains(&v) && v.fract() == 0.0,
                "KKT mask float {v} is not a 16-bit integer"
            );
            let bits = v as u32;
            for i in 0..MASK_BITS {
                let at = c * MASK_BITS + i;
                if bits >> i & 1 == 1 && at < n {
                    out.push(at as u32);
                }
            }
        }
        self.skipped += (n - out.len()) as u64;
        Ok(Some(out))
    }

    /// Worker 0, after applying block `b` in iteration `t`: runs the block's filter on the new
    /// weights and the summed gradients (`sums` holds key-major `(g, h)`), and publishes the
    /// keys to push next time unless that is a full iteration anyway.
    fn publish(
        &mut self,
        w: &Worker,
        t: usize,
        b: usize,
        keys: &[u64],
        weights: &[f32],
        sums: &[f32],
    ) -> Result<()> {
        let filter = &mut self.filters[b];
        ensure!(
            filter.next_is_recheck() == Kkt::full(t + 1),
            "KKT filter rounds out of step with iterations"
        );
        self.grads.clear();
        self.grads.extend(sums.iter().step_by(2));
        let keep = filter.select(keys, weights, &self.grads)?;
        if Kkt::full(t + 1) {
            return Ok(());
        }
        self.mask.clear();
        self.mask.resize(self.mask_keys[b].len(), 0.0);
        let mut bits = vec![0u32; self.mask.len()];
        for &i in &keep {
            bits[i as usize / MASK_BITS] |= 1 << (i as usize % MASK_BITS);
        }
        for (m, v) in self.mask.iter_mut().zip(bits) {
            *m = v as f32;
        }
        w.push(self.table, &self.mask_keys[b], &self.mask)?;
        self.mask_pushed += self.mask.len() as u64;
        Ok(())
    }

    /// Coordinates offered and skipped, summed over the workers (they all skip the same keys).
    fn totals(&self, workers: usize) -> (f64, f64) {
        let w = workers as f64;
        (self.offered as f64 * w, self.skipped as f64 * w)
    }

    /// Worker 0's report: what was skipped, the value bytes that did not travel and what the
    /// masks cost.
    fn report(&self, workers: usize) -> String {
        let (offered, skipped) = self.totals(workers);
        // Each skipped key saves a (g, h) pair in every worker's push and in worker 0's zeroing.
        let saved = skipped * 8.0 + self.skipped as f64 * 8.0;
        let cost = (self.mask_pulled as f64 * workers as f64 + self.mask_pushed as f64) * 4.0;
        format!(
            "kkt: skipped {skipped:.0} of {offered:.0} gradient coordinates ({:.1}%): {:.2} MB of values not sent, masks {:.2} MB",
            100.0 * skipped / offered.max(1.0),
            saved / 1e6,
            cost / 1e6
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_reject_bad_flags() {
        let args = L1lrArgs {
            settings: L1lrSettings {
                data: "x.svm".into(),
                lambda: 1.0,
                tau: 3,
                blocks: 8,
                iters: 20,
                delta: 1.0,
                window: Some(2),
                kkt: true,
            },
            dim: 10,
            trace: Some("t.jsonl".into()),
            lines: false,
        };
        let job = crate::jobs::Job::L1lr(args.clone());
        let parsed = crate::jobs::Job::parse("l1lr", &job.args()).unwrap();
        assert_eq!(parsed, job);
        let parse = |a: &[&str]| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            crate::jobs::Job::parse("l1lr", &a)
        };
        assert!(parse(&["--data", "x", "--dim", "3", "--bogus", "1"]).is_err());
        assert!(parse(&["--data", "x"]).is_err()); // no --dim
        let Ok(crate::jobs::Job::L1lr(defaults)) = parse(&["--data", "x", "--dim", "3"]) else {
            panic!("l1lr parses")
        };
        assert_eq!((defaults.settings.blocks, defaults.lines), (8, true));
    }
}
