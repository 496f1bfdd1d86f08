//! Built-in worker jobs, run by `ferrops worker --job NAME [-- ARGS]` (usually under
//! `ferrops local`): `logreg` trains sparse logistic regression on generated data (the demo's
//! workload), `check` verifies push/pull sums and sequential consistency across processes.

use anyhow::{bail, ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};
use ferrops_kernels::Rule;

use crate::synth::{self, Example, SynthSpec};

/// Runs job `name`.
pub fn run(name: &str, cfg: &WorkerConfig, args: &[String]) -> Result<()> {
    match name {
        "logreg" => logreg(cfg, &LogRegOptions::parse(args)?),
        "check" => check(cfg),
        other => bail!("unknown worker job `{other}` (known: logreg, check)"),
    }
}

/// Options of the `logreg` job.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRegOptions {
    pub features: u64,
    pub examples: usize,
    pub epochs: usize,
    pub batch: usize,
    pub tau: u32,
    pub lr: f32,
    pub seed: u64,
}

impl Default for LogRegOptions {
    fn default() -> Self {
        LogRegOptions {
            features: 100_000,
            examples: 200_000,
            epochs: 10,
            batch: 1000,
            tau: 2,
            lr: 0.1,
            seed: 1,
        }
    }
}

impl LogRegOptions {
    /// Parses `--name value` pairs; unknown names and bad values are errors.
    pub fn parse(args: &[String]) -> Result<LogRegOptions> {
        let mut o = LogRegOptions::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let bad = || format!("bad value `{value}` for {flag}");
            match flag.as_str() {
                "--features" => o.features = value.parse().with_context(bad)?,
                "--examples" => o.examples = value.parse().with_context(bad)?,
                "--epochs" => o.epochs = value.parse().with_context(bad)?,
                "--batch" => o.batch = value.parse().with_context(bad)?,
                "--tau" => o.tau = value.parse().with_context(bad)?,
                "--lr" => o.lr = value.parse().with_context(bad)?,
                "--seed" => o.seed = value.parse().with_context(bad)?,
                _ => bail!("unknown logreg option {flag}"),
            }
        }
        ensure!(
            o.features > 0 && o.examples > 0 && o.batch > 0,
            "sizes must be positive"
        );
        Ok(o)
    }

    /// The options as arguments for `parse` (to hand to worker processes).
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--features", self.features.to_string()),
            ("--examples", self.examples.to_string()),
            ("--epochs", self.epochs.to_string()),
            ("--batch", self.batch.to_string()),
            ("--tau", self.tau.to_string()),
            ("--lr", self.lr.to_string()),
            ("--seed", self.seed.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }
}

