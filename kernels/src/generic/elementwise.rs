//! The loops that drive one element-wise [`Op`] over dense arrays and over sparse rows: a
//! vector loop generic over [`Simd`] (aligned head, two vectors per iteration, masked or
//! scalar tail, non-temporal stores for large write-only outputs), and the scalar loop that is
//! both the reference tier and the tail of the vector loops.

// The stream loops index parallel arrays (`x[k]` with `s.rw[k]`) over a const count.
#![allow(clippy::needless_range_loop)]

use crate::ops::Op;
use crate::simd::{Simd, STREAM_BYTES};

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
