//! Worker job `logreg`: sparse logistic regression on generated power-law data (the workload
//! of `bench reducers`), trained by minibatch AdaGrad or, with an L1 penalty, proximal SGD,
//! with any mix of the bandwidth reducers.
//!
//! `--tol` and `--max-seconds` are checked after each epoch's barrier, as in `rica`: every
//! worker pulls the same summed figures (the epoch's loss and example count, worker 0's
//! seconds) and decides from them with the same [`Stopper`], so all leave after the same epoch.
//! The measure is the relative decrease of the epoch's mean training loss (summed over the
//! minibatches as they were trained; without the L1 term, which only the whole model gives).

use anyhow::{bail, ensure, Context, Result};
use clap::ArgAction;
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::filter::{KktFilter, SigFilter};
use ferrops_engine::{Consistency, TableSpec, Worker};
use ferrops_kernels::Rule;
use ferrops_net::codec::ValueCodec;
use serde::Serialize;

use super::stop::{epoch_sums, Measure, StopArgs, Stopper};
use super::{delay, fraction, non_negative_number, positive_count, positive_number};
use crate::synth::{self, Example, SynthSpec};

/// Arguments of the `logreg` job.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct LogRegArgs {
    /// Feature-space size (power-law frequencies).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 100_000)]
    pub features: u64,
    /// Training examples, dealt to the workers.
    #[arg(long, value_parser = positive_count, default_value_t = 200_000)]
    pub examples: usize,
    /// Passes over the data; at most this many with `--tol` or `--max-seconds`.
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub epochs: usize,
    /// When to stop before `--epochs`: the relative decrease of the epoch's mean loss below
    /// `--tol`, or `--max-seconds` of training.
    #[command(flatten)]
    #[serde(flatten)]
    pub stop: StopArgs,
    /// Examples per minibatch (one clock each).
    #[arg(long, value_parser = positive_count, default_value_t = 1000)]
    pub batch: usize,
    /// Bounded delay τ in minibatches.
    #[arg(long, value_parser = delay, default_value_t = 2)]
    pub tau: u32,
    /// Learning rate.
    #[arg(long, value_parser = positive_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.1)]
    pub lr: f32,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// L1 penalty λ: with λ > 0 the servers apply proximal SGD (`prox_l1`) instead of AdaGrad.
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.0)]
    pub l1: f32,
    /// Bandwidth reducers (see [`Reducers`]).
    #[command(flatten)]
    #[serde(flatten)]
    pub reducers: Reducers,
}

/// Which bandwidth reducers a training run uses.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct Reducers {
    /// Key caching and key packing.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub keys: bool,
    /// Value codec name: raw, fp16, bf16 or lz4.
    #[arg(long, default_value = "raw")]
    pub values: String,
    /// Significantly-modified filter threshold θ (0: off).
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.0)]
    pub significant: f32,
    /// KKT filter (L1 only): skip zero weights whose gradient cannot move them.
    #[arg(long, default_value_t = false, action = ArgAction::Set)]
    pub kkt: bool,
    /// KKT safety margin in [0, 1]: skip only when |g| ≤ λ·(1 − margin).
    #[arg(long, value_parser = fraction, allow_hyphen_values = true, default_value_t = 0.1)]
    pub kkt_margin: f32,
    /// KKT recheck period: every this many batches the worker pushes every key.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 8)]
    pub kkt_recheck: u64,
    /// Changed-only pulls with threshold θ (0: off): servers send only rows that moved.
    #[arg(long, value_parser = non_negative_number::<f32>, allow_hyphen_values = true,
        default_value_t = 0.0)]
    pub changed: f32,
}

impl Reducers {
    /// The value codec named by `values`.
    pub fn value_codec(&self) -> Result<ValueCodec> {
        Ok(match self.values.as_str() {
            "raw" => ValueCodec::Raw,
            "fp16" => ValueCodec::Fp16,
            "bf16" => ValueCodec::Bf16,
            "lz4" => ValueCodec::Lz4,
            other => bail!("unknown value codec `{other}` (raw, fp16, bf16, lz4)"),
        })
    }
}

impl Default for LogRegArgs {
    /// The defaults of the command line.
    fn default() -> Self {
        match crate::jobs::Job::parse("logreg", &[]) {
            Ok(crate::jobs::Job::Logreg(args)) => args,
            other => unreachable!("the logreg job's defaults parse: {other:?}"),
        }
    }
}

