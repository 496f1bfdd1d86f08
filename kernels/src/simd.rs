//! The vector abstraction the fast paths are written against, and the loops that drive an
//! element-wise operation over dense arrays and sparse rows.
//!
//! Each kernel body is written once, generic over [`Simd`], and instantiated per instruction set
//! inside a `#[target_feature]` function (see `x86/`). Every [`Simd`] method maps to one IEEE
//! operation that rounds exactly like the scalar operation of the same name, which is what makes
//! the fast paths bit-identical to the scalar reference.

// The stream loops index parallel arrays (`x[k]` with `s.rw[k]`) over a const count.
#![allow(clippy::needless_range_loop)]

use crate::ops::Op;

/// A vector of `LANES` f32 values.
///
/// # Safety
/// Every method is `unsafe`: an implementation may only be used after the CPU was found to
/// support its instruction set (the dispatcher checks this once), and pointer arguments must be
/// valid for `LANES` reads or writes (no alignment needed).
pub(crate) trait Simd: Copy {
    const LANES: usize;
    type Mask: Copy;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Non-temporal store (bypasses the caches, no read-for-ownership); `p` must be aligned to
    /// `LANES * 4` bytes. A [`Simd::fence`] must follow the last one.
    unsafe fn stream(self, p: *mut f32);
    /// Orders earlier non-temporal stores before later stores.
    unsafe fn fence();
    /// Hints the cache line holding `p` into L1; never faults, any address is allowed.
    unsafe fn prefetch(p: *const f32);
    /// True when [`Simd::load_first`] / [`Simd::store_first`] are cheap (masked memory
    /// operations), so tails shorter than a vector run as one masked vector step.
    const MASKED_TAIL: bool;
    /// Loads lanes `0..len` (`len < LANES`) from `p`, zeros elsewhere; touches only `len`
    /// elements of memory.
    unsafe fn load_first(p: *const f32, len: usize) -> Self;
    /// Stores lanes `0..len` (`len < LANES`) to `p`; touches only `len` elements of memory.
    unsafe fn store_first(self, p: *mut f32, len: usize);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    unsafe fn sqrt(self) -> Self;
    unsafe fn abs(self) -> Self;
    /// Magnitude of `self`, sign bit of `sign` (`f32::copysign`).
    unsafe fn copysign(self, sign: Self) -> Self;
    /// Lane-wise `self <= b`, false when either is NaN.
    unsafe fn le(self, b: Self) -> Self::Mask;
    /// Lane-wise `self == b`, false when either is NaN (`-0 == +0`).
    unsafe fn eq(self, b: Self) -> Self::Mask;
    /// `m ? a : b` lane-wise.
    unsafe fn select(m: Self::Mask, a: Self, b: Self) -> Self;
    /// One bit per lane, lane 0 in bit 0.
    unsafe fn bits(m: Self::Mask) -> u32;
    /// Writes `LANES` u32 to `dst`: first `base + j` for every set bit `j` of `bits`, in
    /// ascending order, then unspecified values. `dst` must be valid for `LANES` writes.
    unsafe fn store_indices(bits: u32, base: u32, dst: *mut u32);
}

/// `S(x, t) = 0 if |x| <= t else x - copysign(t, x)`; NaN in `x` or `t` propagates.
#[inline(always)]
pub(crate) unsafe fn soft_threshold<V: Simd>(x: V, t: V) -> V {
    // SAFETY: the caller upholds the `Simd` contract (feature present).
    unsafe { V::select(x.abs().le(t), V::splat(0.0), x.sub(t.copysign(x))) }
}

/// Pointers to the streams of one element-wise call: up to three read-write arrays (w and the
/// state arrays) and up to two read-only inputs.
#[derive(Clone, Copy)]
pub(crate) struct Streams {
    pub rw: [*mut f32; 3],
    pub ro: [*const f32; 2],
}

impl Streams {
    /// The streams advanced by `off` elements.
    ///
    /// # Safety
    /// Every used pointer must stay inside (or one past) its allocation.
    #[inline(always)]
    pub unsafe fn offset<O: Op>(self, rw_off: usize, ro_off: usize) -> Streams {
        let mut s = self;
        // Unused streams are left untouched and never dereferenced.
        for k in 0..O::RW {
            // SAFETY: the caller guarantees the offset stays inside this used stream's array.
            s.rw[k] = unsafe { s.rw[k].add(rw_off) };
        }
        for k in 0..O::RO {
            // SAFETY: as above, for the input streams.
            s.ro[k] = unsafe { s.ro[k].add(ro_off) };
        }
        s
    }
}

