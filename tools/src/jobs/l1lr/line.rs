//! The line-search step of the `l1lr` job (`--step line`, τ = 0): each block takes the
//! proximal step of a quadratic model with the *exact* diagonal of the Hessian, shortened by a
//! backtracking (Armijo) line search on the block's true objective — the block coordinate
//! gradient descent of Tseng and Yun (2009), which also underlies newGLMNET.
//!
//! A step `s` on block `b` takes three clocks. (A) Every worker pushes the gradient and exact
//! diagonal curvature of its present features to a `Sum` accumulator. (B) Every worker pulls
//! the sums of its present features (worker 0: of all the block's features), computes the
//! proximal direction `d = S_{λ/(h+δ)}(w − g/(h+δ)) − w` itself — the same f32 arithmetic on
//! the same floats, so all agree — and pushes its shard's loss change at each trial length
//! `α ∈ {1, 1/2, …, 1/128}`. (C) Worker 0 adds the L1 change, picks the longest `α` with
//! `ΔF(α) ≤ σ·α·Δ` (Δ = gᵀd + λ(‖w + d‖₁ − ‖w‖₁) < 0, σ = 0.01), or 0 if none, publishes it,
//! assigns the new weights on the servers and zeroes the accumulator slot; every worker then
//! moves its margins by `α·Xd`.
//!
//! `--step newton` adds three clocks between (B) and the trial losses: (B1) worker 0 publishes
//! the block's working-set threshold, (B2) every worker assigns its share of the working set's
//! Hessian (or, where the set is too large for that, pushes its weighted direction), and (B3)
//! worker 0 publishes the Newton direction through the idle accumulator slot for every worker
//! to probe (`newton.rs`, `newton/exact.rs`).
//!
//! Why it converges: `d` is a descent direction for the composite objective (Δ ≤ −dᵀ(H + δ)d),
//! every accepted step decreases the objective by at least σ·α·|Δ|, and the blocks are visited
//! cyclically; these are the conditions of Tseng and Yun's convergence theorem for the
//! L1-regularised smooth objective. The line search needs the margins at the current weights,
//! so it is for τ = 0; under delay the `bound` step (a majoriser covering the τ + 1 blocks that
//! share stale margins) keeps the guarantee.

use std::time::{Duration, Instant};

use anyhow::Result;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;

use super::blocks::{step, Shard};
use super::newton;
use super::stopping::Stopping;
use super::{push_stats, L1lrSettings, Progress, StepChange};
use crate::jobs::checkpoints::Checkpoints;
use crate::jobs::stop::Stop;
use crate::logistic::scaled_prox_l1;

/// Trial step lengths, longest first.
pub const ALPHAS: [f32; 8] = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125];
/// The sufficient-decrease fraction σ of the Armijo rule.
const ARMIJO: f64 = 0.01;

/// The tables only the line search uses: the summed loss changes per trial length, the chosen
/// lengths (one key per step each), and with `--step newton` the workers' shares of the
/// working set's Hessian (`newton.rs`).
pub struct Tables {
    pub losses: TableId,
    pub alphas: TableId,
    pub hessian: Option<TableId>,
}

impl Tables {
    /// Declares them (every worker, before training starts).
    pub fn declare(w: &Worker, newton: bool) -> Result<Tables> {
        let seq = |name: &str, rule, dim| {
            w.declare_table(
                TableSpec::new(name, dim)
                    .rule(rule)
                    .consistency(Consistency::Sequential),
            )
        };
        Ok(Tables {
            losses: seq("l1lr.ls", Rule::Sum, 1)?,
            alphas: seq("l1lr.alpha", Rule::Assign, 1)?,
            hessian: if newton {
                Some(seq(
                    "l1lr.hess",
                    Rule::Assign,
                    newton::exact::ENTRY_FLOATS as u32,
                )?)
            } else {
                None
            },
        })
    }
}

/// One worker's line-search training run.
pub struct Run<'a> {
    pub w: &'a Worker,
    pub settings: &'a L1lrSettings,
    pub tables: Tables,
    pub weights: TableId,
    /// Two accumulator slots, used alternately.
    pub acc: [TableId; 2],
    pub stats: TableId,
    pub local_nnz: f32,
    /// `--step newton`: worker 0's Newton direction by coordinate descent on the block's
    /// exact Hessian over the working set; otherwise the diagonal proximal direction every
    /// worker computes.
    pub newton: bool,
}

