//! Worker job `check`: verifies, across processes, that pushes are summed exactly and that
//! sequential pulls see every push of the previous clock.

use anyhow::{bail, ensure, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableSpec, Worker};

/// Checks, across processes, that pushes are summed exactly and that sequential pulls see
/// every push of the previous clock. Exits with an error on the first mismatch.
pub fn run(cfg: &WorkerConfig) -> Result<()> {
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