/// Applies `op` to `n` consecutive elements of every stream: full vectors first, then the tail
/// with the scalar form of the same operation.
///
/// # Safety
/// `V` must be supported by the CPU; every used stream must be valid for `n` elements and the
/// read-write streams must not overlap each other or the inputs.
#[inline(always)]
pub(crate) unsafe fn run_dense<V: Simd, O: Op>(op: O, n: usize, s: Streams) {
    // Scalar head until `w` is aligned to a whole vector, so the stores (and the loads of `w`
    // and the state arrays, which usually share its alignment) never split a cache line.
    // (An `f32` pointer is always 4-byte aligned, so `misalign` is a whole number of lanes.)
    let vec_bytes = V::LANES * 4;
    let misalign = (s.rw[0] as usize) % vec_bytes;
    let head = if n >= 4 * V::LANES {
        ((vec_bytes - misalign) % vec_bytes / 4).min(n)
    } else {
        0
    };
    // SAFETY: `head <= n`; the caller guarantees validity for `n` elements of each stream.
    unsafe { run_scalar(op, 0, head, s) };
    // A write-only `w` too large for the caches is written with non-temporal stores (aligned:
    // `head > 0` or already aligned whenever `n >= 4 * LANES`, which the size implies).
    let stream = !O::READS_W && O::RW == 1 && O::RO == 1 && n * 4 >= STREAM_BYTES;
    let mut i = head;
    // SAFETY: (whole block) `i + k*LANES <= n` bounds every vector access, the masked tail
    // touches only `n - i` elements, and the caller guarantees validity for `n` elements of
    // each used stream; when streaming, `w + i` is vector-aligned and the fence follows.
    unsafe {
        // Two vectors per iteration: independent dependency chains for the long-latency rules.
        if stream {
            while i + V::LANES <= n {
                let mut x = [V::splat(0.0); 3];
                op.vector(&mut x, [V::load(s.ro[0].add(i)), V::splat(0.0)]);
                x[0].stream(s.rw[0].add(i));
                i += V::LANES;
            }
            V::fence();
        }
        while i + 2 * V::LANES <= n {
            step::<V, O>(op, s, i);
            step::<V, O>(op, s, i + V::LANES);
            i += 2 * V::LANES;
        }
        if i + V::LANES <= n {
            step::<V, O>(op, s, i);
            i += V::LANES;
        }
        if V::MASKED_TAIL && i < n {
            // The same lane operations as a full step, on the `n - i` remaining elements only.
            let len = n - i;
            let mut x = [V::splat(0.0); 3];
            let mut g = [V::splat(0.0); 2];
            for k in 0..O::RW {
                x[k] = V::load_first(s.rw[k].add(i), len);
            }
            for k in 0..O::RO {
                g[k] = V::load_first(s.ro[k].add(i), len);
            }
            op.vector(&mut x, g);
            for k in 0..O::RW {
                x[k].store_first(s.rw[k].add(i), len);
            }
            i = n;
        }
    }
    // SAFETY: as above.
    unsafe { run_scalar(op, i, n, s) };
}

/// One vector of `op` at element `i`.
///
/// # Safety
/// `V` supported; `i + LANES` elements valid in every used stream.
#[inline(always)]
unsafe fn step<V: Simd, O: Op>(op: O, s: Streams, i: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        let mut x = [V::splat(0.0); 3];
        let mut g = [V::splat(0.0); 2];
        for k in 0..O::RW {
            x[k] = V::load(s.rw[k].add(i));
        }
        for k in 0..O::RO {
            g[k] = V::load(s.ro[k].add(i));
        }
        op.vector(&mut x, g);
        for k in 0..O::RW {
            x[k].store(s.rw[k].add(i));
        }
    }
}

/// Applies the scalar form of `op` to elements `from..n` of every stream (the reference path and
/// the tail of the vector paths).
///
/// # Safety
/// As [`run_dense`].
#[inline(always)]
pub(crate) unsafe fn run_scalar<O: Op>(op: O, from: usize, n: usize, s: Streams) {
    // SAFETY: `i < n` and the caller guarantees validity for `n` elements of each used stream.
    unsafe {
        for i in from..n {
            let mut x = [0.0f32; 3];
            let mut g = [0.0f32; 2];
            for k in 0..O::RW {
                x[k] = *s.rw[k].add(i);
            }
            for k in 0..O::RO {
                g[k] = *s.ro[k].add(i);
            }
            op.scalar(&mut x, g);
            for k in 0..O::RW {
                *s.rw[k].add(i) = x[k];
            }
        }
    }
}