impl LogRegArgs {
    /// What the command line cannot check on its own.
    pub fn validate(&self) -> Result<()> {
        self.reducers.value_codec()?;
        ensure!(
            !self.reducers.kkt || self.l1 > 0.0,
            "the KKT filter needs an L1 penalty (--l1)"
        );
        Ok(())
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

/// The sorted, unique features of some examples (a batch or a whole shard).
fn feature_keys(examples: &[Example]) -> Vec<u64> {
    let mut keys: Vec<u64> = examples
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

/// Trains logistic regression by minibatch AdaGrad (or, with an L1 penalty, proximal SGD)
/// through the servers; one clock per batch, bounded delay τ between workers. Rank 0 prints the
/// cluster-wide loss after every epoch and, at the end, one `RESULT {json}` line with the final
/// objective, the bytes all workers sent and received, and what the reducers saved.
pub fn run(cfg: &WorkerConfig, o: &LogRegArgs) -> Result<()> {
    o.validate()?;
    let mut cfg = cfg.clone();
    if !o.reducers.keys {
        cfg.cluster.key_cache_keys = 0;
        cfg.cluster.key_packing = false;
    }
    let w = Worker::connect(&cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    let spec = SynthSpec {
        features: o.features,
        examples: o.examples,
        nnz_per_example: 20,
        density: 0.1,
        seed: o.seed,
    };
    let data = synth::shard(&spec, rank, workers);
    let rule = if o.l1 > 0.0 {
        Rule::ProxL1 { lr: o.lr, l1: o.l1 }
    } else {
        Rule::AdaGrad {
            lr: o.lr,
            eps: 1e-6,
        }
    };
    let weights = w.declare_table(
        TableSpec::new("logreg.weights", 1)
            .rule(rule)
            .consistency(Consistency::BoundedDelay(o.tau))
            .value_codec(o.reducers.value_codec()?),
    )?;
    let progress = w.declare_table(TableSpec::new("logreg.progress", 1))?;
    if rank == 0 {
        println!(
            "logreg: {} examples × {} features over {} workers, batch {}, τ = {}, {:?}",
            o.examples, o.features, workers, o.batch, o.tau, rule
        );
    }
    let mut significant = (o.reducers.significant > 0.0)
        .then(|| SigFilter::new(1, o.reducers.significant, 1e-4))
        .transpose()?;
    let mut kkt = o
        .reducers
        .kkt
        .then(|| KktFilter::new(1, o.l1, o.reducers.kkt_margin, o.reducers.kkt_recheck))
        .transpose()?;
    // Each batch's sorted key list, once: every epoch visits the same batches.
    let batches: Vec<(&[Example], Vec<u64>)> =
        data.chunks(o.batch).map(|b| (b, feature_keys(b))).collect();
    // For changed-only pulls, the worker's copy of every weight its data touches, and where each
    // batch's keys sit in it.
    let shard_keys = feature_keys(&data);
    let mut copy = vec![0.0f32; shard_keys.len()];
    let at: Vec<Vec<u32>> = if o.reducers.changed > 0.0 {
        batches
            .iter()
            .map(|(_, keys)| positions_in(&shard_keys, keys))
            .collect()
    } else {
        Vec::new()
    };
    let mut stopper = Stopper::new(&o.stop, Measure::RelativeDecrease);
    let started = std::time::Instant::now();
    let (mut grad, mut values) = (Vec::new(), Vec::new());
    for epoch in 0..o.epochs {
        let mut stats = PassStats::default();
        for (b, (batch, keys)) in batches.iter().enumerate() {
            let (batch, keys) = (*batch, keys.as_slice());
            values.resize(keys.len(), 0.0);
            if o.reducers.changed > 0.0 {
                // Servers send only the rows that moved; the rest come from the copy.
                for (v, &i) in values.iter_mut().zip(&at[b]) {
                    *v = copy[i as usize];
                }
                w.pull_changed_into(weights, keys, &mut values, o.reducers.changed)?;
                for (v, &i) in values.iter().zip(&at[b]) {
                    copy[i as usize] = *v;
                }
            } else {
                w.pull_into(weights, keys, &mut values)?;
            }
            grad.resize(keys.len(), 0.0);
            let s = batch_gradient(batch, keys, &values, &mut grad);
            stats.loss += s.loss;
            stats.correct += s.correct;
            stats.seen += s.seen;
            if kkt.is_none() && significant.is_none() {
                w.push(weights, keys, &grad)?;
            } else {
                let (chosen, send) =
                    filtered_update(keys, &values, &grad, o.l1, &mut kkt, &mut significant)?;
                if o.reducers.keys && !chosen.is_empty() {
                    // The batch's whole list travels (by signature once the servers hold it)
                    // with a bitmap of the chosen keys, so a changing choice keeps the cache.
                    w.push_selected(weights, keys, &chosen, &send)?;
                } else if !chosen.is_empty() {
                    // Without key caching a subset travels as its own, shorter list.
                    let sub: Vec<u64> = chosen.iter().map(|&i| keys[i as usize]).collect();
                    w.push(weights, &sub, &send)?;
                }
            }
            w.clock()?;
        }
        let figures = [stats.loss as f32, stats.correct as f32, stats.seen as f32];
        if let Some(t) = epoch_sums(&w, progress, epoch, &figures, started, &o.stop)? {
            let (e, loss, secs) = (epoch + 1, f64::from(t[0]) / f64::from(t[2]), t[3]);
            let accuracy = 100.0 * t[1] / t[2];
            let line =
                format!("epoch {e:>3}  loss {loss:.4}  accuracy {accuracy:5.1}%  ({secs:.1} s)");
            if stopper.end_epoch(rank, e, loss, secs, &line) {
                break;
            }
        }
    }
    if let Some(f) = significant.as_mut() {
        let (k, mut g) = f.flush();
        if !k.is_empty() {
            if o.l1 > 0.0 {
                // The push applies one shrink itself (see `filtered_update`).
                let at = w.pull(weights, &k)?;
                remove_own_shrink(&mut g, &at, o.l1);
            }
            w.push(weights, &k, &g)?;
        }
    }
    w.barrier()?;
    report_final(
        &w,
        weights,
        progress,
        o,
        &data,
        started.elapsed().as_secs_f64(),
        &mut significant,
        &kkt,
    )?;
    w.finish()?;
    Ok(())
}

/// What a filtered worker pushes for one batch: the indices into `keys` of the rows to send and
/// their values. The KKT filter drops zero weights that the step would leave at zero; the
/// significantly-modified filter holds the rest back until their accumulated change matters.
///
/// With an L1 penalty the servers apply `w ← S(w − lr·g, lr·λ)` once per push, so a round the
/// filter holds back would lose its shrink `lr·λ·sign(w)`: for a nonzero weight the filter
/// therefore accumulates `g + λ·sign(w)` (the round's whole change, in gradient units), and a
/// row it sends carries its accumulation minus the one shrink the server applies. Away from
/// zero, k held-back rounds and one push then move the weight exactly as k + 1 pushes would.
fn filtered_update(
    keys: &[u64],
    weights: &[f32],
    grad: &[f32],
    l1: f32,
    kkt: &mut Option<KktFilter>,
    significant: &mut Option<SigFilter>,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let mut chosen: Vec<u32> = match kkt.as_mut() {
        Some(f) => f.select(keys, weights, grad)?,
        None => (0..keys.len() as u32).collect(),
    };
    let pick = |x: &[f32], at: &[u32]| -> Vec<f32> { at.iter().map(|&i| x[i as usize]).collect() };
    let mut send = pick(grad, &chosen);
    if let Some(f) = significant.as_mut() {
        let at = pick(weights, &chosen);
        if l1 > 0.0 {
            for (u, w) in send.iter_mut().zip(&at) {
                if *w != 0.0 {
                    *u += l1 * w.signum();
                }
            }
        }
        let ks: Vec<u64> = chosen.iter().map(|&i| keys[i as usize]).collect();
        let (sent_keys, mut sent_values) = f.offer(&ks, &send, &at)?;
        chosen = positions_in(keys, &sent_keys);
        if l1 > 0.0 {
            remove_own_shrink(&mut sent_values, &pick(weights, &chosen), l1);
        }
        send = sent_values;
    }
    Ok((chosen, send))
}

/// Takes off accumulated updates the L1 shrink the server's proximal step will apply itself.
fn remove_own_shrink(updates: &mut [f32], weights: &[f32], l1: f32) {
    for (u, w) in updates.iter_mut().zip(weights) {
        if *w != 0.0 {
            *u -= l1 * w.signum();
        }
    }
}

/// The positions in `keys` of `subset` (both ascending; `subset` drawn from `keys`).
fn positions_in(keys: &[u64], subset: &[u64]) -> Vec<u32> {
    let mut at = 0;
    subset
        .iter()
        .filter_map(|k| {
            at += keys[at..].partition_point(|x| x < k);
            (keys.get(at) == Some(k)).then_some(at as u32)
        })
        .collect()
}

/// Every worker adds its shard's final loss and its byte counts into the progress table; rank 0
/// adds the L1 norm of the whole model and prints the `RESULT` line.
#[allow(clippy::too_many_arguments)]
fn report_final(
    w: &Worker,
    weights: ferrops_engine::TableId,
    progress: ferrops_engine::TableId,
    o: &LogRegArgs,
    data: &[Example],
    seconds: f64,
    significant: &mut Option<SigFilter>,
    kkt: &Option<KktFilter>,
) -> Result<()> {
    // Training traffic only: the evaluation below pulls the whole model, the same for every
    // configuration.
    let m = w.metrics();
    let stats = w.reducer_stats();
    let keys = feature_keys(data);
    let model = w.pull(weights, &keys)?;
    let mut scratch = vec![0.0; keys.len()];
    let loss = batch_gradient(data, &keys, &model, &mut scratch).loss;
    let base = 1_000_000_000u64;
    let totals = [
        loss as f32,
        data.len() as f32,
        m.bytes_sent() as f32,
        m.bytes_received() as f32,
    ];
    w.push(progress, &[base, base + 1, base + 2, base + 3], &totals)?;
    w.barrier()?;
    if w.rank() != 0 {
        return Ok(());
    }
    let t = w.pull(progress, &[base, base + 1, base + 2, base + 3])?;
    let mut all: Vec<u64> = (0..o.features).map(synth::feature_key).collect();
    all.sort_unstable();
    let model = w.pull(weights, &all)?;
    let l1_norm: f64 = model.iter().map(|x| f64::from(x.abs())).sum();
    let mean_loss = f64::from(t[0]) / f64::from(t[1]);
    let result = serde_json::json!({
        "objective": mean_loss + f64::from(o.l1) * l1_norm,
        "loss": mean_loss,
        "nnz": model.iter().filter(|x| **x != 0.0).count(),
        "features": o.features,
        "seconds": seconds,
        "bytes_sent": t[2] as u64,
        "bytes_received": t[3] as u64,
        // Rank 0's own counts (bytes above are summed over every worker).
        "rank0_reducers": stats,
        "rank0_significant": significant.as_ref().map(SigFilter::counts),
        "rank0_kkt": kkt.as_ref().map(KktFilter::counts),
    });
    println!("RESULT {result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_a_subset_are_found_in_one_pass() {
        let keys = [2u64, 5, 9, 12, 40];
        assert_eq!(positions_in(&keys, &[5, 12, 40]), vec![1, 3, 4]);
        assert_eq!(positions_in(&keys, &[]), Vec::<u32>::new());
        assert_eq!(positions_in(&keys, &[2]), vec![0]);
    }

    #[test]
    fn rounds_the_significance_filter_holds_back_keep_their_l1_shrink() {
        // One weight far from zero gets the same gradient every round; the filter holds most
        // rounds back, yet the server's weight ends where one proximal step per round puts it.
        let (lr, l1, g) = (0.5f32, 1e-3f32, 0.011f32);
        let prox = |w: f32, g: f32| {
            let z = w - lr * g;
            z.signum() * (z.abs() - lr * l1).max(0.0)
        };
        let (mut every_round, mut server, mut pushes) = (1.0f32, 1.0f32, 0);
        let mut significant = Some(SigFilter::new(1, 0.05, 1e-4).unwrap());
        for _ in 0..10 {
            every_round = prox(every_round, g);
            let (chosen, send) =
                filtered_update(&[7], &[server], &[g], l1, &mut None, &mut significant).unwrap();
            if !chosen.is_empty() {
                server = prox(server, send[0]);
                pushes += 1;
            }
        }
        let (rest, mut values) = significant.as_mut().unwrap().flush();
        if !rest.is_empty() {
            remove_own_shrink(&mut values, &[server], l1);
            server = prox(server, values[0]);
            pushes += 1;
        }
        assert!(pushes <= 3, "the filter held rounds back: {pushes} pushes");
        // Without the correction the server would miss 10 − pushes shrinks of lr·λ = 5e-4.
        assert!(
            (server - every_round).abs() < 1e-5,
            "server {server}, one step per round {every_round}"
        );
    }

    #[test]
    fn logreg_arguments_round_trip_and_reject_unknown_flags() {
        let o = LogRegArgs {
            epochs: 3,
            tau: 0,
            ..LogRegArgs::default()
        };
        let job = crate::jobs::Job::Logreg(o);
        assert_eq!(crate::jobs::Job::parse("logreg", &job.args()).unwrap(), job);
        let run_checks = |a: &[&str]| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            crate::jobs::Job::parse("logreg", &a).and_then(|j| match j {
                crate::jobs::Job::Logreg(o) => o.validate(),
                _ => unreachable!("parsed as logreg"),
            })
        };
        assert!(run_checks(&["--bogus", "1"]).is_err());
        assert!(run_checks(&["--epochs", "x"]).is_err());
        assert!(run_checks(&["--values", "fp8"]).is_err());
        assert!(run_checks(&["--kkt", "true"]).is_err(), "needs --l1");
        assert!(run_checks(&["--kkt", "true", "--l1", "0.1", "--keys", "false"]).is_ok());
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
        let keys = feature_keys(&batch);
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
