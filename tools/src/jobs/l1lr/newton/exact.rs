//! The exact Newton direction of `--step newton`: the Hessian of the block's working set
//! travels to worker 0, which runs coordinate descent on the exact model.
//!
//! The model is q(d) = gᵀd + ½ dᵀ(H_A + δI)d + λ(‖x + d‖₁ − ‖x‖₁) over the block's working set A,
//! with g the summed gradient and H_A = Σ_k X_{k,A}ᵀ D_k X_{k,A} the loss's Hessian restricted to
//! A. The rows are split across workers, so no process holds H_A; but A can be kept small, so
//! its Hessian can travel. A holds every nonzero weight and the zero weights whose diagonal
//! proximal step moves them farthest, at most [`MAX_COUPLED`] features in all: worker 0, which
//! holds every summed gradient of the block, publishes the threshold ([`threshold`]) and every
//! worker applies it to its own features ([`working_set`]). Near the solution A is every
//! coordinate the diagonal model would move (about 550 features on the man-page set); far from
//! it (13 000 candidates at the first step there) the farthest moves go first. Keeping the
//! coordinate with the largest diagonal move is Tseng and Yun's Gauss–Southwell-r rule with
//! constant 1, which their convergence theorem admits. The steps:
//!
//! 1. every worker computes its share X_{k,A_k}ᵀ D_k X_{k,A_k} over the working features it
//!    has (A_k = A ∩ its present features: the same test on the same floats), the pairs of
//!    features that occur together in its rows only, and assigns them to the `l1lr.hess` table
//!    under keys of its own ([`PairKeys`]: feature pair and worker);
//! 2. worker 0, which holds the summed gradients and weights of every feature of the block,
//!    pulls every pair of A × A from every worker's key space (a pair a worker never wrote reads
//!    as 0: those features never occur together in its rows), adds them up and runs coordinate
//!    descent on the exact model ([`direction`]).
//!
//! Assignment, not summation, is what makes this safe without clearing the table: a pair
//! (a, b) in A × A that occurs together in worker k's rows has both features present there and
//! in A, so worker k wrote it in this very step; a value left from an earlier step is never
//! read. H_A + δI is positive definite (a sum of Gram matrices plus δI), and coordinate descent
//! from d = 0 lowers q at every update, so the direction has q(d) < 0 unless the block is
//! optimal: a descent direction, the Armijo search's precondition.

use super::super::blocks::Block;
use crate::logistic::soft_threshold;
use crate::synth::feature_key;

/// At most this many coordinate-descent passes per direction.
pub const MAX_PASSES: usize = 50;
/// The passes stop once a pass's largest move, weighted by the curvature, falls below this
/// fraction of the first pass's.
const PASS_TOLERANCE: f64 = 1e-3;
/// The largest working set whose Hessian travels: worker 0 pulls W · n(n + 1)/2 pairs, 525 k a
/// worker at this size. A block whose nonzero weights alone are more than this takes the
/// weighted direction (`newton.rs`); more `--blocks` keep a large model's blocks under it.
pub const MAX_COUPLED: usize = 1024;

/// The working set at threshold `theta`: indices of the features whose weight `x` is nonzero,
/// and of the zero weights whose diagonal proximal step would move them by more than `theta`
/// (the summed gradient `sums[2p]` outside [−λ, λ] by more than θ·(h + δ), `sums[2p + 1]`
/// being h). At θ = 0 that is every coordinate the diagonal model would move. Every worker
/// computes it from the same floats, so each finds its share of the same set.
pub fn working_set(x: &[f32], sums: &[f32], (lambda, delta): (f32, f32), theta: f32) -> Vec<usize> {
    (0..x.len())
        .filter(|&p| x[p] != 0.0 || diagonal_move(sums, p, (lambda, delta)) > f64::from(theta))
        .collect()
}