/// Sparse form: for request position `j`, row `slots[j]` of the read-write streams (each row
/// `dim` wide) takes inputs `j*dim ..` of each input stream; input stream `k` starts at
/// `k * slots.len() * dim` (planar), which the caller encodes in `s.ro`.
///
/// # Safety
/// As [`run_dense`], and every slot must have been checked to be in range.
#[inline(always)]
pub(crate) unsafe fn run_sparse<V: Simd, O: Op>(op: O, slots: &[u32], dim: usize, s: Streams) {
    /// Rows ahead whose first and last cache lines are prefetched: slots are random, so the
    /// row loads would otherwise wait for memory one by one.
    const AHEAD: usize = 8;
    for (j, &slot) in slots.iter().enumerate() {
        if let Some(&next) = slots.get(j + AHEAD) {
            let at = next as usize * dim;
            for k in 0..O::RW {
                // SAFETY: prefetch never faults; `wrapping_add` keeps the address arithmetic
                // defined (the row is in range anyway: slots were validated).
                unsafe {
                    V::prefetch(s.rw[k].wrapping_add(at));
                    V::prefetch(s.rw[k].wrapping_add(at + dim - 1));
                }
            }
        }
        // SAFETY: slots were validated against the row count; inputs hold slots.len()*dim.
        unsafe {
            let row = s.offset::<O>(slot as usize * dim, j * dim);
            if dim < V::LANES / 2 {
                // Rows much narrower than a vector: the scalar form has less overhead.
                run_scalar::<O>(op, 0, dim, row);
            } else {
                run_dense::<V, O>(op, dim, row);
            }
        }
    }
}

/// Scalar sparse form (the reference).
///
/// # Safety
/// As [`run_sparse`].
pub(crate) unsafe fn run_sparse_scalar<O: Op>(op: O, slots: &[u32], dim: usize, s: Streams) {
    for (j, &slot) in slots.iter().enumerate() {
        // SAFETY: slots were validated against the row count; inputs hold slots.len()*dim.
        unsafe {
            let row = s.offset::<O>(slot as usize * dim, j * dim);
            run_scalar::<O>(op, 0, dim, row);
        }
    }
}

/// Output arrays at least this large (bytes) are written with non-temporal stores: they cannot
/// stay in the last-level cache anyway, and skipping the read-for-ownership saves a third of
/// the traffic of a write-only stream.
pub(crate) const STREAM_BYTES: usize = 16 << 20;

/// `out = ((bufs[0] + bufs[1]) + ...)`, left to right, zeros for no buffer.
///
/// # Safety
/// `V` supported; every buffer as long as `out`.
#[inline(always)]
pub(crate) unsafe fn sum_k<V: Simd>(out: &mut [f32], bufs: &[&[f32]]) {
    let Some((first, rest)) = bufs.split_first() else {
        out.fill(0.0);
        return;
    };
    let n = out.len();
    let scalar = |out: &mut [f32], j: usize| {
        let mut acc = first[j];
        for b in rest {
            acc += b[j];
        }
        out[j] = acc;
    };
    let vec_bytes = V::LANES * 4;
    let stream = n * 4 >= STREAM_BYTES;
    let head = if stream {
        ((vec_bytes - out.as_ptr() as usize % vec_bytes) % vec_bytes / 4).min(n)
    } else {
        0
    };
    for j in 0..head {
        scalar(out, j);
    }
    let mut i = head;
    // SAFETY: `i + LANES <= n` and every buffer holds `n` values; when streaming, `out + i` is
    // vector-aligned (head peeled above) and the fence follows the loop. Feature from the
    // caller.
    unsafe {
        let o = out.as_mut_ptr();
        while i + V::LANES <= n {
            let mut acc = V::load(first.as_ptr().add(i));
            for b in rest {
                acc = acc.add(V::load(b.as_ptr().add(i)));
            }
            if stream {
                acc.stream(o.add(i));
            } else {
                acc.store(o.add(i));
            }
            i += V::LANES;
        }
        if stream {
            V::fence();
        }
    }
    for j in i..n {
        scalar(out, j);
    }
}
