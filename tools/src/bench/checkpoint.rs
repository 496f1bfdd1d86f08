//! `ferrops bench checkpoint`: how fast a table is checkpointed and restored, as a fraction of
//! the disk's own bandwidth measured in the same run and directory.
//!
//! Each round fills one table (Adam, so two state arrays travel with the values) on a fresh
//! local cluster, times `Worker::checkpoint`, and times the two parts of a restore: the check
//! the scheduler makes before it listens (`checkpoint::verify`, timed here in-process: it reads
//! every file whole), and the load (on a fresh cluster restoring the checkpoint, from the
//! scheduler's announcement — the servers are started then — to the worker's declaration of
//! the table returning once every server has loaded its range: an upper bound, as it includes
//! the servers' start and registration). Next to them, in the same round and directory, the floor: a plain write of the
//! same number of bytes in 1 MiB pieces followed by `fsync`, and a plain read of them back. Rounds alternate which goes
//! first, and the report gives each ratio's range over the rounds. Reads of files just written
//! may come from the page cache; the floor's read is in the same state as the restore's.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferrops_engine::{TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use crate::launch::{LocalCluster, LocalSpec};

/// What to measure.
#[derive(Clone, Debug)]
pub struct CheckpointOptions {
    /// Keys of the table.
    pub keys: u64,
    /// A dense table (keys 0..n, no key map) instead of a sparse one.
    pub dense: bool,
    /// Servers that write the checkpoint, and servers that restore it.
    pub servers: usize,
    pub restore_servers: usize,
    /// Measured rounds.
    pub rounds: usize,
    /// Where checkpoints and the floor's file go (a fresh folder in the temporary directory
    /// when not given; removed afterwards).
    pub dir: Option<PathBuf>,
    /// Print one JSON object after the table.
    pub json: bool,
}

const ADAM: Rule = Rule::Adam {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    step: 0,
};

/// Keys pushed per request while filling the table.
const FILL_KEYS: usize = 1 << 20;

/// One round's times, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
struct Round {
    floor_write: f64,
    checkpoint: f64,
    floor_read: f64,
    check: f64,
    load: f64,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    keys: u64,
    dense: bool,
    servers: usize,
    restore_servers: usize,
    bytes: u64,
    rounds: Vec<Round>,
    /// Checkpoint write speed over raw write + fsync speed, per round.
    write_fraction: Vec<f64>,
    /// Restore speed (check + load), and each part's, over raw read speed, per round.
    restore_fraction: Vec<f64>,
    check_fraction: Vec<f64>,
    load_fraction: Vec<f64>,
}