/// The diagonal proximal direction `S_{λ/(h+δ)}(x − g/(h+δ)) − x` of every key of a block.
fn diagonal(x: &[f32], sums: &[f32], o: &L1lrSettings) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(c, &v)| scaled_prox_l1(v, sums[2 * c], sums[2 * c + 1], o.lambda, o.delta) - v)
        .collect()
}

/// Worker 0: zeroes an accumulator slot that holds `sums` (key-major pairs for `keys`) by
/// pushing the negated nonzero pairs (x + (−x) = 0 exactly; a zero sum is a zero slot).
fn zero_slot(w: &Worker, slot: TableId, keys: &[u64], sums: &[f32]) -> Result<()> {
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    for (c, &k) in keys.iter().enumerate() {
        if sums[2 * c] != 0.0 || sums[2 * c + 1] != 0.0 {
            ks.push(k);
            vs.extend([-sums[2 * c], -sums[2 * c + 1]]);
        }
    }
    if !ks.is_empty() {
        w.push(slot, &ks, &vs)?;
    }
    Ok(())
}

/// Pulls `keys` of a two-input accumulator into `sums` (key-major pairs).
fn pull_all(w: &Worker, table: TableId, keys: &[u64], sums: &mut Vec<f32>) -> Result<()> {
    sums.resize(2 * keys.len(), 0.0);
    if !keys.is_empty() {
        w.pull_into(table, keys, sums)?;
    }
    Ok(())
}

/// The alpha-table key of step `s`'s length α.
fn alpha_key(s: usize) -> u64 {
    2 * s as u64
}

/// The alpha-table key of step `s`'s working-set threshold (`--step newton`).
fn theta_key(s: usize) -> u64 {
    2 * s as u64 + 1
}

/// The threshold worker 0 publishes when the block's nonzero weights alone are too many for its
/// Hessian to travel: every worker then proposes its weighted direction.
const WEIGHTED: f32 = -1.0;

/// The reused buffers of both kinds of Newton direction.
#[derive(Default)]
struct NewtonScratch {
    weighted: newton::Scratch,
    exact: newton::exact::Scratch,
}

/// The loss-table keys of step `s`: the summed loss change at each trial length, then the
/// change in rows classified correctly at each.
fn loss_keys(s: usize) -> Vec<u64> {
    let per_step = 2 * ALPHAS.len() as u64;
    let base = s as u64 * per_step;
    (base..base + per_step).collect()
}