/// How far the diagonal proximal step moves a zero weight: (|g| − λ)/(h + δ), ≤ 0 when it
/// stays at zero.
fn diagonal_move(sums: &[f32], p: usize, (lambda, delta): (f32, f32)) -> f64 {
    let (g, h) = (f64::from(sums[2 * p]), f64::from(sums[2 * p + 1]).max(0.0));
    (g.abs() - f64::from(lambda)) / (h + f64::from(delta))
}

/// Worker 0, once it holds a block's summed pairs: the threshold whose working set has at most
/// [`MAX_COUPLED`] features, keeping the zero weights the diagonal step moves farthest (0 when
/// every such weight fits); `None` when the nonzero weights alone are more than that.
pub fn threshold(x: &[f32], sums: &[f32], model: (f32, f32)) -> Option<f32> {
    let nonzero = x.iter().filter(|&&v| v != 0.0).count();
    let room = MAX_COUPLED.checked_sub(nonzero)?;
    let mut moves: Vec<f64> = (0..x.len())
        .filter(|&p| x[p] == 0.0)
        .map(|p| diagonal_move(sums, p, model))
        .filter(|&m| m > 0.0)
        .collect();
    if moves.len() <= room {
        return Some(0.0);
    }
    // The (room + 1)-th largest move, rounded up to an f32: the set keeps the moves strictly
    // above it, at most `room` of them (ties at the threshold leave fewer).
    moves.select_nth_unstable_by(room, |a, b| b.total_cmp(a));
    let at = moves[room];
    let theta = at as f32;
    Some(if f64::from(theta) < at {
        theta.next_up()
    } else {
        theta
    })
}

/// The keys of the Hessian table: entry (a, b) of worker k's share, for feature indices a ≤ b,
/// packed into 64 bits as `a | b | k` (each field as wide as its largest value needs), then
/// spread over the key space as feature keys are (an odd multiplier: a bijection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairKeys {
    feature_bits: u32,
    worker_bits: u32,
}

impl PairKeys {
    /// For features below `dim` and `workers` workers; `None` when the pairs do not fit in 64
    /// bits (more than about 2³⁰ features), which leaves the diagonal direction.
    pub fn new(dim: usize, workers: usize) -> Option<PairKeys> {
        let bits = |n: usize| usize::BITS - n.saturating_sub(1).leading_zeros();
        let (feature_bits, worker_bits) = (bits(dim), bits(workers));
        (2 * feature_bits + worker_bits <= 64).then_some(PairKeys {
            feature_bits,
            worker_bits,
        })
    }

    /// The key of entry (a, b) (either order) of `worker`'s share.
    pub fn key(self, a: u32, b: u32, worker: usize) -> u64 {
        let (lo, hi) = (u64::from(a.min(b)), u64::from(a.max(b)));
        let packed = (((lo << self.feature_bits) | hi) << self.worker_bits) | worker as u64;
        feature_key(packed)
    }
}

/// Reused buffers of a worker's Hessian share.
#[derive(Default)]
pub struct Scratch {
    /// (row, working index, value) of every entry of the working columns.
    entries: Vec<(u32, u32, f32)>,
    /// The share's upper triangle, row-major.
    triangle: Vec<f64>,
}

/// Index of (a, b), a ≤ b < n, in a row-major upper triangle of an n × n matrix.
fn upper(n: usize, a: usize, b: usize) -> usize {
    a * (2 * n - a + 1) / 2 + (b - a)
}

