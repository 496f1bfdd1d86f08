//! `ferrops bench push-pull --replication R` with R > 1: what synchronous replication costs,
//! measured beside R = 1 in the same run. Rounds alternate R = 1 and R (each a fresh cluster of
//! the same servers and workers, the same keys and iterations), so the drift of a noisy machine
//! falls on both; each round gives both push and pull p50s and their ratio R / 1, and the report
//! gives every round and the ratios' range.

use anyhow::Result;
use serde::Serialize;

use super::floor::LatencyStats;
use super::push_pull::{run_cluster, PushPullOptions};

/// Pairs of runs (R = 1, then R).
const ROUNDS: usize = 3;

/// One run's figures.
#[derive(Debug, Serialize)]
struct Run {
    replication: usize,
    push: LatencyStats,
    pull: LatencyStats,
}

/// One round: R = 1, R, and the ratios of their p50s.
#[derive(Debug, Serialize)]
struct Round {
    base: Run,
    replicated: Run,
    push_p50_ratio: f64,
    pull_p50_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    servers: usize,
    workers: usize,
    keys: u64,
    val_len: usize,
    iters: usize,
    replication: usize,
    replication_mode: String,
    rounds: Vec<Round>,
    /// Lowest and highest ratio R / 1 of the push (pull) p50 over the rounds.
    push_p50_ratio_range: (f64, f64),
    pull_p50_ratio_range: (f64, f64),
}

/// Runs the alternating rounds and prints the report (JSON as the last line with `--json`).
pub fn compare(args: &PushPullOptions) -> Result<()> {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let base = measure(args, 1)?;
        let replicated = measure(args, args.replication)?;
        rounds.push(Round {
            push_p50_ratio: replicated.push.p50_us / base.push.p50_us,
            pull_p50_ratio: replicated.pull.p50_us / base.pull.p50_us,
            base,
            replicated,
        });
    }
    let range = |f: fn(&Round) -> f64| {
        let ratios = rounds.iter().map(f);
        let lo = ratios.clone().fold(f64::INFINITY, f64::min);
        (lo, ratios.fold(0.0, f64::max))
    };
    let report = Report {
        bench: "push-pull-replication",
        servers: args.servers,
        workers: args.workers,
        keys: args.keys,
        val_len: args.val_len,
        iters: args.iters,
        replication: args.replication,
        replication_mode: args.replication_mode.to_string(),
        push_p50_ratio_range: range(|r| r.push_p50_ratio),
        pull_p50_ratio_range: range(|r| r.pull_p50_ratio),
        rounds,
    };
    print_human(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// One run at replication `r`.
fn measure(args: &PushPullOptions, r: usize) -> Result<Run> {
    let mut opts = args.clone();
    opts.replication = r;
    let mut samples = run_cluster(&opts)?;
    Ok(Run {
        replication: r,
        push: LatencyStats::from_samples(&mut samples.push_us),
        pull: LatencyStats::from_samples(&mut samples.pull_us),
    })
}

fn print_human(r: &Report) {
    println!(
        "push-pull, replication {} ({}) beside 1 ({} alternating rounds): {} servers, {} \
         workers, {} keys × {} f32, {} iterations each",
        r.replication,
        r.replication_mode,
        r.rounds.len(),
        r.servers,
        r.workers,
        r.keys,
        r.val_len,
        r.iters
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  round {i}: push p50 {:>10.1} µs (R=1) {:>10.1} µs (R={}) ratio {:.2}×; \
             pull p50 {:>10.1} µs {:>10.1} µs ratio {:.2}×",
            round.base.push.p50_us,
            round.replicated.push.p50_us,
            r.replication,
            round.push_p50_ratio,
            round.base.pull.p50_us,
            round.replicated.pull.p50_us,
            round.pull_p50_ratio
        );
    }
    println!(
        "  R={} / R=1 (p50): push {:.2}–{:.2}×, pull {:.2}–{:.2}×",
        r.replication,
        r.push_p50_ratio_range.0,
        r.push_p50_ratio_range.1,
        r.pull_p50_ratio_range.0,
        r.pull_p50_ratio_range.1
    );
}
