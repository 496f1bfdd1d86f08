//! The KKT filter's state on each worker (see the job's module docs): the mask table worker 0
//! publishes after applying a block, and the keys every worker pushes the next time the block
//! comes round.

use anyhow::{ensure, Result};
use ferrops_engine::filter::KktFilter;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;

use super::blocks::Shard;
use super::{KKT_MARGIN, KKT_RECHECK, MASK_BITS};
use crate::synth::feature_key;

/// The KKT filter's state on one worker (module docs): the mask table and its keys, and on
/// worker 0 one [`KktFilter`] per block.
pub(super) struct Kkt {
    table: TableId,
    /// Per block, the keys of its mask floats (sorted; float `c` holds the block's keys
    /// `16c..16c + 16`).
    mask_keys: Vec<Vec<u64>>,
    /// Worker 0 only.
    filters: Vec<KktFilter>,
    mask: Vec<f32>,
    grads: Vec<f32>,
    /// This worker's coordinates offered and skipped, and mask floats pulled and pushed.
    offered: u64,
    skipped: u64,
    mask_pulled: u64,
    mask_pushed: u64,
}

impl Kkt {
    pub(super) fn new(w: &Worker, shard: &Shard, lambda: f32, applier: bool) -> Result<Kkt> {
        let nb = shard.blocks.len();
        let table = w.declare_table(
            TableSpec::new("l1lr.kkt", 1)
                .rule(Rule::Assign)
                .consistency(Consistency::BoundedDelay(2 * nb as u32 - 2)),
        )?;
        let mut next = 0u64;
        let mask_keys = shard
            .blocks
            .iter()
            .map(|block| {
                let n = block.keys.len().div_ceil(MASK_BITS) as u64;
                let mut keys: Vec<u64> = (next..next + n).map(feature_key).collect();
                keys.sort_unstable();
                next += n;
                keys
            })
            .collect();
        let filters = if applier {
            (0..nb)
                .map(|_| KktFilter::new(1, lambda, KKT_MARGIN, KKT_RECHECK))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Kkt {
            table,
            mask_keys,
            filters,
            mask: Vec::new(),
            grads: Vec::new(),
            offered: 0,
            skipped: 0,
            mask_pulled: 0,
            mask_pushed: 0,
        })
    }

    /// Whether iteration `t` pushes every key: the first, and the one after each of the
    /// filter's recheck rounds (round r is run in iteration r and decides iteration r + 1).
    pub(super) fn full(t: usize) -> bool {
        t == 0 || (t as u64 - 1).is_multiple_of(KKT_RECHECK)
    }

    /// The keys of block `b` to push in iteration `t` (`None`: all), from worker 0's mask.
    pub(super) fn chosen(
        &mut self,
        w: &Worker,
        t: usize,
        b: usize,
        n: usize,
    ) -> Result<Option<Vec<u32>>> {
        self.offered += n as u64;
        if Kkt::full(t) {
            return Ok(None);
        }
        let keys = &self.mask_keys[b];
        self.mask.resize(keys.len(), 0.0);
        w.pull_into(self.table, keys, &mut self.mask)?;
        self.mask_pulled += keys.len() as u64;
        let mut out = Vec::new();
        for (c, &v) in self.mask.iter().enumerate() {
            ensure!(
                (0.0..65_536.0).contains(&v) && v.fract() == 0.0,
                "KKT mask float {v} is not a 16-bit integer"
            );
            let bits = v as u32;
            for i in 0..MASK_BITS {
                let at = c * MASK_BITS + i;
                if bits >> i & 1 == 1 && at < n {
                    out.push(at as u32);
                }
            }
        }
        self.skipped += (n - out.len()) as u64;
        Ok(Some(out))
    }

    /// Worker 0, after applying block `b` in iteration `t`: runs the block's filter on the new
    /// weights and the summed gradients (`sums` holds key-major `(g, h)`), and publishes the
    /// keys to push next time unless that is a full iteration anyway.
    pub(super) fn publish(
        &mut self,
        w: &Worker,
        t: usize,
        b: usize,
        keys: &[u64],
        weights: &[f32],
        sums: &[f32],
    ) -> Result<()> {
        let filter = &mut self.filters[b];
        ensure!(
            filter.next_is_recheck() == Kkt::full(t + 1),
            "KKT filter rounds out of step with iterations"
        );
        self.grads.clear();
        self.grads.extend(sums.iter().step_by(2));
        let keep = filter.select(keys, weights, &self.grads)?;
        if Kkt::full(t + 1) {
            return Ok(());
        }
        self.mask.clear();
        self.mask.resize(self.mask_keys[b].len(), 0.0);
        let mut bits = vec![0u32; self.mask.len()];
        for &i in &keep {
            bits[i as usize / MASK_BITS] |= 1 << (i as usize % MASK_BITS);
        }
        for (m, v) in self.mask.iter_mut().zip(bits) {
            *m = v as f32;
        }
        w.push(self.table, &self.mask_keys[b], &self.mask)?;
        self.mask_pushed += self.mask.len() as u64;
        Ok(())
    }

    /// Coordinates offered and skipped, summed over the workers (they all skip the same keys).
    pub(super) fn totals(&self, workers: usize) -> (f64, f64) {
        let w = workers as f64;
        (self.offered as f64 * w, self.skipped as f64 * w)
    }

    /// Worker 0's report: what was skipped, the value bytes that did not travel and what the
    /// masks cost.
    pub(super) fn report(&self, workers: usize) -> String {
        let (offered, skipped) = self.totals(workers);
        // Each skipped key saves a (g, h) pair in every worker's push and in worker 0's zeroing.
        let saved = skipped * 8.0 + self.skipped as f64 * 8.0;
        let cost = (self.mask_pulled as f64 * workers as f64 + self.mask_pushed as f64) * 4.0;
        format!(
            "kkt: skipped {skipped:.0} of {offered:.0} gradient coordinates ({:.1}%): {:.2} MB of values not sent, masks {:.2} MB",
            100.0 * skipped / offered.max(1.0),
            saved / 1e6,
            cost / 1e6
        )
    }
}