/// This worker's share of the working set's Hessian: `block` over its rows, `row_curv` the
/// loss's second derivative per row (D_k), `working` the working features as indices into
/// `block.present`. Returns the nonzero entries as sorted `(keys, values)`, ready to assign;
/// nothing when the working set is larger than [`MAX_COUPLED`].
pub fn hessian_share(
    (block, row_curv): (&Block, &[f64]),
    working: &[usize],
    (keys, worker): (PairKeys, usize),
    s: &mut Scratch,
) -> (Vec<u64>, Vec<f32>) {
    let n = working.len();
    if n == 0 || n > MAX_COUPLED {
        return (Vec::new(), Vec::new());
    }
    s.entries.clear();
    for (a, &p) in working.iter().enumerate() {
        let c = block.present[p] as usize;
        for e in block.col_ptr[c]..block.col_ptr[c + 1] {
            s.entries.push((block.rows[e], a as u32, block.vals[e]));
        }
    }
    // Grouped by row, each row's working entries in working order.
    s.entries.sort_unstable_by_key(|&(i, a, _)| (i, a));
    s.triangle.clear();
    s.triangle.resize(n * (n + 1) / 2, 0.0);
    for row in s.entries.chunk_by(|x, y| x.0 == y.0) {
        let curv = row_curv[row[0].0 as usize];
        for (u, &(_, a, va)) in row.iter().enumerate() {
            let scaled = curv * f64::from(va);
            for &(_, b, vb) in &row[u..] {
                s.triangle[upper(n, a as usize, b as usize)] += scaled * f64::from(vb);
            }
        }
    }
    let feature = |a: usize| block.features[block.present[working[a]] as usize];
    let mut out: Vec<(u64, f32)> = Vec::new();
    for a in 0..n {
        for b in a..n {
            let v = s.triangle[upper(n, a, b)];
            if v != 0.0 {
                out.push((keys.key(feature(a), feature(b), worker), v as f32));
            }
        }
    }
    out.sort_unstable_by_key(|&(k, _)| k);
    out.into_iter().unzip()
}

/// What worker 0 pulls to assemble H_A: every worker's key of every pair of `features` (the
/// working set's feature indices), sorted, and for each key the entry (a, b) of the working set
/// it adds to.
pub fn hessian_keys(
    features: &[u32],
    keys: PairKeys,
    workers: usize,
) -> (Vec<u64>, Vec<(u32, u32)>) {
    let n = features.len();
    let mut all = Vec::with_capacity(workers * n * (n + 1) / 2);
    for a in 0..n {
        for b in a..n {
            for k in 0..workers {
                all.push((keys.key(features[a], features[b], k), (a as u32, b as u32)));
            }
        }
    }
    all.sort_unstable_by_key(|&(k, _)| k);
    all.into_iter().unzip()
}

/// Coordinate descent on the exact model: `x` and the summed `(g, h)` pairs `sums` of the
/// working features (key-major), `hessian` the pulled values for the entries `at` names (as
/// [`hessian_keys`] returns them). Returns the direction over the working set.
pub fn direction(
    x: &[f32],
    sums: &[f32],
    (hessian, at): (&[f32], &[(u32, u32)]),
    (lambda, delta): (f32, f32),
) -> Vec<f64> {
    let n = x.len();
    let (lambda, delta) = (f64::from(lambda), f64::from(delta));
    let mut h = vec![0.0f64; n * n];
    for (&v, &(a, b)) in hessian.iter().zip(at) {
        let (a, b) = (a as usize, b as usize);
        h[a * n + b] += f64::from(v);
        if a != b {
            h[b * n + a] += f64::from(v);
        }
    }
    let mut d = vec![0.0f64; n];
    let mut hd = vec![0.0f64; n];
    let mut first = None;
    for _ in 0..MAX_PASSES {
        let mut largest = 0.0f64;
        for a in 0..n {
            let diag = h[a * n + a].max(0.0) + delta;
            let now = f64::from(x[a]) + d[a];
            let grad = f64::from(sums[2 * a]) + hd[a] + delta * d[a];
            let moved = soft_threshold(now - grad / diag, lambda / diag) - now;
            if moved == 0.0 {
                continue;
            }
            d[a] += moved;
            largest = largest.max(diag * moved.abs());
            for (t, &hab) in hd.iter_mut().zip(&h[a * n..(a + 1) * n]) {
                *t += hab * moved;
            }
        }
        let first = *first.get_or_insert(largest);
        if largest <= PASS_TOLERANCE * first {
            break;
        }
    }
    d
}

#[cfg(test)]
mod tests;
