//! Worker job `check`: verifies, across processes, that pushes are summed exactly and that
//! sequential pulls see every push of the previous clock, and measures the longest wait
//! between two consecutive acknowledged pushes (`max_stall_ms`), so that a fault-tolerance run
//! reports its recovery time itself.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};
use serde::Serialize;

use super::positive_count;

/// The largest clock count: `clocks × workers` must stay an exact f32 integer (2^24), and a
/// job of a million clocks already runs for minutes.
pub const MAX_CLOCKS: usize = 1_000_000;
/// The largest key count: 64 Mi keys of 2 values is 512 MiB per pull on each worker.
pub const MAX_KEYS: usize = 1 << 26;

/// The options of the `check` job.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct CheckArgs {
    /// Clocks to run: each pulls (checking it saw exactly the previous clocks' pushes), pushes
    /// 1 to every key and finishes the clock.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clocks,
        allow_hyphen_values = true)]
    pub clocks: usize,

    /// Keys pushed and pulled every clock, spread evenly over the key space (so over every
    /// server).
    #[arg(long, value_name = "K", default_value_t = 2000, value_parser = keys,
        allow_hyphen_values = true)]
    pub keys: usize,

    /// Write a checkpoint of the table every N clocks (collectively, after the clock's push):
    /// each holds exactly `workers × clock` on every key, which `ferrops faults` checks.
    #[arg(long, value_name = "N", value_parser = positive_count, allow_hyphen_values = true,
        requires = "checkpoint_dir")]
    pub checkpoint_every: Option<usize>,

    /// Where `--checkpoint-every` writes (each checkpoint replaces the one before).
    #[arg(long, value_name = "DIR", requires = "checkpoint_every")]
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

impl Default for CheckArgs {
    fn default() -> CheckArgs {
        CheckArgs {
            clocks: 4,
            keys: 2000,
            checkpoint_every: None,
            checkpoint_dir: None,
        }
    }
}

fn clocks(text: &str) -> Result<usize, String> {
    at_most(positive_count(text)?, MAX_CLOCKS)
}

fn keys(text: &str) -> Result<usize, String> {
    at_most(positive_count(text)?, MAX_KEYS)
}

fn at_most(n: usize, max: usize) -> Result<usize, String> {
    if n > max {
        return Err(format!("must be at most {max}"));
    }
    Ok(n)
}

/// The check's keys: `count` keys spread evenly over the u64 key space.
pub fn spread_keys(count: usize) -> Vec<u64> {
    let step = u64::MAX / count as u64;
    (0..count as u64).map(|i| i * step).collect()
}

/// Checks, across processes, that pushes are summed exactly and that sequential pulls see
/// every push of the previous clock. Exits with an error on the first mismatch.
pub fn run(cfg: &WorkerConfig, args: &CheckArgs) -> Result<()> {
    let w = Worker::connect(cfg)?;
    ensure!(
        (args.clocks as u64) * (w.num_workers() as u64) < 1 << 24,
        "--clocks {} with {} workers: sums past 2^24 are not exact in f32",
        args.clocks,
        w.num_workers()
    );
    let n = w.num_workers() as f32;
    let t = w.declare_table(TableSpec::new("check", 2).consistency(Consistency::Sequential))?;
    let keys = spread_keys(args.keys);
    let ones = vec![1.0f32; keys.len() * 2];
    let mut stall = Stall::default();
    for clock in 0..args.clocks {
        let got = w.pull(t, &keys)?;
        let (lo, hi) = (clock as f32 * n, (clock + 1) as f32 * n - 1.0);
        if let Some(bad) = got.iter().find(|v| !(lo..=hi).contains(*v)) {
            bail!(
                "worker {}: pull at clock {clock} saw {bad}, expected within [{lo}, {hi}]",
                w.rank()
            );
        }
        w.push(t, &keys, &ones)?;
        stall.acked(Instant::now());
        w.clock()?;
        let every = args.checkpoint_every.zip(args.checkpoint_dir.as_ref());
        if let Some((_, dir)) = every.filter(|(every, _)| (clock + 1) % every == 0) {
            w.checkpoint(dir)
                .with_context(|| format!("checkpoint after clock {}", clock + 1))?;
            // A checkpoint holds every push back: not a stall of the pushes.
            stall.paused();
        }
    }
    w.barrier()?;
    let total = w.pull(t, &keys)?;
    let expected = args.clocks as f32 * n;
    ensure!(
        total.iter().all(|&v| v == expected),
        "worker {}: final sum {:?}, expected {expected}",
        w.rank(),
        &total[..total.len().min(4)]
    );
    println!(
        "check passed: worker {} saw {expected} on all {} keys after {} clocks max_stall_ms={:.1}",
        w.rank(),
        keys.len(),
        args.clocks,
        stall.max.as_secs_f64() * 1e3
    );
    w.finish()?;
    Ok(())
}

/// The longest time between two consecutive acknowledged pushes.
#[derive(Default)]
struct Stall {
    last: Option<Instant>,
    max: Duration,
}

impl Stall {
    /// Pushes were held back on purpose (a checkpoint): the next gap does not count.
    fn paused(&mut self) {
        self.last = None;
    }

    fn acked(&mut self, at: Instant) {
        if let Some(last) = self.last {
            self.max = self.max.max(at.duration_since(last));
        }
        self.last = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_is_the_longest_gap_between_acknowledgements() {
        let t0 = Instant::now();
        let mut s = Stall::default();
        s.acked(t0);
        assert_eq!(s.max, Duration::ZERO, "one acknowledgement has no gap");
        s.acked(t0 + Duration::from_millis(5));
        s.acked(t0 + Duration::from_millis(45));
        s.acked(t0 + Duration::from_millis(50));
        assert_eq!(s.max, Duration::from_millis(40));
    }

    #[test]
    fn keys_spread_over_the_key_space_sorted_and_unique() {
        let k = spread_keys(3);
        assert_eq!(k, vec![0, u64::MAX / 3, 2 * (u64::MAX / 3)]);
        assert_eq!(spread_keys(1), vec![0]);
    }
}
