//! Worker job `rica`: reconstruction ICA (Le et al. 2011), an overcomplete filter bank W (k × d)
//! minimising, per whitened patch x, λ Σ_j √((Wx)_j² + ε) + ½‖WᵀWx − x‖². Workers compute
//! minibatch gradients on their patches (patch i goes to worker i mod W) and push them; the
//! servers apply AdaGrad. A rule cannot set initial values, so the servers hold the change Δ
//! from a random start W₀ that every worker generates from the same seed (W = W₀ + Δ).
//!
//! `--tol` and `--max-seconds` are checked after each epoch's barrier: every worker pulls the
//! same summed figures (the epoch's objective, its patch count, worker 0's seconds) and decides
//! from them with the same [`Stopper`], so all leave after the same epoch without a message
//! passing between them. The measure is the relative decrease of the epoch's objective per
//! patch (summed over the minibatches as they were trained): AdaGrad is a stochastic method
//! whose only objective figure is that running sum.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use super::checkpoints::{CheckpointFlags, Checkpoints};
use super::stop::{epoch_sums, Measure, StopArgs, Stopper};
use super::{delay, non_negative_number, positive_count, positive_number};
use crate::data::patches;
use crate::synth::Rng;

/// The default ε of the smoothed L1 penalty.
pub const EPSILON: f32 = 1e-2;
/// The default seed of the random start.
pub const SEED: u64 = 1;

/// The options `ferrops train rica` takes and hands on to the `rica` job unchanged.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct RicaSettings {
    /// Patches written by `ferrops data patches`.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    /// Filters (rows of W); more than the patch size makes the bank overcomplete.
    #[arg(long, value_name = "K", default_value_t = 128, value_parser = positive_count)]
    pub filters: usize,

    /// Sparsity weight λ.
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.1)]
    pub lambda: f32,

    /// AdaGrad learning rate.
    #[arg(long, value_parser = positive_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.05)]
    pub lr: f32,

    /// Patches per minibatch.
    #[arg(long, default_value_t = 100, value_parser = positive_count)]
    pub batch: usize,

    /// Passes over the patches; at most this many with `--tol` or `--max-seconds`.
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub epochs: usize,

    /// When to stop before `--epochs`: the relative decrease of the epoch's objective below
    /// `--tol`, or `--max-seconds` of training.
    #[command(flatten)]
    #[serde(flatten)]
    pub stop: StopArgs,

    /// Bounded delay τ in minibatches.
    #[arg(long, value_parser = delay, default_value_t = 1)]
    pub tau: u32,

    /// Scale of the random starting filters: their values have standard deviation INIT/√d, d
    /// being the values per patch.
    #[arg(long, value_parser = positive_number::<f32>, allow_hyphen_values = true,
        default_value_t = 1.0)]
    pub init: f32,

    #[command(flatten)]
    #[serde(flatten)]
    pub checkpoints: CheckpointFlags,
}

/// Arguments of the `rica` job: the run's settings, the smoothing ε, the seed of the random
/// start, and where worker 0 saves the learned filters.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct RicaArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub settings: RicaSettings,

    /// ε of the smoothed L1 penalty √((Wx)² + ε).
    #[arg(long, value_parser = positive_number::<f32>, allow_hyphen_values = true,
        default_value_t = EPSILON)]
    pub epsilon: f32,

    /// Seed of the random start W₀ (every worker must agree).
    #[arg(long, default_value_t = SEED)]
    pub seed: u64,

    /// Where worker 0 writes the learned filters W = W₀ + Δ, one per line.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

