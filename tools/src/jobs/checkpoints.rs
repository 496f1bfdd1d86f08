//! Checkpoints of the built-in trainers: `--checkpoint-every N --checkpoint-dir DIR` flags
//! (shared by `l1lr` and `rica`, and passed through by `train`) and [`Checkpoints`], which
//! writes them at round boundaries and tells a restored run where to go on from.
//!
//! A trainer's rounds (L1-LR iterations, RICA epochs) end at a point every worker reaches
//! after the same pushes, where nothing is in flight; a checkpoint is taken there, at the
//! first round end at or after every N clocks. The rounds done are saved with it, in the
//! one-key table `JOB.progress`, so a job started from the checkpoint (`--restore`) reads them
//! back and resumes after that round.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ferrops_engine::{TableId, TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use super::positive_count;

/// The checkpoint flags of a trainer.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize)]
pub struct CheckpointFlags {
    /// Write a checkpoint of every table (values and rule state) every N clocks: at the first
    /// iteration (L1-LR) or epoch (RICA) end at or after each multiple of N. `--restore DIR`
    /// resumes from the last one.
    #[arg(long, value_name = "N", value_parser = positive_count, allow_hyphen_values = true,
        requires = "checkpoint_dir")]
    pub checkpoint_every: Option<usize>,

    /// Where `--checkpoint-every` writes (every node must reach it: one host, or a shared file
    /// system); each checkpoint replaces the previous one.
    #[arg(long, value_name = "DIR", requires = "checkpoint_every")]
    pub checkpoint_dir: Option<PathBuf>,
}

/// A trainer's checkpoints and its resume point.
pub struct Checkpoints {
    progress: TableId,
    every: Option<(usize, PathBuf)>,
    /// The clock of the last checkpoint (or of the start).
    last: u32,
}

impl Checkpoints {
    /// Declares `JOB.progress` (rounds done, saved with every checkpoint).
    pub fn declare(w: &Worker, job: &str, flags: &CheckpointFlags) -> Result<Checkpoints> {
        let progress =
            w.declare_table(TableSpec::new(format!("{job}.progress"), 1).rule(Rule::Assign))?;
        let every = flags.checkpoint_every.zip(flags.checkpoint_dir.clone());
        Ok(Checkpoints {
            progress,
            every,
            last: w.current_clock(),
        })
    }

    /// The rounds done before this run: 0, or those of the checkpoint the job was restored
    /// from.
    pub fn resumed(&self, w: &Worker) -> Result<usize> {
        let done = w.pull(self.progress, &[0])?;
        Ok(done.first().copied().unwrap_or(0.0) as usize)
    }

    /// Call at the end of round `done` (1-based), where every worker has pushed the same and
    /// waits for nothing: writes a checkpoint when N clocks have passed since the last one.
    /// Returns whether it did.
    pub fn after_round(&mut self, w: &Worker, done: usize) -> Result<bool> {
        let Some((every, dir)) = &self.every else {
            return Ok(false);
        };
        let clock = w.current_clock();
        if (clock.saturating_sub(self.last) as usize) < *every {
            return Ok(false);
        }
        w.push(self.progress, &[0], &[done as f32])?;
        w.checkpoint(dir)
            .with_context(|| format!("checkpoint after round {done} into {}", dir.display()))?;
        self.last = clock;
        Ok(true)
    }
}
