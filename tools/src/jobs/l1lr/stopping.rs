//! `--tol` and `--max-seconds` for the `l1lr` job: worker 0 decides, every worker follows, and
//! all stop after the same iteration.
//!
//! Only worker 0 sees the summed gradients (it pulls them to apply each block), so only it can
//! measure the KKT violation: during iteration t it adds up, block by block, the violation of
//! each coordinate at the weights before the block's step and the summed gradient the step uses
//! (for the bound step under delay that gradient is taken at margins up to τ blocks old, as the
//! step itself is; liblinear likewise sums the violations it meets during a pass). At the end of
//! iteration t it decides with [`Stopper`] and, to stop, pushes the decision to the table
//! `l1lr.stop` (keys 2t and 2t + 1) before its last clock of the iteration.
//!
//! Every worker reads the decision of iteration t at the start of iteration t + 1 + L, with
//! lag L = ⌈τ/B⌉ (B blocks), and stops there if it says so. The table has the weights' bounded
//! delay (C·τ clocks, C the clocks per step), so that pull waits until every worker, worker 0
//! included, has completed C·B·(t + 1) clocks (the whole of iteration t, and so the published
//! decision) and never waits longer than the weights' pull of that same step. The guarantee:
//! every worker reads the same decision at the same clock, so all leave the block loop after
//! the same iteration and meet at the final barrier; none waits on a clock another will never
//! complete. Under delay the iterations in between (L of them) have already started on the
//! fastest workers, so they are completed by all rather than abandoned: a run that converges
//! at iteration t stops after t + L.

use anyhow::Result;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;

use crate::jobs::stop::{kkt_violation, Measure, Stop, StopArgs, Stopper};

/// One worker's view of the stopping rule.
pub struct Stopping {
    args: StopArgs,
    /// `None` without `--tol` and `--max-seconds`: nothing to decide or read.
    table: Option<TableId>,
    tau: u32,
    lag: usize,
    stopper: Stopper,
    /// Worker 0: the KKT violation summed over the current iteration's blocks so far.
    violation: f64,
}

impl Stopping {
    /// Declares the decision table (every worker, before training): `tau` the delay in steps,
    /// `clocks` the clocks per step, `blocks` the steps per iteration.
    pub fn declare(
        w: &Worker,
        args: &StopArgs,
        tau: u32,
        clocks: u32,
        blocks: usize,
    ) -> Result<Stopping> {
        let table = if args.any() {
            Some(
                w.declare_table(
                    TableSpec::new("l1lr.stop", 1)
                        .rule(Rule::Assign)
                        .consistency(Consistency::BoundedDelay(tau.saturating_mul(clocks))),
                )?,
            )
        } else {
            None
        };
        Ok(Stopping {
            args: args.clone(),
            table,
            tau,
            lag: (tau as usize).div_ceil(blocks),
            stopper: Stopper::new(args, Measure::KktViolation),
            violation: 0.0,
        })
    }

    /// Worker 0, for each block before its step: the block's weights `x` and summed key-major
    /// `(g, h)` pairs `sums`.
    pub fn add_block(&mut self, x: &[f32], sums: &[f32], lambda: f32) {
        if self.table.is_some() {
            self.violation += x
                .iter()
                .zip(sums.chunks_exact(2))
                .map(|(&w, gh)| kkt_violation(w, gh[0], lambda))
                .sum::<f64>();
        }
    }

    /// Worker 0, at the end of iteration `t` (0-based), before its last clock of it: decides
    /// from the iteration's violation and `seconds` of training, and publishes a stop.
    pub fn decide(&mut self, w: &Worker, t: usize, seconds: f64) -> Result<()> {
        let Some(table) = self.table else {
            return Ok(());
        };
        let violation = std::mem::take(&mut self.violation);
        if let Some(stop) = self.stopper.observe(t + 1, violation, seconds) {
            w.push(table, &keys(t), &stop.to_values())?;
        }
        Ok(())
    }

    /// Every worker, at the start of iteration `t`: the decision that ends training here, if
    /// any (the one of iteration t − 1 − lag).
    pub fn read(&self, w: &Worker, t: usize) -> Result<Option<Stop>> {
        let (Some(table), Some(decided)) = (self.table, t.checked_sub(1 + self.lag)) else {
            return Ok(None);
        };
        let values = w.pull(table, &keys(decided))?;
        Ok(Stop::from_values(
            &values,
            decided + 1,
            &self.args,
            Measure::KktViolation,
        ))
    }

    /// The line that reports a stop after `done` iterations.
    pub fn describe(&self, stop: &Stop, done: usize) -> String {
        let tau = self.tau;
        match done - stop.iteration.min(done) {
            0 => stop.to_string(),
            1 => format!(
                "{stop}; iteration {done} was already under way (τ = {tau}), so every worker \
                 stopped after it"
            ),
            _ => format!(
                "{stop}; iterations {}–{done} were already under way (τ = {tau}), so every \
                 worker stopped after iteration {done}",
                stop.iteration + 1
            ),
        }
    }
}

/// The decision keys of iteration `t`.
fn keys(t: usize) -> [u64; 2] {
    [2 * t as u64, 2 * t as u64 + 1]
}