impl Run<'_> {
    /// Runs every iteration, or until `stopping` ends training (then returns the iterations
    /// completed and why); worker 0 keeps `exact` (the weights, per block in key order) and
    /// reports each iteration through `progress`.
    pub fn train(
        &self,
        (first, checkpoints): (usize, &mut Checkpoints),
        shard: &mut Shard,
        exact: &mut [Vec<f32>],
        idle: &mut Duration,
        progress: &mut Progress,
        stopping: &mut Stopping,
    ) -> Result<Option<(usize, Stop)>> {
        let (w, o) = (self.w, self.settings);
        let rank = w.rank();
        let nb = shard.blocks.len();
        let (mut gc, mut sums, mut d, mut all) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if rank == 0 {
            self.give_every_key_a_slot(shard)?;
        }
        let mut newton = self.newton.then(NewtonScratch::default);
        let mut dir_sums = Vec::new();
        // Per block: whether its last Newton direction was rejected (every worker knows α).
        let mut rejected = vec![false; nb];
        for t in first..o.iters {
            // The read needs only what the last step's α pull waited for; timed as idle anyway.
            let t0 = Instant::now();
            let decision = stopping.read(w, t)?;
            *idle += t0.elapsed();
            if let Some(stop) = decision {
                return Ok(Some((t, stop)));
            }
            for b in 0..nb {
                let s = t * nb + b;
                let slot = self.acc[s % 2];
                // (A) this shard's gradient and curvature.
                shard.grad_curv(b, &mut gc);
                if !shard.blocks[b].present_keys.is_empty() {
                    w.push(slot, &shard.blocks[b].present_keys, &gc)?;
                }
                let last_step = b == nb - 1;
                if last_step {
                    push_stats(w, self.stats, t, shard, *idle, self.local_nnz)?;
                }
                w.clock()?;
                // (B) the sums, the direction on this shard's features, the trial losses.
                let t0 = Instant::now();
                self.diagonal_direction(shard, b, slot, &mut sums, &mut d)?;
                let newton_now = newton.is_some() && !rejected[b];
                if let Some(scratch) = newton.as_mut() {
                    // (B1) worker 0 publishes the working set's threshold; (B2) where its
                    // Hessian can travel, every worker's share of it and worker 0 publishes the
                    // exact model's direction, otherwise every worker's weighted direction from
                    // its own rows' coupling, combined; both through the idle slot.
                    let spare = self.acc[(s + 1) % 2];
                    if newton_now && rank == 0 {
                        let theta = newton::exact::threshold(&exact[b], &sums, (o.lambda, o.delta));
                        w.push(
                            self.tables.alphas,
                            &[theta_key(s)],
                            &[theta.unwrap_or(WEIGHTED)],
                        )?;
                    }
                    w.clock()?;
                    let theta = if newton_now {
                        let t = w.pull(self.tables.alphas, &[theta_key(s)])?[0];
                        Some(t).filter(|&t| t >= 0.0)
                    } else {
                        None
                    };
                    match theta {
                        Some(theta) => {
                            self.share_hessian(shard, b, (&sums, theta), &mut scratch.exact)?
                        }
                        None if newton_now => {
                            self.newton_direction(shard, b, (&sums, spare), &mut scratch.weighted)?
                        }
                        None => {}
                    }
                    w.clock()?;
                    if let (Some(theta), 0) = (theta, rank) {
                        let block = &shard.blocks[b];
                        self.publish_direction(block, (&exact[b], &sums, theta), spare)?;
                    }
                    w.clock()?;
                    if newton_now {
                        let keys = if rank == 0 {
                            &shard.blocks[b].keys
                        } else {
                            &shard.blocks[b].present_keys
                        };
                        pull_all(w, spare, keys, &mut dir_sums)?;
                        newton::combine(&dir_sums, &mut all);
                        if rank == 0 {
                            d.clear();
                            d.extend(shard.blocks[b].present.iter().map(|&c| all[c as usize]));
                        } else {
                            std::mem::swap(&mut d, &mut all);
                        }
                    }
                }
                *idle += t0.elapsed();
                let mut change = shard.probe_step(b, &d, &ALPHAS);
                change.extend(shard.probed_correct_change(&ALPHAS));
                let change: Vec<f32> = change.into_iter().map(|v| v as f32).collect();
                w.push(self.tables.losses, &loss_keys(s), &change)?;
                w.clock()?;
                // (C) worker 0 chooses the length and applies it on the servers.
                if rank == 0 {
                    let t0 = Instant::now();
                    let total = w.pull(self.tables.losses, &loss_keys(s))?;
                    *idle += t0.elapsed();
                    let x = &mut exact[b];
                    stopping.add_block(x, &sums, o.lambda);
                    if !newton_now {
                        all = diagonal(x, &sums, o);
                    }
                    let (loss_change, correct_change) = total.split_at(ALPHAS.len());
                    let alpha = choose(x, &all, &sums, loss_change, o.lambda);
                    w.push(self.tables.alphas, &[alpha_key(s)], &[alpha])?;
                    self.apply(&shard.blocks[b].keys, x, &all, &sums, alpha, slot)?;
                    if newton_now {
                        zero_slot(w, self.acc[(s + 1) % 2], &shard.blocks[b].keys, &dir_sums)?;
                    }
                    if last_step {
                        // The stats were taken before this step: add what it changed.
                        let taken = ALPHAS.iter().position(|&a| a == alpha);
                        let moved = taken.map_or(StepChange::default(), |i| StepChange {
                            loss: loss_change[i],
                            correct: correct_change[i],
                        });
                        progress.record(w, t, exact, None, moved)?;
                        stopping.decide(w, t, progress.seconds())?;
                    }
                }
                w.clock()?;
                let t0 = Instant::now();
                let alpha = w.pull(self.tables.alphas, &[alpha_key(s)])?[0];
                *idle += t0.elapsed();
                shard.take_step(b, &d, alpha);
                // A rejected Newton direction is not proposed again: the diagonal one is.
                rejected[b] = newton_now && alpha == 0.0;
            }
            checkpoints.after_round(w, t + 1)?;
        }
        Ok(None)
    }

    /// Worker 0, before the first step: pushes zero pairs for every key to both accumulator
    /// slots. Worker 0 pulls a block's every key from them each step, and a server resolves a
    /// pull naming keys that have no slot afresh every time (a later push may create them),
    /// while a list whose keys all have slots is resolved once: without this, keys no shard
    /// has would cost a hash lookup per key and pull (14% of the CPU time on the man-page set).
    /// Adding zeros changes no sum.
    fn give_every_key_a_slot(&self, shard: &Shard) -> Result<()> {
        for slot in self.acc {
            for block in &shard.blocks {
                if !block.keys.is_empty() {
                    self.w
                        .push(slot, &block.keys, &vec![0.0; 2 * block.keys.len()])?;
                }
            }
        }
        Ok(())
    }

    /// Every worker, the diagonal step's phase (B): pulls the summed pairs (worker 0: of every
    /// key of block `b`, the others: of their present keys) and computes the proximal direction
    /// of its present features into `d`, each worker the same f32 arithmetic on the same floats.
    fn diagonal_direction(
        &self,
        shard: &Shard,
        b: usize,
        slot: TableId,
        sums: &mut Vec<f32>,
        d: &mut Vec<f32>,
    ) -> Result<()> {
        let (o, rank) = (self.settings, self.w.rank());
        let block = &shard.blocks[b];
        let keys = if rank == 0 {
            &block.keys
        } else {
            &block.present_keys
        };
        pull_all(self.w, slot, keys, sums)?;
        d.clear();
        for (p, &c) in block.present.iter().enumerate() {
            let q = if rank == 0 { c as usize } else { p };
            let x = shard.weights[b][c as usize];
            d.push(scaled_prox_l1(x, sums[2 * q], sums[2 * q + 1], o.lambda, o.delta) - x);
        }
        Ok(())
    }

    /// Worker 0: moves `x` by `alpha · d`, assigns the weights that changed on the servers,
    /// and zeroes the accumulator slot (negated nonzero sums; a zero sum is a zero slot).
    fn apply(
        &self,
        keys: &[u64],
        x: &mut [f32],
        d: &[f32],
        sums: &[f32],
        alpha: f32,
        slot: TableId,
    ) -> Result<()> {
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for (c, &k) in keys.iter().enumerate() {
            let new = step(x[c], d[c], alpha);
            if new != x[c] {
                x[c] = new;
                ks.push(k);
                vs.push(new);
            }
        }
        if !ks.is_empty() {
            self.w.push(self.weights, &ks, &vs)?;
        }
        zero_slot(self.w, slot, keys, sums)
    }

    /// Every worker, phase (B2) of a Newton step: its weighted direction of block `b` from the
    /// summed pairs `sums` of its present features (worker 0: of every key), into `spare`.
    fn newton_direction(
        &self,
        shard: &Shard,
        b: usize,
        (sums, spare): (&[f32], TableId),
        scratch: &mut newton::Scratch,
    ) -> Result<()> {
        let (o, w) = (self.settings, self.w);
        let block = &shard.blocks[b];
        let x: Vec<f32> = block
            .present
            .iter()
            .map(|&c| shard.weights[b][c as usize])
            .collect();
        let present_sums: Vec<f32> = if w.rank() == 0 {
            let at = |c: u32| [sums[2 * c as usize], sums[2 * c as usize + 1]];
            block.present.iter().flat_map(|&c| at(c)).collect()
        } else {
            sums.to_vec()
        };
        let on_shard = (block, shard.row_curvature(), w.num_workers());
        let pairs =
            newton::weighted_direction(on_shard, &x, &present_sums, (o.lambda, o.delta), scratch);
        if !block.present_keys.is_empty() {
            w.push(spare, &block.present_keys, &pairs)?;
        }
        Ok(())
    }

    /// Every worker, phase (B2) of a Newton step: assigns its share of the Hessian of block
    /// `b`'s working set among its present features, from the summed pairs `sums` (worker 0:
    /// of every key of the block).
    fn share_hessian(
        &self,
        shard: &Shard,
        b: usize,
        (sums, theta): (&[f32], f32),
        scratch: &mut newton::exact::Scratch,
    ) -> Result<()> {
        let (o, w) = (self.settings, self.w);
        let Some(table) = self.tables.hessian else {
            return Ok(());
        };
        let block = &shard.blocks[b];
        let x: Vec<f32> = block
            .present
            .iter()
            .map(|&c| shard.weights[b][c as usize])
            .collect();
        let present_sums: Vec<f32> = if w.rank() == 0 {
            let at = |c: u32| [sums[2 * c as usize], sums[2 * c as usize + 1]];
            block.present.iter().flat_map(|&c| at(c)).collect()
        } else {
            sums.to_vec()
        };
        let working = newton::exact::working_set(&x, &present_sums, (o.lambda, o.delta), theta);
        let entries =
            newton::exact::hessian_share((block, shard.row_curvature()), &working, scratch);
        let entry_keys = newton::exact::EntryKeys::new(w.num_workers());
        let (keys, values) = newton::exact::share_slots(&entries, entry_keys, w.rank());
        w.push(table, &keys, &values)?;
        Ok(())
    }

    /// Worker 0, phase (B3) of a Newton step: the direction of block `block` (weights `x`,
    /// summed pairs `sums` of every key) by coordinate descent on the exact model where the
    /// working set's Hessian travels, the diagonal direction otherwise, published into
    /// `spare` as `(d, 1)` pairs so that every worker's [`newton::combine`] reads `d`.
    fn publish_direction(
        &self,
        block: &super::blocks::Block,
        (x, sums, theta): (&[f32], &[f32], f32),
        spare: TableId,
    ) -> Result<()> {
        let (o, w) = (self.settings, self.w);
        let working = newton::exact::working_set(x, sums, (o.lambda, o.delta), theta);
        let coupled = self
            .tables
            .hessian
            .filter(|_| working.len() <= newton::exact::MAX_COUPLED);
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        if let Some(table) = coupled {
            let entry_keys = newton::exact::EntryKeys::new(w.num_workers());
            let count_keys = newton::exact::count_keys(entry_keys, w.num_workers());
            let counts =
                newton::exact::counts(&w.pull(table, &count_keys)?).map_err(anyhow::Error::msg)?;
            let keys = newton::exact::entry_keys(entry_keys, &counts);
            let pulled = if keys.is_empty() {
                Vec::new()
            } else {
                w.pull(table, &keys)?
            };
            let (hessian, at) = newton::exact::assemble(&pulled, &working, block.keys.len())
                .map_err(anyhow::Error::msg)?;
            let wx: Vec<f32> = working.iter().map(|&c| x[c]).collect();
            let ws: Vec<f32> = working
                .iter()
                .flat_map(|&c| [sums[2 * c], sums[2 * c + 1]])
                .collect();
            let d = newton::exact::direction(&wx, &ws, (&hessian, &at), (o.lambda, o.delta));
            for (&c, &dc) in working.iter().zip(&d) {
                let dc = dc as f32;
                if dc != 0.0 {
                    ks.push(block.keys[c]);
                    vs.extend([dc, 1.0]);
                }
            }
        } else {
            for (c, dc) in diagonal(x, sums, o).into_iter().enumerate() {
                if dc != 0.0 {
                    ks.push(block.keys[c]);
                    vs.extend([dc, 1.0]);
                }
            }
        }
        if !ks.is_empty() {
            w.push(spare, &ks, &vs)?;
        }
        Ok(())
    }
}

