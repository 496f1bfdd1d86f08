//! `ferrops demo`: generates a sparse binary classification set (in a temporary directory),
//! trains L1-regularised logistic regression on it by delayed block proximal gradient on a
//! local cluster (scheduler, servers and workers as separate processes) until the KKT violation
//! falls below `--tol` relative to the first iteration's (or `--epochs` or `--max-seconds` run
//! out), and prints the objective falling, why it stopped, the final objective, sparsity and
//! accuracy, and writes the plot.

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::apps::train::{self, ClusterSize, L1lrRun};
use crate::data::gen::{self, GenSpec};
use crate::data::DataWidth;
use crate::jobs::l1lr::{L1lrSettings, Step};
use crate::jobs::stop::StopArgs;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Servers in the demo cluster.
    pub servers: usize,
    /// Workers in the demo cluster.
    pub workers: usize,
    /// Replication factor (servers holding each key range).
    pub replication: usize,
    /// Iterations (passes over all feature blocks) at most.
    pub epochs: usize,
    /// When to stop earlier (`--tol`, `--max-seconds`).
    pub stop: StopArgs,
    /// Feature-space size (number of model weights).
    pub features: u64,
    /// Synthetic training examples (rows).
    pub examples: usize,
    /// Seed of the synthetic data set (random when `None`).
    pub seed: Option<u64>,
    /// L1 penalty λ.
    pub lambda: f32,
    /// Maximal delay τ in blocks.
    pub tau: u32,
    /// Where to write the plot of objective against seconds.
    pub plot: std::path::PathBuf,
}

/// Runs the demo; fails if any process of the job fails.
pub fn run(args: &DemoOptions) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "ferrops demo: L1-regularised logistic regression by delayed block proximal gradient\n\
         {} servers (replication {}) and {} workers on loopback, λ = {}, τ = {}, data seed {seed}",
        args.servers, args.replication, args.workers, args.lambda, args.tau
    );
    let dir = std::env::temp_dir().join(format!("ferrops-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(args, seed, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(args: &DemoOptions, seed: u64, dir: &std::path::Path) -> Result<()> {
    let data = dir.join("train.svm");
    let started = Instant::now();
    let spec = GenSpec {
        rows: args.examples as u64,
        features: args.features,
        nnz_per_row: 20,
        seed,
    };
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&data)?);
    let nnz = gen::write(&spec, &mut out).context("writing the demo data")?;
    drop(out);
    println!(
        "generated {} rows × {} features, {} nonzeros in {:.2} s",
        args.examples,
        args.features,
        nnz,
        started.elapsed().as_secs_f64()
    );
    let records = train::l1lr(&L1lrRun {
        settings: L1lrSettings {
            data,
            lambda: args.lambda,
            tau: args.tau,
            blocks: 8,
            iters: args.epochs,
            delta: 1.0,
            window: None,
            kkt: false,
            step: Step::Auto,
            straggler: None,
            applier: false,
            stop: args.stop.clone(),
            checkpoints: Default::default(),
        },
        cluster: ClusterSize {
            servers: args.servers,
            workers: args.workers,
            restore: None,
            replication: Some(args.replication),
        },
        // The generator writes indices 1..=features.
        width: DataWidth::exactly(args.features + 1),
        trace: None,
        plot: Some(args.plot.clone()),
    })?;
    let last = records.last().context("the job wrote no trace")?;
    // Why training stopped early is printed with the final line (by worker 0, or by the
    // driver under a progress bar); running out of iterations is said here.
    if last.stopped.is_none() {
        println!(
            "stopped: all {} iterations run (--epochs) before the stopping rule fired",
            args.epochs
        );
    }
    println!(
        "\nresult: objective {:.6e}, {} of {} weights nonzero (sparsity {:.2}%), training accuracy {:.2}%, {:.2} s of training",
        last.objective,
        last.nnz,
        args.features,
        100.0 * last.nnz as f64 / args.features as f64,
        100.0 * last.accuracy,
        last.time
    );
    Ok(())
}