/// Loss, correct predictions and examples seen in one pass.
#[derive(Default, Clone, Copy, Debug)]
struct PassStats {
    loss: f64,
    correct: f64,
    seen: f64,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The sorted, unique features of a batch.
fn batch_keys(batch: &[Example]) -> Vec<u64> {
    let mut keys: Vec<u64> = batch
        .iter()
        .flat_map(|e| e.features.iter().copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Logistic loss and its gradient for one batch at `weights` (indexed like `keys`).
fn batch_gradient(batch: &[Example], keys: &[u64], weights: &[f32], grad: &mut [f32]) -> PassStats {
    grad.fill(0.0);
    let mut stats = PassStats::default();
    let scale = 1.0 / batch.len() as f32;
    let mut idx = Vec::new();
    for ex in batch {
        idx.clear();
        idx.extend(
            ex.features
                .iter()
                .map(|f| keys.binary_search(f).unwrap_or(0)),
        );
        let margin: f32 = idx.iter().map(|&i| weights[i]).sum();
        let y = ex.label;
        stats.loss += f64::from((1.0 + (-y * margin).exp()).ln());
        stats.correct += f64::from(u8::from(margin * y > 0.0));
        stats.seen += 1.0;
        // d/dm log(1 + exp(-y m)) = -y σ(-y m)
        let g = -y * sigmoid(-y * margin) * scale;
        for &i in &idx {
            grad[i] += g;
        }
    }
    stats
}

/// Trains logistic regression by minibatch AdaGrad through the servers; one clock per batch,
/// bounded delay τ between workers. Rank 0 prints the cluster-wide loss after every epoch.
pub fn logreg(cfg: &WorkerConfig, o: &LogRegOptions) -> Result<()> {
    let w = Worker::connect(cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    let spec = SynthSpec {
        features: o.features,
        examples: o.examples,
        nnz_per_example: 20,
        density: 0.1,
        seed: o.seed,
    };
    let data = synth::shard(&spec, rank, workers);
    let weights = w.declare_table(
        TableSpec::new("logreg.weights", 1)
            .rule(Rule::AdaGrad {
                lr: o.lr,
                eps: 1e-6,
            })
            .consistency(Consistency::BoundedDelay(o.tau)),
    )?;
    let progress = w.declare_table(TableSpec::new("logreg.progress", 1))?;
    if rank == 0 {
        println!(
            "logreg: {} examples × {} features over {} workers, batch {}, τ = {}, AdaGrad lr {}",
            o.examples, o.features, workers, o.batch, o.tau, o.lr
        );
    }
    let started = std::time::Instant::now();
    let mut grad = Vec::new();
    let mut values = Vec::new();
    for epoch in 0..o.epochs {
        let mut stats = PassStats::default();
        for batch in data.chunks(o.batch) {
            let keys = batch_keys(batch);
            values.resize(keys.len(), 0.0);
            w.pull_into(weights, &keys, &mut values)?;
            grad.resize(keys.len(), 0.0);
            let s = batch_gradient(batch, &keys, &values, &mut grad);
            stats.loss += s.loss;
            stats.correct += s.correct;
            stats.seen += s.seen;
            w.push(weights, &keys, &grad)?;
            w.clock()?;
        }
        let base = epoch as u64 * 3;
        let totals = [stats.loss as f32, stats.correct as f32, stats.seen as f32];
        w.push(progress, &[base, base + 1, base + 2], &totals)?;
        w.barrier()?;
        if rank == 0 {
            let t = w.pull(progress, &[base, base + 1, base + 2])?;
            println!(
                "epoch {:>3}  loss {:.4}  accuracy {:5.1}%  ({:.1} s)",
                epoch + 1,
                t[0] / t[2],
                100.0 * t[1] / t[2],
                started.elapsed().as_secs_f64()
            );
        }
    }
    let m = w.metrics();
    if rank == 0 {
        println!(
            "worker 0 sent {:.1} MB and received {:.1} MB",
            m.bytes_sent() as f64 / 1e6,
            m.bytes_received() as f64 / 1e6
        );
    }
    w.finish()?;
    Ok(())
}

/// Checks, across processes, that pushes are summed exactly and that sequential pulls see
/// every push of the previous clock. Exits with an error on the first mismatch.
pub fn check(cfg: &WorkerConfig) -> Result<()> {
    const CLOCKS: u32 = 4;
    let w = Worker::connect(cfg)?;
    let n = w.num_workers() as f32;
    let t = w.declare_table(TableSpec::new("check", 2).consistency(Consistency::Sequential))?;
    let keys: Vec<u64> = (0..2000u64).map(|i| i * (u64::MAX / 2000)).collect();
    let ones = vec![1.0f32; keys.len() * 2];
    for clock in 0..CLOCKS {
        let got = w.pull(t, &keys)?;
        let (lo, hi) = (clock as f32 * n, (clock + 1) as f32 * n - 1.0);
        if let Some(bad) = got.iter().find(|v| !(lo..=hi).contains(*v)) {
            bail!(
                "worker {}: pull at clock {clock} saw {bad}, expected within [{lo}, {hi}]",
                w.rank()
            );
        }
        w.push(t, &keys, &ones)?;
        w.clock()?;
    }
    w.barrier()?;
    let total = w.pull(t, &keys)?;
    let expected = CLOCKS as f32 * n;
    ensure!(
        total.iter().all(|&v| v == expected),
        "worker {}: final sum {:?}, expected {expected}",
        w.rank(),
        &total[..4]
    );
    println!(
        "check passed: worker {} saw {expected} on all {} keys",
        w.rank(),
        keys.len()
    );
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logreg_options_round_trip_and_reject_unknown_flags() {
        let o = LogRegOptions {
            epochs: 3,
            tau: 0,
            ..LogRegOptions::default()
        };
        assert_eq!(LogRegOptions::parse(&o.to_args()).unwrap(), o);
        assert!(LogRegOptions::parse(&["--bogus".into(), "1".into()]).is_err());
        assert!(LogRegOptions::parse(&["--epochs".into(), "x".into()]).is_err());
    }

    #[test]
    fn gradient_matches_a_finite_difference() {
        let batch = vec![
            Example {
                features: vec![1, 5],
                label: 1.0,
            },
            Example {
                features: vec![5, 9],
                label: -1.0,
            },
        ];
        let keys = batch_keys(&batch);
        assert_eq!(keys, vec![1, 5, 9]);
        let w = vec![0.3f32, -0.2, 0.5];
        let mut g = vec![0.0; 3];
        let base = batch_gradient(&batch, &keys, &w, &mut g).loss;
        for i in 0..3 {
            let mut w2 = w.clone();
            w2[i] += 1e-3;
            let mut scratch = vec![0.0; 3];
            let up = batch_gradient(&batch, &keys, &w2, &mut scratch).loss;
            let numeric = (up - base) / 1e-3 / batch.len() as f64;
            assert!(
                (numeric - f64::from(g[i])).abs() < 1e-3,
                "coordinate {i}: {numeric} vs {}",
                g[i]
            );
        }
    }
}
