//! `ferrops train l1lr` and `ferrops train rica`: start a local cluster (scheduler, servers and
//! worker processes, as `ferrops local` does) running the `l1lr` or `rica` job. For L1-LR, worker
//! 0 writes the trace; when stderr is a terminal the driver follows the trace with a progress
//! bar (worker 0 then stays quiet), otherwise worker 0 prints a plain line per iteration. The
//! driver reads the trace back for the summary and the plot. For RICA, worker 0 saves the filters
//! and the driver draws them as a grid.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plot::{self, LinePlot, Series};
use crate::data::{info, patches, DataWidth, DimBound};
use crate::jobs::l1lr::{self, L1lrArgs, L1lrSettings};
use crate::jobs::rica::{self, RicaArgs, RicaSettings};
use crate::jobs::{positive_count, Job};
use crate::launch::run_job_locally;
use crate::trace::{self, Record};

/// The local cluster a training run starts: how many servers and worker processes, and the
/// checkpoint it starts from. As flags of `ferrops train`, `--servers`, `--workers` and
/// `--restore`.
#[derive(Clone, Debug, Args)]
pub struct ClusterSize {
    /// Servers.
    #[arg(long, value_name = "S", value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,

    /// Worker processes.
    #[arg(long, value_name = "W", value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,

    /// Resume from the checkpoint in DIR (written with `--checkpoint-every`): the tables come
    /// back with their values and rule state, and training goes on from the iteration or epoch
    /// it was taken after. The servers may be more or fewer than when it was written.
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,

    /// Replication factor R: servers holding each key range (1 to S) [default: FERROPS_REPLICATION,
    /// else 1]
    #[arg(long, value_name = "R", value_parser = positive_count)]
    pub replication: Option<usize>,
}

impl ClusterSize {
    /// Starts the cluster, runs `job` on its workers and returns the launcher's exit code.
    pub(crate) fn run(&self, job: &Job) -> Result<i32> {
        let restore = self.restore.as_deref().map(absolute).transpose()?;
        let (name, args) = (job.name(), job.args());
        let replication = self.replication;
        run_job_locally(
            self.servers,
            self.workers,
            replication,
            &name,
            &args,
            restore.as_deref(),
        )
    }
}

/// An L1-LR run on a local cluster: what the `l1lr` job trains, the cluster, and the outputs;
/// the flags of `ferrops train l1lr`.
#[derive(Clone, Debug, Args)]
pub struct L1lrRun {
    /// What the `l1lr` job trains, and how.
    #[command(flatten)]
    pub settings: L1lrSettings,

    /// The local cluster to train on.
    #[command(flatten)]
    pub cluster: ClusterSize,

    /// How wide the data may be; with `--dim` the model has that many weights.
    #[command(flatten)]
    pub width: DataWidth,

    /// Write the trace as JSON lines (time, iteration, objective, nnz, bytes, idle time).
    #[arg(long = "json", value_name = "TRACE.jsonl")]
    pub trace: Option<PathBuf>,

    /// Plot objective against seconds as PNG (axes, tick labels, titles).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

/// A RICA run on a local cluster: what the `rica` job trains, the cluster, and the outputs; the
/// flags of `ferrops train rica`.
#[derive(Clone, Debug, Args)]
pub struct RicaRun {
    /// What the `rica` job trains, and how.
    #[command(flatten)]
    pub settings: RicaSettings,

    /// The local cluster to train on.
    #[command(flatten)]
    pub cluster: ClusterSize,

    /// Save the learned filters, one per line.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,

