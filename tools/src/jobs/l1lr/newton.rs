//! The Newton direction of the `l1lr` job's `--step newton` (τ = 0): coordinate descent on a
//! quadratic model of the block's objective, as newGLMNET's inner loop does (Yuan, Ho and Lin,
//! 2012); the line search of `line.rs` sizes the step. Where the block's nonzero weights are at
//! most [`exact::MAX_COUPLED`], the model has the exact Hessian of the working set
//! ([`exact`]); otherwise every worker proposes a direction from its own rows' coupling and the
//! proposals are combined, as below.
//!
//! The weighted direction: every worker k solves the model q_k(d) = gᵀd + ½ dᵀH_k d + λ(‖w + d‖₁ − ‖w‖₁) over the
//! block's *working set* among its present features (nonzero weights, and zero weights whose
//! summed gradient lies outside [−λ, λ]: every coordinate the diagonal model would move), with
//! the summed gradient g and H_k = R X_kᵀD_kX_k R + E + δI, R = diag(r_j),
//! r_j = min(√(h_j / h_kj), √W): its own rows' coupling between features, rescaled so that the
//! diagonal is the summed exact curvature h_j + δ; E ≥ 0 is the diagonal rest h_j − r_j² h_kj
//! (all of h_j when h_kj = 0), nonzero where the cap keeps a shard that holds less than its share
//! of a feature from amplifying its few co-occurrences. Coordinate descent from d = 0 lowers
//! q_k at every update, so each d_k has q_k(d_k) < 0 unless the block is optimal, and then
//! φ(d_k) = gᵀd_k + λ(‖w + d_k‖₁ − ‖w‖₁) ≤ q_k(d_k) − ½ d_kᵀH_k d_k < 0. The workers' directions
//! are combined per feature, weighted by how much of its curvature each shard holds:
//! d_j = Σ_k ω_kj d_kj / Σ_k ω_kj, ω_kj = h_kj + δ/W (W workers), so the shard that sees a
//! feature most decides its move; the weighted sums travel through the accumulator slot the
//! next step will use (idle until then) and every worker divides the same floats. φ is convex
//! and separable, so φ(d) ≤ Σ_j Σ_k a_kj φ_j(d_kj) (a_kj the weights): a descent direction in
//! practice, and the Armijo rule checks it. A Newton direction the line search rejects
//! (α = 0) is not proposed again: the block's next step takes the diagonal direction (the line
//! step's, a Tseng–Yun step with a diagonal H), so every block keeps making the diagonal
//! method's guaranteed progress at least every other visit. The coordinate descent stops after
//! a few passes, as newGLMNET's inner loop does.

pub mod exact;

use super::blocks::Block;
use crate::logistic::soft_threshold;

/// At most this many coordinate-descent passes per direction.
pub const MAX_PASSES: usize = 8;
/// The passes stop once a pass's largest move, weighted by the curvature, falls below this
/// fraction of the first pass's.
const PASS_TOLERANCE: f64 = 0.05;

/// Reused per-row and per-feature buffers of the coordinate descent.
#[derive(Default)]
pub struct Scratch {
    /// u = X_k R d on this worker's rows.
    u: Vec<f64>,
    touched: Vec<u32>,
    /// Working features, as indices into the block's `present`.
    working: Vec<usize>,
    /// Per working feature: r_j, h_kj and the direction so far.
    scale: Vec<f64>,
    local: Vec<f64>,
    dir: Vec<f64>,
}

/// This worker's weighted Newton direction of one block: `block` over its rows, `row_curv`
/// the loss's second derivative per row at the current margins (D_k), and per present feature
/// (in `block.present` order) the weight `x` and the summed key-major `(g, h)` pairs `sums`;
/// `workers` is W. Returns key-major pairs `(ω·d, ω)`, one per present feature, `(0, 0)`
/// outside the working set: what goes into the accumulator to be combined by [`combine`].
pub fn weighted_direction(
    (block, row_curv, workers): (&Block, &[f64], usize),
    x: &[f32],
    sums: &[f32],
    (lambda, delta): (f32, f32),
    s: &mut Scratch,
) -> Vec<f32> {
    s.working.clear();
    s.working
        .extend(exact::working_set(x, sums, (lambda, delta), 0.0));
    let (lambda, delta) = (f64::from(lambda), f64::from(delta));
    s.u.resize(row_curv.len(), 0.0);
    for &i in &s.touched {
        s.u[i as usize] = 0.0;
    }
    s.touched.clear();
    s.scale.clear();
    s.local.clear();
    s.dir.clear();
    let cap = (workers as f64).sqrt();
    let column = |p: usize| {
        let c = block.present[p] as usize;
        block.col_ptr[c]..block.col_ptr[c + 1]
    };
    for &p in &s.working {
        let h = f64::from(sums[2 * p + 1]).max(0.0);
        let hk: f64 = column(p)
            .map(|e| row_curv[block.rows[e] as usize] * f64::from(block.vals[e]).powi(2))
            .sum();
        // At most √W: a shard holding less than its share of a feature's curvature does not
        // amplify its few co-occurrences beyond W; the rest of h_j stays on the diagonal.
        s.scale.push(if hk > 0.0 {
            (h / hk).sqrt().min(cap)
        } else {
            0.0
        });
        s.local.push(hk);
        s.dir.push(0.0);
    }
    let mut first = None;
    for _ in 0..MAX_PASSES {
        let mut largest = 0.0f64;
        for (k, &p) in s.working.iter().enumerate() {
            let r = s.scale[k];
            let diag = f64::from(sums[2 * p + 1]).max(0.0) + delta;
            let coupled: f64 = column(p)
                .map(|e| {
                    let i = block.rows[e] as usize;
                    row_curv[i] * f64::from(block.vals[e]) * s.u[i]
                })
                .sum();
            // (H_k d)_j: r_j (X_kᵀD_k u)_j holds r_j² h_kj d_j of the diagonal; add the rest.
            let hd = r * coupled + (diag - r * r * s.local[k]) * s.dir[k];
            let now = f64::from(x[p]) + s.dir[k];
            let moved = soft_threshold(now - (f64::from(sums[2 * p]) + hd) / diag, lambda / diag);
            let moved = moved - now;
            if moved == 0.0 {
                continue;
            }
            s.dir[k] += moved;
            largest = largest.max(diag * moved.abs());
            if r != 0.0 {
                for e in column(p) {
                    let i = block.rows[e] as usize;
                    if s.u[i] == 0.0 {
                        s.touched.push(i as u32);
                    }
                    s.u[i] += r * f64::from(block.vals[e]) * moved;
                }
            }
        }
        let first = *first.get_or_insert(largest);
        if largest <= PASS_TOLERANCE * first {
            break;
        }
    }
    let mut out = vec![0.0f32; 2 * x.len()];
    let share = delta / workers as f64;
    for (k, &p) in s.working.iter().enumerate() {
        let weight = s.local[k] + share;
        out[2 * p] = (weight * s.dir[k]) as f32;
        out[2 * p + 1] = weight as f32;
    }
    out
}

/// The combined direction from the summed `(ω·d, ω)` pairs: the same f32 division on every
/// worker, zero where no worker proposed a move.
pub fn combine(pairs: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(
        pairs
            .chunks_exact(2)
            .map(|p| if p[1] > 0.0 { p[0] / p[1] } else { 0.0 }),
    );
}

#[cfg(test)]
mod tests;
