//! Worker job `rica`: reconstruction ICA (Le et al. 2011), an overcomplete filter bank W (k × d)
//! minimising, per whitened patch x, λ Σ_j √((Wx)_j² + ε) + ½‖WᵀWx − x‖². Workers compute
//! minibatch gradients on their patches (patch i goes to worker i mod W) and push them; the
//! servers apply AdaGrad. A rule cannot set initial values, so the servers hold the change Δ
//! from a random start W₀ that every worker generates from the same seed (W = W₀ + Δ).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};
use ferrops_kernels::Rule;

use crate::data::patches;
use crate::synth::Rng;

/// Options of the `rica` job.
#[derive(Clone, Debug, PartialEq)]
pub struct RicaOptions {
    pub data: PathBuf,
    pub filters: usize,
    pub lambda: f32,
    pub epsilon: f32,
    pub lr: f32,
    pub batch: usize,
    pub epochs: usize,
    pub tau: u32,
    pub seed: u64,
    /// Standard deviation of the random start W₀, times √d.
    pub init: f32,
    /// Where worker 0 writes the learned filters W = W₀ + Δ, one per line.
    pub save: Option<PathBuf>,
}

impl Default for RicaOptions {
    fn default() -> Self {
        RicaOptions {
            data: PathBuf::new(),
            filters: 128,
            lambda: 0.1,
            epsilon: 1e-2,
            lr: 0.05,
            batch: 100,
            epochs: 10,
            tau: 1,
            seed: 1,
            init: 1.0,
            save: None,
        }
    }
}

impl RicaOptions {
    /// Parses `--name value` pairs; unknown names and bad values are errors.
    pub fn parse(args: &[String]) -> Result<RicaOptions> {
        let mut o = RicaOptions::default();
        for (flag, value) in crate::job_args::pairs(args)? {
            match flag {
                "--data" => o.data = value.into(),
                "--filters" => o.filters = crate::job_args::value(flag, value)?,
                "--lambda" => o.lambda = crate::job_args::value(flag, value)?,
                "--epsilon" => o.epsilon = crate::job_args::value(flag, value)?,
                "--lr" => o.lr = crate::job_args::value(flag, value)?,
                "--batch" => o.batch = crate::job_args::value(flag, value)?,
                "--epochs" => o.epochs = crate::job_args::value(flag, value)?,
                "--tau" => o.tau = crate::job_args::value(flag, value)?,
                "--seed" => o.seed = crate::job_args::value(flag, value)?,
                "--save" => o.save = Some(value.into()),
                "--init" => o.init = crate::job_args::value(flag, value)?,
                _ => bail!("unknown rica option {flag}"),
            }
        }
        ensure!(!o.data.as_os_str().is_empty(), "--data is required");
        ensure!(o.filters > 0 && o.batch > 0, "sizes must be positive");
        ensure!(o.epsilon > 0.0, "--epsilon must be positive");
        ensure!(o.init > 0.0, "--init must be positive");
        Ok(o)
    }

    /// The options as arguments for [`RicaOptions::parse`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            ("--data", self.data.display().to_string()),
            ("--filters", self.filters.to_string()),
            ("--lambda", self.lambda.to_string()),
            ("--epsilon", self.epsilon.to_string()),
            ("--lr", self.lr.to_string()),
            ("--batch", self.batch.to_string()),
            ("--epochs", self.epochs.to_string()),
            ("--tau", self.tau.to_string()),
            ("--seed", self.seed.to_string()),
            ("--init", self.init.to_string()),
        ];
        if let Some(p) = &self.save {
            args.push(("--save", p.display().to_string()));
        }
        args.into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect()
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
pub fn run(cfg: &WorkerConfig, o: &RicaOptions) -> Result<()> {
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
    let mut rng = Rng::new(o.seed);
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
    if rank == 0 {
        println!(
            "rica: {} patches of {d} values, {k} filters, {workers} workers, λ = {}, AdaGrad lr {}, τ = {}",
            all.len(),
            o.lambda,
            o.lr,
            o.tau
        );
    }
    let started = Instant::now();
    let (mut delta, mut weights, mut grad) =
        (vec![0f32; k * d], vec![0f32; k * d], vec![0f32; k * d]);
    for epoch in 0..o.epochs {
        let mut sum = 0.0f64;
        for batch in mine.chunks(o.batch) {
            w.pull_into(table, &keys, &mut delta)?;
            for ((x, a), b) in weights.iter_mut().zip(&w0).zip(&delta) {
                *x = a + b;
            }
            sum += objective_and_gradient(&weights, k, batch, o.lambda, o.epsilon, &mut grad);
            w.push(table, &keys, &grad)?;
            w.clock()?;
        }
        let base = epoch as u64 * 2;
        w.push(stats, &[base, base + 1], &[sum as f32, mine.len() as f32])?;
        w.barrier()?;
        if rank == 0 {
            let t = w.pull(stats, &[base, base + 1])?;
            println!(
                "epoch {:>3}  objective per patch {:.5}  ({:.2} s)",
                epoch + 1,
                t[0] / t[1],
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let (0, Some(path)) = (rank, &o.save) {
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
    fn options_round_trip() {
        let o = RicaOptions {
            data: "p.txt".into(),
            filters: 32,
            init: 0.25,
            save: Some("f.txt".into()),
            ..RicaOptions::default()
        };
        assert_eq!(RicaOptions::parse(&o.to_args()).unwrap(), o);
        assert!(RicaOptions::parse(&["--nope".into(), "1".into()]).is_err());
    }
}
