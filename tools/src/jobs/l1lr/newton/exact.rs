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
//!    features that occur together in its rows only, and assigns them as a list to the
//!    `l1lr.hess` table: slot 0 of its key space ([`EntryKeys`]) holds the number of entries,
//!    slots 1.. one entry each, the two block columns and the value ([`share_slots`]);
//! 2. worker 0, which holds the summed gradients and weights of every feature of the block,
//!    pulls every worker's count, then exactly the entries they wrote, adds them up
//!    ([`assemble`]) and runs coordinate descent on the exact model ([`direction`]).
//!
//! Only nonzero entries travel: where features rarely occur together in a row (the generated
//! set: a working set of 1 000 features has a few thousand nonzero pairs) this is the
//! difference between a few thousand keys and W · n(n + 1)/2 = 1 M, which worker 0 used to
//! pull, sort and have resolved every step. Assignment, not summation, is what makes this
//! safe without clearing the table: worker 0 reads slots 1..=count of each list, all written
//! in this very step after the count; a slot left from an earlier, longer list is never read. H_A + δI is positive definite (a sum of Gram matrices plus δI), and coordinate descent
//! from d = 0 lowers q at every update, so the direction has q(d) < 0 unless the block is
//! optimal: a descent direction, the Armijo search's precondition.

use super::super::blocks::Block;
use crate::logistic::soft_threshold;

/// At most this many coordinate-descent passes per direction.
pub const MAX_PASSES: usize = 50;
/// The passes stop once a pass's largest move, weighted by the curvature, falls below this
/// fraction of the first pass's.
const PASS_TOLERANCE: f64 = 1e-3;
/// The largest working set whose Hessian travels: a worker's share has at most n(n + 1)/2
/// entries, 525 k at this size (far fewer where features rarely occur together: only those
/// travel). A block whose nonzero weights alone are more than this takes the weighted
/// direction (`newton.rs`); more `--blocks` keep a large model's blocks under it.
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

/// Floats of one slot of the Hessian table: column a of the block (its high and low 16 bits),
/// column b (the same), the value. Integers below 2¹⁶ are exact in f32, so any u32 column
/// travels. Slot 0 of a worker's list holds the number of entries after it in its first float.
pub const ENTRY_FLOATS: usize = 5;

/// One nonzero entry (a, b) of a worker's share, by column of the block (a ≤ b in working
/// order), and its value.
pub type Entry = (u32, u32, f32);

/// Bits of a slot number: a list holds at most n(n + 1)/2 entries for n = [`MAX_COUPLED`],
/// plus its count.
const SLOT_BITS: u32 = 20;

/// The keys of the Hessian table: slot `i` of worker k's list of entries, packed as `i | k` and
/// scaled to the whole key space, so that keys are in (slot, worker) order and spread evenly
/// over the servers' ranges: a list is sorted as written, and worker 0's read of every list
/// needs no sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryKeys {
    worker_bits: u32,
}

impl EntryKeys {
    /// For `workers` workers.
    pub fn new(workers: usize) -> EntryKeys {
        EntryKeys {
            worker_bits: usize::BITS - workers.saturating_sub(1).leading_zeros(),
        }
    }

    /// The key of slot `slot` of `worker`'s list (slot 0: the count; entries from 1).
    pub fn key(self, worker: usize, slot: u64) -> u64 {
        debug_assert!(slot < 1 << SLOT_BITS);
        let packed = (slot << self.worker_bits) | worker as u64;
        packed << (u64::BITS - SLOT_BITS - self.worker_bits)
    }
}

const _: () = assert!(MAX_COUPLED * (MAX_COUPLED + 1) / 2 < 1 << SLOT_BITS);

/// Reused buffers of a worker's Hessian share.
#[derive(Default)]
pub struct Scratch {
    /// (working index, value) of every entry of the working columns, grouped by row.
    by_row: Vec<(u32, f32)>,
    /// Where each row's group starts in `by_row` (one more than the rows).
    row_start: Vec<usize>,
    /// Where each row's next entry goes while `by_row` is filled.
    next: Vec<usize>,
    /// The share's upper triangle, row-major.
    triangle: Vec<f64>,
}

/// Index of (a, b), a ≤ b < n, in a row-major upper triangle of an n × n matrix.
fn upper(n: usize, a: usize, b: usize) -> usize {
    a * (2 * n - a + 1) / 2 + (b - a)
}