    /// Draw the learned filters as a grid of tiles (PNG; each filter scaled on its own, zero is
    /// mid grey).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// Pixels per filter value in the grid.
    #[arg(long, value_name = "Z", value_parser = positive_count, default_value_t = 4)]
    pub zoom: usize,
}

/// Trains and returns the trace (the last record is the exact final evaluation). Without
/// `trace`, the trace goes to a temporary file that is removed afterwards.
pub fn l1lr(spec: &L1lrRun) -> Result<Vec<Record>> {
    let settings = &spec.settings;
    // With --dim the workers need nothing from a scan of the whole file, so none is made: the
    // workers' own parse of their parts is the only pass over the data.
    let (dim, data_nnz) = match spec.width.bound() {
        DimBound::Dim(d) => {
            let path = &settings.data;
            let size = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            if size == 0 {
                bail!("{}: no training rows", path.display());
            }
            println!(
                "data: {} ({size} bytes), {d} features by --dim",
                path.display()
            );
            (d, None)
        }
        bound @ DimBound::Max(_) => {
            let summary = info::summarize(&settings.data, bound)?;
            if summary.rows == 0 || summary.dim == 0 {
                bail!("{}: no training rows", settings.data.display());
            }
            println!(
                "data: {} rows, {} features, {} nonzeros ({} positive)",
                summary.rows, summary.dim, summary.nnz, summary.positives
            );
            (summary.dim, Some(summary.nnz as f64))
        }
    };
    let temporary = spec.trace.is_none();
    let trace_path = match &spec.trace {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("ferrops-l1lr-{}.jsonl", std::process::id())),
    };
    let trace_path = absolute(&trace_path)?;
    let bar = std::io::stderr().is_terminal();
    let job = Job::L1lr(L1lrArgs {
        settings: L1lrSettings {
            data: absolute(&settings.data)?,
            ..settings.clone()
        },
        dim: dim as usize,
        trace: Some(trace_path.clone()),
        lines: !bar,
    });
    // A trace left by an earlier run must not feed the progress bar.
    let _ = std::fs::remove_file(&trace_path);
    let follower = bar.then(|| Follower::start(&trace_path, settings.iters, data_nnz));
    // A dedicated applier is one more worker process, beside the `--workers` that hold data.
    let cluster = ClusterSize {
        workers: spec.cluster.workers + usize::from(settings.applier),
        ..spec.cluster.clone()
    };
    let code = cluster.run(&job);
    if let Some(f) = follower {
        f.stop();
    }
    let code = code?;
    let records = trace::read(&trace_path)
        .with_context(|| format!("reading the trace {}", trace_path.display()));
    if temporary {
        let _ = std::fs::remove_file(&trace_path);
    }
    if code != 0 {
        bail!("the training job failed with exit code {code}");
    }
    let records = records?;
    if bar {
        if let Some(last) = records.last().filter(|r| r.last) {
            if let Some(why) = &last.stopped {
                println!("{why}");
            }
            println!("{}", l1lr::final_line(last, dim as usize));
        }
    }
    if settings.kkt && bar {
        // Without the bar worker 0 has printed its own, more detailed, KKT line.
        if let Some(last) = records.last() {
            println!(
                "kkt: {:.0} of {:.0} gradient coordinates skipped by the workers ({:.1}%)",
                last.kkt_skipped,
                last.kkt_offered,
                100.0 * last.kkt_skipped / last.kkt_offered.max(1.0)
            );
        }
    }
    if let Some(png) = &spec.plot {
        let label = format!("τ = {}", settings.tau);
        plot_objective(png, &[(label, records.clone())])?;
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

/// Follows the trace worker 0 writes and draws a progress bar on stderr: iterations, objective,
/// nonzero weights and, when the data's nonzeros are known, throughput (data nonzeros
/// processed per second).
struct Follower {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Follower {
    fn start(trace: &Path, iters: usize, data_nnz: Option<f64>) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, trace) = (stop.clone(), trace.to_path_buf());
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::with_draw_target(
                Some(iters as u64),
                ProgressDrawTarget::stderr_with_hz(5),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {bar:20} {pos}/{len}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("loading data");
            bar.enable_steady_tick(Duration::from_millis(200));
            let mut seen = 0;
            loop {
                let done = flag.load(Ordering::Acquire);
                // Partial lines while worker 0 writes are fine: the next poll reads them whole.
                if let Ok(records) = trace::read(&trace) {
                    if let Some(r) = records.iter().rfind(|r| !r.last) {
                        if records.len() != seen {
                            seen = records.len();
                            bar.set_position(r.iteration as u64);
                            let rate = data_nnz.map_or(String::new(), |n| {
                                let per_second = n * r.iteration as f64 / r.time.max(1e-9);
                                format!("  {:.1} M nnz/s", per_second / 1e6)
                            });
                            bar.set_message(format!(
                                "objective {:.4e}  nnz {}{rate}",
                                r.objective, r.nnz
                            ));
                        }
                    }
                }
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish();
            eprintln!(); // the summary starts on a line of its own
        });
        Follower { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Plots objective against time, one series per `(label, trace)` (per-iteration records only);
/// the legend is drawn when there are several.
pub fn plot_objective(png: &Path, traces: &[(String, Vec<Record>)]) -> Result<()> {
    let mut p = LinePlot::new("L1-regularised logistic regression", "seconds", "objective");
    p.series = traces
        .iter()
        .map(|(label, t)| Series {
            label: label.clone(),
            points: t
                .iter()
                .filter(|r| !r.last)
                .map(|r| (r.time, r.objective))
                .collect(),
        })
        .collect();
    Ok(p.write_or_warn(png)?)
}

/// `ferrops plot --idle-against-tau`: each trace's final idle fraction (percent of worker
/// time) against its τ, one line per folder of traces, named after the folder, in τ order.
pub fn plot_idle_against_tau(png: &Path, traces: &[(PathBuf, Vec<Record>)]) -> Result<()> {
    let mut lines: Vec<Series> = Vec::new();
    for (path, t) in traces {
        let last = t.iter().rev().find(|r| r.last).with_context(|| {
            format!(
                "{} has no final record: did its run finish?",
                path.display()
            )
        })?;
        let tau = last.tau.with_context(|| {
            format!(
                "{} does not record τ (an older trace): run it again to plot it against τ",
                path.display()
            )
        })?;
        let folder = absolute(path)?
            .parent()
            .and_then(|d| d.file_name())
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
        let point = (f64::from(tau), 100.0 * last.idle_fraction);
        match lines.iter_mut().find(|s| s.label == folder) {
            Some(line) => line.points.push(point),
            None => lines.push(Series {
                label: folder,
                points: vec![point],
            }),
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut p = LinePlot::new(
        "Worker idle time against the bounded delay",
        "τ",
        "idle (% of worker time)",
    );
    p.series = lines;
    Ok(p.write_or_warn(png)?)
}

pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// `ferrops train rica`: runs the `rica` job on a local cluster; worker 0 prints the objective
/// per epoch and saves the filters, which are drawn as a grid with `--plot`.
pub fn rica(args: &RicaRun) -> Result<()> {
    let temporary = args.save.is_none() && args.plot.is_some();
    let save = match (&args.save, &args.plot) {
        (Some(p), _) => Some(absolute(p)?),
        (None, Some(_)) => {
            Some(std::env::temp_dir().join(format!("ferrops-rica-{}.txt", std::process::id())))
        }
        (None, None) => None,
    };
    let job = Job::Rica(RicaArgs {
        settings: RicaSettings {
            data: absolute(&args.settings.data)?,
            ..args.settings.clone()
        },
        epsilon: rica::EPSILON,
        seed: rica::SEED,
        save: save.clone(),
    });
    let code = args.cluster.run(&job)?;
    let filters = save.as_ref().map(|p| {
        let f = patches::read(p);
        if temporary {
            let _ = std::fs::remove_file(p);
        }
        f
    });
    if code != 0 {
        bail!("the training job failed with exit code {code}");
    }
    if let (Some(png), Some(filters)) = (&args.plot, filters) {
        let filters = filters?;
        let d = filters.first().map_or(0, Vec::len);
        let side = (d as f64).sqrt().round() as usize;
        if side * side != d {
            bail!("filters of {d} values are not square patches: cannot draw them");
        }
        // Patches have their mean removed, so a filter's constant (DC) part never meets the
        // data and never changes from its random start: drawing it would only shade tiles.
        let filters: Vec<Vec<f32>> = filters
            .into_iter()
            .map(|f| {
                let mean = f.iter().sum::<f32>() / f.len().max(1) as f32;
                let rest: Vec<f32> = f.iter().map(|v| v - mean).collect();
                // A filter that is (almost) only its constant part leaves rounding error, which
                // scaled to full contrast would draw as a solid tile: draw it as zero instead.
                let peak = |x: &[f32]| x.iter().fold(0f32, |m, v| m.max(v.abs()));
                if peak(&rest) <= 1e-4 * peak(&f) {
                    vec![0.0; rest.len()]
                } else {
                    rest
                }
            })
            .collect();
        let (w, h) = plot::filter_grid(png, &filters, side, args.zoom)
            .with_context(|| format!("drawing {}", png.display()))?;
        println!(
            "plot: {} ({} filters of {side}×{side}, {w}×{h} pixels)",
            png.display(),
            filters.len()
        );
    }
    Ok(())
}
