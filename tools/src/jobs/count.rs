//! Worker job `count`: exactly-once under failures. Every worker pushes 1 to every key, one
//! push after the other, `--pushes` times, and counts the pushes acknowledged; at the end every
//! key must hold exactly the number of acknowledged pushes of all workers — nothing lost,
//! nothing applied twice — whatever servers died meanwhile (with replication covering them).

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};
use serde::Serialize;

use super::positive_count;

/// Arguments of the `count` job.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct CountArgs {
    /// Pushes per worker, each waited for before the next.
    #[arg(long, value_parser = positive_count, default_value_t = 2000)]
    pub pushes: usize,
    /// Keys of each push (spread over the key space, so every range gets some).
    #[arg(long, value_parser = positive_count, default_value_t = 1000)]
    pub keys: usize,
    /// Push with `push_async` and `wait` (one outstanding at a time) instead of `push`.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Keep this many pushes outstanding (`push_async`, implies `--async`) and wait them
    /// newest first, out of the order they were issued.
    #[arg(long, value_parser = positive_count, default_value_t = 1)]
    pub in_flight: usize,
    /// Sequential consistency: before each push, pull the keys (a pull at clock c waits until
    /// every worker finished clock c − 1, parked on the servers meanwhile) and check they hold
    /// every push of the clocks before; after it, finish the clock.
    #[arg(long)]
    pub sequential: bool,
}

/// Runs the job; fails on the first sum that is not what was acknowledged.
pub fn run(cfg: &WorkerConfig, args: &CountArgs) -> Result<()> {
    ensure!(
        !(args.sequential && args.in_flight > 1),
        "count: --sequential checks every push before the next; it takes no --in-flight"
    );
    let w = Worker::connect(cfg)?;
    let mut spec = TableSpec::new("count", 1);
    if args.sequential {
        spec = spec.consistency(Consistency::Sequential);
    }
    let t = w.declare_table(spec)?;
    let n = w.num_workers() as f32;
    let step = u64::MAX / args.keys as u64;
    let keys: Vec<u64> = (0..args.keys as u64).map(|i| i * step).collect();
    let ones = vec![1.0f32; keys.len()];
    let mut longest = 0f64;
    let mut last = Instant::now();
    let (mut tickets, mut acknowledged) = (Vec::new(), 0);
    println!(
        "count: worker {} starts pushing {} keys at a time",
        w.rank(),
        keys.len()
    );
    for i in 1..=args.pushes {
        if args.sequential {
            // Clock i − 1: every worker's first i − 1 pushes, and none of their i + 1-th.
            let (lo, hi) = ((i - 1) as f32 * n, i as f32 * n - 1.0);
            let got = w.pull(t, &keys)?;
            if let Some(bad) = got.iter().find(|v| !(lo..=hi).contains(*v)) {
                bail!(
                    "worker {}: pull at clock {} saw {bad}, expected within [{lo}, {hi}]",
                    w.rank(),
                    i - 1
                );
            }
        }
        if args.in_flight > 1 {
            tickets.push(w.push_async(t, &keys, &ones)?);
            if tickets.len() < args.in_flight && i < args.pushes {
                continue;
            }
            // Newest first: a failover meanwhile makes the worker resend them in this order.
            while let Some(ticket) = tickets.pop() {
                w.wait(ticket)?;
            }
        } else if args.asynchronous {
            let ticket = w.push_async(t, &keys, &ones)?;
            w.wait(ticket)?;
        } else {
            w.push(t, &keys, &ones)?;
        }
        if args.sequential {
            w.clock()?;
        }
        let now = Instant::now();
        longest = longest.max((now - last).as_secs_f64());
        last = now;
        if i / 100 > acknowledged / 100 {
            println!(
                "count: worker {} has {} pushes acknowledged",
                w.rank(),
                i / 100 * 100
            );
        }
        acknowledged = i;
    }
    w.barrier()?;
    let total = w.pull(t, &keys)?;
    let expected = (args.pushes * w.num_workers()) as f32;
    let wrong = total.iter().filter(|&&v| v != expected).count();
    ensure!(
        wrong == 0,
        "worker {}: {wrong} of {} keys do not hold the {expected} pushes acknowledged (first: {:?})",
        w.rank(),
        keys.len(),
        total.iter().find(|&&v| v != expected)
    );
    println!(
        "count passed: worker {} saw {expected} on all {} keys; longest push {:.0} ms",
        w.rank(),
        keys.len(),
        longest * 1e3
    );
    w.finish()?;
    Ok(())
}
