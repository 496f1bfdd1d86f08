//! `ferrops bench reducers`: the same sparse L1 logistic regression (the `logreg` worker job on
//! generated power-law data) trained on a local cluster once without bandwidth reducers, once
//! with each reducer alone and once with all of them, reporting for each run the bytes every
//! worker sent and received, the wall time and the final objective, relative to the run without.

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::jobs::logreg::{LogRegArgs, Reducers};
use crate::jobs::Job;

/// What to compare.
#[derive(Clone, Debug)]
pub struct ReducersOptions {
    /// Feature-space size (power-law frequencies).
    pub features: u64,
    /// Training examples.
    pub examples: usize,
    /// Passes over the data (the same in every configuration).
    pub epochs: usize,
    /// L1 penalty λ (proximal SGD on the servers).
    pub l1: f32,
    /// Significantly-modified filter threshold θ of the runs that enable it.
    pub theta: f32,
    /// Changed-only pull threshold θ of the runs that enable it.
    pub changed_theta: f32,
    /// KKT filter: skip only when |g| ≤ λ·(1 − margin).
    pub kkt_margin: f32,
    /// KKT filter: push every key every this many batches.
    pub kkt_recheck: u64,
    /// Value codec of the run with all reducers (raw, fp16, bf16, lz4).
    pub values: String,
    /// Also run bf16 and lz4 values alone (fp16 always runs).
    pub every_codec: bool,
    /// Servers of each run's local cluster.
    pub servers: usize,
    /// Workers of each run's local cluster.
    pub workers: usize,
    /// Print one JSON object as the last line.
    pub json: bool,
}

/// One configuration and what it measured.
#[derive(Debug, Serialize)]
struct Run {
    name: &'static str,
    bytes_sent: u64,
    bytes_received: u64,
    seconds: f64,
    objective: f64,
    /// Bytes (sent + received) of the run without reducers divided by this run's.
    reduction: f64,
    /// (objective − objective without reducers) / objective without reducers.
    objective_change: f64,
    details: Value,
}

/// The configurations: none, each reducer alone (values as fp16, and with `--every-codec` also
/// bf16 and lz4), all (with the value codec `--values`).
fn configurations(args: &ReducersOptions) -> Vec<(&'static str, Reducers)> {
    let none = Reducers {
        keys: false,
        values: "raw".into(),
        significant: 0.0,
        kkt: false,
        kkt_margin: args.kkt_margin,
        kkt_recheck: args.kkt_recheck,
        changed: 0.0,
    };
    let with = |f: &dyn Fn(&mut Reducers)| {
        let mut r = none.clone();
        f(&mut r);
        r
    };
    let mut runs = vec![
        ("none", none.clone()),
        ("keys", with(&|r| r.keys = true)),
        ("fp16", with(&|r| r.values = "fp16".into())),
    ];
    if args.every_codec {
        runs.push(("bf16", with(&|r| r.values = "bf16".into())));
        runs.push(("lz4", with(&|r| r.values = "lz4".into())));
    }
    runs.extend([
        ("significant", with(&|r| r.significant = args.theta)),
        ("kkt", with(&|r| r.kkt = true)),
        ("changed", with(&|r| r.changed = args.changed_theta)),
        (
            "all",
            with(&|r| {
                r.keys = true;
                r.values = args.values.clone();
                r.significant = args.theta;
                r.kkt = true;
                r.changed = args.changed_theta;
            }),
        ),
    ]);
    runs
}

/// Runs every configuration and prints the table (and JSON with `--json`).
pub fn run(args: &ReducersOptions) -> Result<()> {
    let exe = std::env::current_exe().context("finding the ferrops executable")?;
    let configurations = configurations(args);
    for (_, r) in &configurations {
        r.value_codec()?;
    }
    println!(
        "sparse logistic regression: {} features (power law), {} examples, {} epochs, λ = {}, \
         {} servers, {} workers",
        args.features, args.examples, args.epochs, args.l1, args.servers, args.workers
    );
    let mut runs: Vec<Run> = Vec::new();
    for (name, reducers) in configurations {
        let options = LogRegArgs {
            features: args.features,
            examples: args.examples,
            epochs: args.epochs,
            lr: 0.5,
            tau: 1,
            l1: args.l1,
            reducers,
            ..LogRegArgs::default()
        };
        let result =
            run_one(&exe, args, &Job::Logreg(options)).with_context(|| format!("run `{name}`"))?;
        let number = |k: &str| result[k].as_f64().unwrap_or(f64::NAN);
        let (sent, received) = (number("bytes_sent") as u64, number("bytes_received") as u64);
        let objective = number("objective");
        let (base_bytes, base_objective) = match runs.first() {
            Some(b) => ((b.bytes_sent + b.bytes_received) as f64, b.objective),
            None => ((sent + received) as f64, objective),
        };
        runs.push(Run {
            name,
            bytes_sent: sent,
            bytes_received: received,
            seconds: number("seconds"),
            objective,
            reduction: base_bytes / (sent + received).max(1) as f64,
            objective_change: (objective - base_objective) / base_objective,
            details: result,
        });
        let r = runs.last().unwrap_or_else(|| unreachable!("just pushed"));
        println!(
            "{:<12} sent {:>9.1} MB  received {:>8.1} MB  {:>6.1}×  {:>6.2} s  objective {:.6} ({:+.3}%)  nnz {}",
            r.name,
            r.bytes_sent as f64 / 1e6,
            r.bytes_received as f64 / 1e6,
            r.reduction,
            r.seconds,
            r.objective,
            100.0 * r.objective_change,
            r.details["nnz"]
        );
    }
    if args.json {
        let report = serde_json::json!({
            "bench": "reducers",
            "features": args.features,
            "examples": args.examples,
            "epochs": args.epochs,
            "l1": args.l1,
            "theta": args.theta,
            "changed_theta": args.changed_theta,
            "kkt_margin": args.kkt_margin,
            "kkt_recheck": args.kkt_recheck,
            "values": args.values,
            "servers": args.servers,
            "workers": args.workers,
            "runs": runs,
        });
        println!("{report}");
    }
    Ok(())
}

/// Trains once on a fresh local cluster and returns the job's `RESULT` object.
fn run_one(exe: &std::path::Path, args: &ReducersOptions, job: &Job) -> Result<Value> {
    let output = Command::new(exe)
        .args(["local", "--no-prefix", "--servers"])
        .arg(args.servers.to_string())
        .arg("--workers")
        .arg(args.workers.to_string())
        .args(["--", "ferrops", "worker", "--job"])
        .arg(job.name())
        .arg("--")
        .args(job.args())
        .env("FERROPS_LOG", "warn")
        .output()
        .context("starting the local cluster")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the job failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("the job printed no RESULT line")?;
    serde_json::from_str(line).context("the RESULT line is not JSON")
}