/// This worker's share of the working set's Hessian: `block` over its rows, `row_curv` the
/// loss's second derivative per row (D_k), `working` the working features as indices into
/// `block.present`. Returns its nonzero entries by block column (only pairs that occur
/// together in its rows are nonzero); nothing when the working set is larger than
/// [`MAX_COUPLED`].
pub fn hessian_share(
    (block, row_curv): (&Block, &[f64]),
    working: &[usize],
    s: &mut Scratch,
) -> Vec<Entry> {
    let n = working.len();
    if n == 0 || n > MAX_COUPLED {
        return Vec::new();
    }
    let columns = || {
        working.iter().enumerate().flat_map(|(a, &p)| {
            let c = block.present[p] as usize;
            (block.col_ptr[c]..block.col_ptr[c + 1]).map(move |e| (a, e))
        })
    };
    // Grouped by row by a counting sort (stable: each row's entries in working order).
    s.row_start.clear();
    s.row_start.resize(row_curv.len() + 1, 0);
    for (_, e) in columns() {
        s.row_start[block.rows[e] as usize + 1] += 1;
    }
    for i in 0..row_curv.len() {
        s.row_start[i + 1] += s.row_start[i];
    }
    s.by_row.clear();
    s.by_row.resize(s.row_start[row_curv.len()], (0, 0.0));
    s.next.clear();
    s.next.extend_from_slice(&s.row_start);
    for (a, e) in columns() {
        let i = block.rows[e] as usize;
        s.by_row[s.next[i]] = (a as u32, block.vals[e]);
        s.next[i] += 1;
    }
    s.triangle.clear();
    s.triangle.resize(n * (n + 1) / 2, 0.0);
    for (i, &curv) in row_curv.iter().enumerate() {
        let row = &s.by_row[s.row_start[i]..s.row_start[i + 1]];
        for (u, &(a, va)) in row.iter().enumerate() {
            let scaled = curv * f64::from(va);
            for &(b, vb) in &row[u..] {
                s.triangle[upper(n, a as usize, b as usize)] += scaled * f64::from(vb);
            }
        }
    }
    let column = |a: usize| block.present[working[a]];
    let mut out = Vec::new();
    for a in 0..n {
        for b in a..n {
            let v = s.triangle[upper(n, a, b)];
            if v != 0.0 {
                out.push((column(a), column(b), v as f32));
            }
        }
    }
    out
}

/// What `worker` assigns to the Hessian table: its entry count in slot 0 and its entries in
/// slots 1.., as sorted keys and their values ([`ENTRY_FLOATS`] a key).
pub fn share_slots(entries: &[Entry], keys: EntryKeys, worker: usize) -> (Vec<u64>, Vec<f32>) {
    let halves = |c: u32| [(c >> 16) as f32, (c & 0xffff) as f32];
    let mut values = Vec::with_capacity((entries.len() + 1) * ENTRY_FLOATS);
    values.extend([entries.len() as f32, 0.0, 0.0, 0.0, 0.0]);
    for &(a, b, v) in entries {
        values.extend(halves(a));
        values.extend(halves(b));
        values.push(v);
    }
    let slots = (0..=entries.len() as u64).map(|slot| keys.key(worker, slot));
    (slots.collect(), values)
}

/// Worker 0: the sorted keys of slot 0 of every worker's list (worker k's at position k).
pub fn count_keys(keys: EntryKeys, workers: usize) -> Vec<u64> {
    (0..workers).map(|k| keys.key(k, 0)).collect()
}

/// Worker 0: the entry counts read from slot 0 of each worker's list (`pulled`,
/// [`ENTRY_FLOATS`] a key); an error names a count no worker can have written.
pub fn counts(pulled: &[f32]) -> Result<Vec<usize>, String> {
    let most = MAX_COUPLED * (MAX_COUPLED + 1) / 2;
    pulled
        .chunks(ENTRY_FLOATS)
        .enumerate()
        .map(|(k, slot)| {
            let n = slot[0];
            if n >= 0.0 && n.fract() == 0.0 && n as usize <= most {
                Ok(n as usize)
            } else {
                Err(format!("worker {k}'s Hessian share claims {n} entries"))
            }
        })
        .collect()
}

