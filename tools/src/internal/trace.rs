//! The training trace: one record per iteration (and a last one for the exactly evaluated final
//! model), written as JSON lines by worker 0 and read back by the driver for its summary and
//! plot.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Seconds since training started (after the data was loaded).
    pub time: f64,
    /// Iterations (passes over all blocks) completed.
    pub iteration: usize,
    /// Σ loss + λ‖w‖₁ after `iteration` iterations. The line and Newton steps' records are
    /// exact (the loss the line search measured for the length it took); the bound step's take
    /// each worker's loss at the margins it holds before the iteration's last block step (stale
    /// by up to τ + 1 blocks); the final record evaluates the final weights exactly.
    pub objective: f64,
    pub loss: f64,
    /// Nonzero weights.
    pub nnz: usize,
    /// Fraction of training rows classified correctly.
    pub accuracy: f64,
    /// Bytes sent and received by all workers so far.
    pub bytes_sent: f64,
    pub bytes_received: f64,
    /// Seconds all workers spent blocked in pulls so far (summed over workers).
    pub idle_seconds: f64,
    /// idle_seconds / (workers × time).
    pub idle_fraction: f64,
    /// Whether this is the final, exact evaluation.
    pub last: bool,
    /// KKT filter (`--kkt`): coordinates whose gradient the workers were asked to push so far,
    /// and how many of them they skipped, summed over workers (both 0 without the filter).
    #[serde(default)]
    pub kkt_offered: f64,
    #[serde(default)]
    pub kkt_skipped: f64,
    /// Why training ended before its last iteration (`--tol`, `--max-seconds`), in the final
    /// record only; `None` when it ran every iteration.
    #[serde(default)]
    pub stopped: Option<String>,
    /// The run's bounded delay τ (`None` in traces written before it was recorded).
    #[serde(default)]
    pub tau: Option<u32>,
}

/// Appends records as JSON lines.
pub struct Writer {
    out: io::BufWriter<File>,
}

impl Writer {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<Writer> {
        Ok(Writer {
            out: io::BufWriter::new(File::create(path)?),
        })
    }

    /// Writes one record and flushes it, so a watcher sees progress.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

/// Reads a trace file.
pub fn read(path: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(&line).map_err(io::Error::other)?);
        }
    }
    Ok(out)
}
