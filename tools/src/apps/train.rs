//! `ferrops train l1lr`: starts a local cluster (scheduler, servers and `l1lr` worker processes,
//! as `ferrops local` does), lets worker 0 print its progress lines and write the trace, then
//! reads the trace back for the summary and the plot.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::l1lr::L1lrOptions;
use super::plot;
use super::trace::{self, Record};
use crate::data::info;
use crate::launch::run_job_locally;

/// What to train and where.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    pub data: PathBuf,
    pub lambda: f32,
    pub tau: u32,
    pub servers: usize,
    pub workers: usize,
    pub blocks: usize,
    pub iters: usize,
    pub delta: f32,
    /// Blocks the curvature bound covers (default τ + 1).
    pub window: Option<usize>,
    /// Keep the JSON-lines trace here (otherwise a temporary file is used and removed).
    pub trace: Option<PathBuf>,
    /// Plot objective against time here.
    pub plot: Option<PathBuf>,
}

/// Trains and returns the trace (the last record is the exact final evaluation).
pub fn l1lr(spec: &TrainSpec) -> Result<Vec<Record>> {
    let summary = info::summarize(&spec.data)?;
    if summary.rows == 0 || summary.dim == 0 {
        bail!("{}: no training rows", spec.data.display());
    }
    println!(
        "data: {} rows, {} features, {} nonzeros ({} positive)",
        summary.rows, summary.dim, summary.nnz, summary.positives
    );
    let temporary = spec.trace.is_none();
    let trace_path = match &spec.trace {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("ferrops-l1lr-{}.jsonl", std::process::id())),
    };
    let options = L1lrOptions {
        data: absolute(&spec.data)?,
        dim: summary.dim as usize,
        lambda: spec.lambda,
        tau: spec.tau,
        blocks: spec.blocks,
        iters: spec.iters,
        delta: spec.delta,
        window: spec.window,
        trace: Some(absolute(&trace_path)?),
    };
    let code = run_job_locally(spec.servers, spec.workers, "l1lr", &options.to_args())?;
    let records = trace::read(&trace_path)
        .with_context(|| format!("reading the trace {}", trace_path.display()));
    if temporary {
        let _ = std::fs::remove_file(&trace_path);
    }
    if code != 0 {
        bail!("the training job failed with exit code {code}");
    }
    let records = records?;
    if let Some(png) = &spec.plot {
        plot_objective(png, std::slice::from_ref(&records))?;
        let steps: Vec<&Record> = records.iter().filter(|r| !r.last).collect();
        if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
            println!(
                "plot: {} (objective {:.4e} → {:.4e} against seconds {:.2} → {:.2})",
                png.display(),
                first.objective,
                last.objective,
                first.time,
                last.time
            );
        }
    }
    Ok(records)
}

/// Plots objective against time, one series per trace (per-iteration records only).
pub fn plot_objective(png: &Path, traces: &[Vec<Record>]) -> Result<()> {
    let series: Vec<Vec<(f64, f64)>> = traces
        .iter()
        .map(|t| {
            t.iter()
                .filter(|r| !r.last)
                .map(|r| (r.time, r.objective))
                .collect()
        })
        .collect();
    plot::plot(png, &series, false).with_context(|| format!("writing {}", png.display()))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// `ferrops train rica`: runs the `rica` job on a local cluster; worker 0 prints the objective
/// per epoch.
pub fn rica(args: &crate::cli::RicaArgs) -> Result<()> {
    let options = super::rica::RicaOptions {
        data: absolute(&args.data)?,
        filters: args.filters,
        lambda: args.lambda,
        lr: args.lr,
        batch: args.batch,
        epochs: args.epochs,
        tau: args.tau,
        ..super::rica::RicaOptions::default()
    };
    let code = run_job_locally(args.servers, args.workers, "rica", &options.to_args())?;
    if code != 0 {
        bail!("the training job failed with exit code {code}");
    }
    Ok(())
}