impl RicaArgs {
    /// What the command line cannot check on its own.
    pub fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// Objective summed over `batch` at W (k × d, row-major), and its gradient divided by the batch
/// size into `grad`.
pub fn objective_and_gradient(
    w: &[f32],
    k: usize,
    batch: &[&[f32]],
    lambda: f32,
    epsilon: f32,
    grad: &mut [f32],
) -> f64 {
    let d = w.len() / k;
    grad.fill(0.0);
    let (mut z, mut r, mut wr) = (vec![0f32; k], vec![0f32; d], vec![0f32; k]);
    let mut total = 0.0f64;
    let scale = 1.0 / batch.len().max(1) as f32;
    for x in batch {
        for j in 0..k {
            z[j] = (0..d).map(|i| w[j * d + i] * x[i]).sum();
        }
        r.copy_from_slice(x);
        r.iter_mut().for_each(|v| *v = -*v);
        for j in 0..k {
            for i in 0..d {
                r[i] += w[j * d + i] * z[j];
            }
        }
        for j in 0..k {
            wr[j] = (0..d).map(|i| w[j * d + i] * r[i]).sum();
        }
        let sparse: f64 = z.iter().map(|&v| f64::from((v * v + epsilon).sqrt())).sum();
        let recon: f64 = r.iter().map(|&v| f64::from(v * v)).sum();
        total += f64::from(lambda) * sparse + 0.5 * recon;
        // ∇ = λ (z/√(z²+ε)) xᵀ + (W r) xᵀ + z rᵀ
        for j in 0..k {
            let a = (lambda * z[j] / (z[j] * z[j] + epsilon).sqrt() + wr[j]) * scale;
            let b = z[j] * scale;
            for i in 0..d {
                grad[j * d + i] += a * x[i] + b * r[i];
            }
        }
    }
    total
}

/// Runs the job in this worker process.
pub fn run(cfg: &WorkerConfig, args: &RicaArgs) -> Result<()> {
    args.validate()?;
    let o = &args.settings;
    let w = Worker::connect(cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    let all = patches::read(&o.data)?;
    ensure!(!all.is_empty(), "{}: no patches", o.data.display());
    let d = all[0].len();
    let mine: Vec<&[f32]> = all
        .iter()
        .skip(rank)
        .step_by(workers)
        .map(Vec::as_slice)
        .collect();
    let k = o.filters;
    let mut rng = Rng::new(args.seed);
    let w0: Vec<f32> = (0..k * d)
        .map(|_| (rng.normal() * f64::from(o.init) / (d as f64).sqrt()) as f32)
        .collect();
    let stride = u64::MAX / k as u64;
    let keys: Vec<u64> = (0..k as u64).map(|j| j * stride).collect();
    let table = w.declare_table(
        TableSpec::new("rica.delta", d as u32)
            .rule(Rule::AdaGrad {
                lr: o.lr,
                eps: 1e-8,
            })
            .consistency(Consistency::BoundedDelay(o.tau)),
    )?;
    let stats = w.declare_table(TableSpec::new("rica.stats", 1))?;
    let mut checkpoints = Checkpoints::declare(&w, "rica", &o.checkpoints)?;
    let first = checkpoints.resumed(&w)?;
    if rank == 0 {
        println!(
            "rica: {} patches of {d} values, {k} filters, {workers} workers, λ = {}, AdaGrad lr {}, τ = {}",
            all.len(),
            o.lambda,
            o.lr,
            o.tau
        );
    }
    let mut stopper = Stopper::new(&o.stop, Measure::RelativeDecrease);
    let started = Instant::now();
    let (mut delta, mut weights, mut grad) =
        (vec![0f32; k * d], vec![0f32; k * d], vec![0f32; k * d]);
    if rank == 0 && first > 0 {
        println!("rica: resuming after epoch {first}");
    }
    for epoch in first..o.epochs {
        let mut sum = 0.0f64;
        for batch in mine.chunks(o.batch) {
            w.pull_into(table, &keys, &mut delta)?;
            for ((x, a), b) in weights.iter_mut().zip(&w0).zip(&delta) {
                *x = a + b;
            }
            sum += objective_and_gradient(&weights, k, batch, o.lambda, args.epsilon, &mut grad);
            w.push(table, &keys, &grad)?;
            w.clock()?;
        }
        let figures = [sum as f32, mine.len() as f32];
        if let Some(t) = epoch_sums(&w, stats, epoch, &figures, started, &o.stop)? {
            let (e, objective, secs) = (epoch + 1, f64::from(t[0]) / f64::from(t[1]), t[2]);
            let line = format!("epoch {e:>3}  objective per patch {objective:.5}  ({secs:.2} s)");
            if stopper.end_epoch(rank, e, objective, secs, &line) {
                break;
            }
        }
        if checkpoints.after_round(&w, epoch + 1)? && rank == 0 {
            println!("checkpoint after epoch {}", epoch + 1);
        }
    }
    if let (0, Some(path)) = (rank, &args.save) {
        // Every worker's last push is in: they all passed the last epoch's barrier after it.
        w.pull_into(table, &keys, &mut delta)?;
        let filters: Vec<Vec<f32>> = w0
            .chunks(d)
            .zip(delta.chunks(d))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x + y).collect())
            .collect();
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        patches::write(&filters, &mut std::io::BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_a_finite_difference() {
        let mut rng = Rng::new(5);
        let (k, d) = (5, 3);
        let w: Vec<f32> = (0..k * d).map(|_| rng.normal() as f32 * 0.5).collect();
        let xs: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..d).map(|_| rng.normal() as f32).collect())
            .collect();
        let batch: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let mut g = vec![0f32; k * d];
        let mut scratch = g.clone();
        objective_and_gradient(&w, k, &batch, 0.3, 0.1, &mut g);
        for p in 0..k * d {
            let e = 1e-2f32;
            let (mut up, mut down) = (w.clone(), w.clone());
            up[p] += e;
            down[p] -= e;
            let fu = objective_and_gradient(&up, k, &batch, 0.3, 0.1, &mut scratch);
            let fd = objective_and_gradient(&down, k, &batch, 0.3, 0.1, &mut scratch);
            let numeric = (fu - fd) / (2.0 * f64::from(e)) / batch.len() as f64;
            assert!(
                (numeric - f64::from(g[p])).abs() < 2e-2 * (1.0 + numeric.abs()),
                "parameter {p}: {numeric} vs {}",
                g[p]
            );
        }
    }

    #[test]
    fn arguments_round_trip() {
        let to_strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let Ok(crate::jobs::Job::Rica(mut args)) =
            crate::jobs::Job::parse("rica", &to_strings(&["--data", "p.txt"]))
        else {
            panic!("rica parses")
        };
        assert_eq!(
            (args.settings.filters, args.epsilon, args.seed),
            (128, 1e-2, 1)
        );
        args.settings.filters = 32;
        args.settings.init = 0.25;
        args.save = Some("f.txt".into());
        let job = crate::jobs::Job::Rica(args);
        assert_eq!(crate::jobs::Job::parse("rica", &job.args()).unwrap(), job);
        let bad = to_strings(&["--data", "p.txt", "--nope", "1"]);
        assert!(crate::jobs::Job::parse("rica", &bad).is_err());
    }
}