/// Runs the benchmark.
pub fn run(o: &CheckpointOptions) -> Result<()> {
    ensure!(
        o.keys >= 1 && o.rounds >= 1,
        "--keys and --rounds must be at least 1"
    );
    let temporary = o.dir.is_none();
    let base = match &o.dir {
        Some(d) => std::path::absolute(d)?,
        None => {
            std::env::temp_dir().join(format!("ferrops-bench-checkpoint-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let result = measure(o, &base);
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    let report = result?;
    print_human(&report);
    if o.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn spec(o: &CheckpointOptions) -> TableSpec {
    match o.dense {
        true => TableSpec::dense("bench.checkpoint", 1, o.keys),
        false => TableSpec::new("bench.checkpoint", 1),
    }
    .rule(ADAM)
}

fn keys(o: &CheckpointOptions) -> Vec<u64> {
    match o.dense {
        true => (0..o.keys).collect(),
        false => crate::bench::push_pull::spread_keys(o.keys as usize),
    }
}

fn measure(o: &CheckpointOptions, base: &Path) -> Result<Report> {
    let ckpt = base.join("checkpoint");
    let floor = base.join("floor.bin");
    let keys = keys(o);
    let mut rounds = Vec::with_capacity(o.rounds);
    let mut bytes = 0;
    for round in 0..o.rounds {
        let mut r = Round::default();
        // The first round writes before its floor: the floor needs the checkpoint's size.
        let floor_first = round % 2 == 1;
        if floor_first {
            r.floor_write = raw_write(&floor, bytes)?;
        }
        let saved;
        (r.checkpoint, saved) = checkpoint_once(o, &keys, &ckpt)?;
        bytes = checkpoint_bytes(&ckpt)?;
        if !floor_first {
            r.floor_write = raw_write(&floor, bytes)?;
        }
        if floor_first {
            r.floor_read = raw_read(&floor)?;
        }
        (r.check, r.load) = restore_once(o, &keys, &ckpt, &saved)?;
        if !floor_first {
            r.floor_read = raw_read(&floor)?;
        }
        let _ = std::fs::remove_file(&floor);
        rounds.push(r);
    }
    Ok(Report {
        keys: o.keys,
        dense: o.dense,
        servers: o.servers,
        restore_servers: o.restore_servers,
        bytes,
        write_fraction: rounds
            .iter()
            .map(|r| r.floor_write / r.checkpoint)
            .collect(),
        restore_fraction: rounds
            .iter()
            .map(|r| r.floor_read / (r.check + r.load))
            .collect(),
        check_fraction: rounds.iter().map(|r| r.floor_read / r.check).collect(),
        load_fraction: rounds.iter().map(|r| r.floor_read / r.load).collect(),
        rounds,
    })
}

/// The bytes of every file the checkpoint's manifest lists.
fn checkpoint_bytes(dir: &Path) -> Result<u64> {
    let manifest = ferrops_engine::checkpoint::Manifest::read(dir)?;
    Ok(manifest
        .tables
        .iter()
        .flat_map(|t| &t.files)
        .map(|f| f.bytes)
        .sum())
}

/// A cluster of `servers` servers (restoring `restore` when given) and one in-process worker;
/// `body` also gets the moment the scheduler had announced itself.
fn with_worker<T>(
    servers: usize,
    restore: Option<&Path>,
    body: impl FnOnce(&Worker, Instant) -> Result<T>,
) -> Result<T> {
    let mut spec = LocalSpec::new(servers, 1)?;
    spec.shutdown_grace = Duration::from_secs(60);
    spec.restore = restore.map(Path::to_path_buf);
    let cluster = LocalCluster::start(&spec).context("starting the benchmark cluster")?;
    let announced = Instant::now();
    let w = Worker::connect(&cluster.worker_config())?;
    let out = body(&w, announced)?;
    w.finish()?;
    cluster
        .wait(Duration::from_secs(60))
        .context("stopping the benchmark cluster")?;
    Ok(out)
}

/// The gradient pushed to key i: a value that differs from key to key.
fn gradient(i: usize) -> f32 {
    (i % 1000) as f32 * 1e-3 - 0.5
}

/// Every thousandth key: what a restore is checked on.
fn sample(keys: &[u64]) -> Vec<u64> {
    keys.iter()
        .step_by((keys.len() / 1000).max(1))
        .copied()
        .collect()
}

/// Fills the table and times one checkpoint of it; returns that time and the sample's values.
fn checkpoint_once(o: &CheckpointOptions, keys: &[u64], dir: &Path) -> Result<(f64, Vec<f32>)> {
    with_worker(o.servers, None, |w, _| {
        let t = w.declare_table(spec(o))?;
        let mut grads = Vec::with_capacity(FILL_KEYS);
        for (c, chunk) in keys.chunks(FILL_KEYS).enumerate() {
            grads.clear();
            grads.extend((0..chunk.len()).map(|i| gradient(c * FILL_KEYS + i)));
            w.push(t, chunk, &grads)?;
        }
        let started = Instant::now();
        w.checkpoint(dir)?;
        let elapsed = started.elapsed().as_secs_f64();
        Ok((elapsed, w.pull(t, &sample(keys))?))
    })
}

/// Times a restore's check and its load; then checks that a sample of the values came back
/// bit for bit (`saved`).
fn restore_once(
    o: &CheckpointOptions,
    keys: &[u64],
    dir: &Path,
    saved: &[f32],
) -> Result<(f64, f64)> {
    let started = Instant::now();
    ferrops_engine::checkpoint::verify(dir)?;
    let check = started.elapsed().as_secs_f64();
    let (load, sample) = with_worker(o.restore_servers, Some(dir), |w, started| {
        let t = w.declare_table(spec(o))?;
        let elapsed = started.elapsed().as_secs_f64();
        Ok((elapsed, w.pull(t, &sample(keys))?))
    })?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    ensure!(
        bits(&sample) == bits(saved),
        "the restored table differs from the saved one"
    );
    ensure!(saved.iter().any(|&v| v != 0.0), "the table was not filled");
    Ok((check, load))
}

/// Writes `bytes` bytes to `path` in 1 MiB pieces and syncs them: the disk's floor for the
/// checkpoint's writes. Returns the seconds taken.
fn raw_write(path: &Path, bytes: u64) -> Result<f64> {
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reads `path` back in 1 MiB pieces: the floor for the restore's reads.
fn raw_read(path: &Path) -> Result<f64> {
    let mut chunk = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut f = std::fs::File::open(path)?;
    while f.read(&mut chunk)? > 0 {}
    Ok(started.elapsed().as_secs_f64())
}

fn range(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn print_human(r: &Report) {
    let mib = r.bytes as f64 / f64::from(1 << 20);
    println!(
        "checkpoint of {} {} keys (Adam: values + 2 state arrays), {mib:.1} MiB, written by {} \
         server(s), restored on {}",
        r.keys,
        if r.dense { "dense" } else { "sparse" },
        r.servers,
        r.restore_servers
    );
    println!("round  floor write   checkpoint  fraction   floor read        check         load  fraction");
    let rate = |secs: f64| format!("{:>7.0} MB/s", r.bytes as f64 / secs / 1e6);
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "{i:>5} {} {} {:>9.2} {} {} {} {:>9.2}",
            rate(x.floor_write),
            rate(x.checkpoint),
            r.write_fraction[i],
            rate(x.floor_read),
            rate(x.check),
            rate(x.load),
            r.restore_fraction[i]
        );
    }
    println!(
        "checkpoint write: {} of raw write+fsync; restore: {} of raw read (check {}, load {})",
        range(&r.write_fraction),
        range(&r.restore_fraction),
        range(&r.check_fraction),
        range(&r.load_fraction)
    );
}