/// The longest trial length that satisfies the Armijo rule, or 0: `x` the block's weights, `d`
/// the direction, `sums` the summed `(g, h)` pairs, `loss_change` the summed loss change per
/// trial length.
pub fn choose(x: &[f32], d: &[f32], sums: &[f32], loss_change: &[f32], lambda: f32) -> f32 {
    let moved: Vec<usize> = (0..x.len()).filter(|&c| d[c] != 0.0).collect();
    if moved.is_empty() {
        return 0.0;
    }
    let l1_change = |a: f32| -> f64 {
        moved
            .iter()
            .map(|&c| f64::from(step(x[c], d[c], a).abs()) - f64::from(x[c].abs()))
            .sum()
    };
    let lambda = f64::from(lambda);
    let slope: f64 = moved
        .iter()
        .map(|&c| f64::from(sums[2 * c]) * f64::from(d[c]))
        .sum::<f64>()
        + lambda * l1_change(1.0);
    for (&a, &loss) in ALPHAS.iter().zip(loss_change) {
        if f64::from(loss) + lambda * l1_change(a) <= ARMIJO * f64::from(a) * slope {
            return a;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_takes_the_longest_length_with_sufficient_decrease() {
        let (x, d, sums) = ([0.0f32, 1.0], [1.0f32, -0.5], [-2.0f32, 1.0, 1.0, 1.0]);
        // Slope: g·d = −2 − 0.5 = −2.5; λ = 0.1, L1 change at α = 1: 1 + 0.5 − 1 = 0.5.
        let mut change = [0.0f32; ALPHAS.len()];
        change[0] = 1.0; // α = 1 increases the loss: rejected
        change[1] = -1.0; // α = 1/2 decreases it enough
        assert_eq!(choose(&x, &d, &sums, &change, 0.1), 0.5);
        let none = [1.0f32; ALPHAS.len()];
        assert_eq!(choose(&x, &d, &sums, &none, 0.1), 0.0);
        assert_eq!(choose(&x, &[0.0, 0.0], &sums, &change, 0.1), 0.0);
    }
}