/// Worker 0: the sorted keys of every entry of every worker's list (`counts` per worker).
pub fn entry_keys(keys: EntryKeys, counts: &[usize]) -> Vec<u64> {
    let longest = counts.iter().copied().max().unwrap_or(0);
    let mut all = Vec::with_capacity(counts.iter().sum());
    for slot in 1..=longest {
        for (k, &n) in counts.iter().enumerate() {
            if slot <= n {
                all.push(keys.key(k, slot as u64));
            }
        }
    }
    all
}

/// The Hessian entries worker 0 assembled: values, and the (row, column) of each in the
/// working set's upper triangle.
pub type Assembled = (Vec<f32>, Vec<(u32, u32)>);

/// Worker 0: the pulled entries (`pulled`, [`ENTRY_FLOATS`] a key) as positions in the working
/// set `working` (columns of a block of `columns` columns, ascending), with their values: the
/// `(hessian, at)` that [`direction`] takes. An error names an entry outside the working set
/// (every worker's working columns are among worker 0's: the same test on the same floats).
pub fn assemble(pulled: &[f32], working: &[usize], columns: usize) -> Result<Assembled, String> {
    let mut position = vec![u32::MAX; columns];
    for (p, &c) in working.iter().enumerate() {
        position[c] = p as u32;
    }
    let column = |hi: f32, lo: f32| -> Option<u32> {
        let ok = |h: f32| (0.0..65536.0).contains(&h) && h.fract() == 0.0;
        let c = (ok(hi) && ok(lo)).then_some(((hi as u32) << 16) | lo as u32)?;
        position.get(c as usize).copied().filter(|&p| p != u32::MAX)
    };
    let mut hessian = Vec::with_capacity(pulled.len() / ENTRY_FLOATS);
    let mut at = Vec::with_capacity(pulled.len() / ENTRY_FLOATS);
    for e in pulled.chunks(ENTRY_FLOATS) {
        let Some((a, b)) = column(e[0], e[1]).zip(column(e[2], e[3])) else {
            return Err(format!(
                "a Hessian entry names columns outside the working set: {:?}",
                &e[..4]
            ));
        };
        hessian.push(e[4]);
        at.push((a.min(b), a.max(b)));
    }
    Ok((hessian, at))
}

/// Coordinate descent on the exact model: `x` and the summed `(g, h)` pairs `sums` of the
/// working features (key-major), `hessian` the pulled values for the entries `at` names
/// (upper triangle; an entry named twice is summed: one per worker). Returns the direction
/// over the working set. The Hessian is held by rows of its nonzeros (compressed rows), so an
/// update costs what its coordinate's row holds, not the working set's size.
pub fn direction(
    x: &[f32],
    sums: &[f32],
    (hessian, at): (&[f32], &[(u32, u32)]),
    (lambda, delta): (f32, f32),
) -> Vec<f64> {
    let n = x.len();
    let (lambda, delta) = (f64::from(lambda), f64::from(delta));
    let mut diag = vec![0.0f64; n];
    let mut start = vec![0usize; n + 1];
    for &(a, b) in at {
        start[a as usize + 1] += 1;
        if a != b {
            start[b as usize + 1] += 1;
        }
    }
    for a in 0..n {
        start[a + 1] += start[a];
    }
    let mut entries = vec![(0u32, 0.0f64); start[n]];
    let mut next = start.clone();
    let mut put = |row: u32, col: u32, v: f64| {
        entries[next[row as usize]] = (col, v);
        next[row as usize] += 1;
    };
    for (&v, &(a, b)) in hessian.iter().zip(at) {
        let v = f64::from(v);
        put(a, b, v);
        if a == b {
            diag[a as usize] += v;
        } else {
            put(b, a, v);
        }
    }
    let mut d = vec![0.0f64; n];
    let mut hd = vec![0.0f64; n];
    let mut first = None;
    for _ in 0..MAX_PASSES {
        let mut largest = 0.0f64;
        for a in 0..n {
            let curv = diag[a].max(0.0) + delta;
            let now = f64::from(x[a]) + d[a];
            let grad = f64::from(sums[2 * a]) + hd[a] + delta * d[a];
            let moved = soft_threshold(now - grad / curv, lambda / curv) - now;
            if moved == 0.0 {
                continue;
            }
            d[a] += moved;
            largest = largest.max(curv * moved.abs());
            for &(b, hab) in &entries[start[a]..start[a + 1]] {
                hd[b as usize] += hab * moved;
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
