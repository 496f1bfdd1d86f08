//! The filter bodies generic over [`Simd`]: compare a vector of elements, turn the lane mask
//! into bits and append the indices of the set bits with one vector store.

use crate::simd::Simd;

/// Appends `base + j` for every set bit `j` of `bits` (at most `V::LANES` of them).
///
/// # Safety
/// `V` supported, and `out` has spare capacity for at least `V::LANES` more elements.
#[inline(always)]
unsafe fn push_bits<V: Simd>(out: &mut Vec<u32>, base: usize, bits: u32) {
    let len = out.len();
    // SAFETY: the spare capacity holds `LANES` u32, which `store_indices` writes in full; the
    // first `count_ones` of them are initialised indices, so the new length is valid.
    unsafe {
        V::store_indices(bits, base as u32, out.as_mut_ptr().add(len));
        out.set_len(len + bits.count_ones() as usize);
    }
}

/// The mask with one set bit per lane of `V`.
#[inline(always)]
fn all_lanes<V: Simd>() -> u32 {
    if V::LANES == 32 {
        u32::MAX
    } else {
        (1u32 << V::LANES) - 1
    }
}

/// # Safety
/// `V` supported; `delta.len() == w.len()`; `out` has spare capacity for `delta.len() + 16`.
#[inline(always)]
pub(crate) unsafe fn significant_simd<V: Simd>(
    delta: &[f32],
    w: &[f32],
    theta: f32,
    eps: f32,
    out: &mut Vec<u32>,
) {
    let n = delta.len();
    let full = all_lanes::<V>();
    let mut i = 0;
    // SAFETY: `i + LANES <= n` bounds both loads; feature and spare capacity (at most `i`
    // indices written so far, capacity for `n + 16`) guaranteed by the caller.
    unsafe {
        let (vt, ve) = (V::splat(theta), V::splat(eps));
        while i + V::LANES <= n {
            let d = V::load(delta.as_ptr().add(i)).abs();
            let aw = V::load(w.as_ptr().add(i)).abs();
            let scale = V::select(aw.le(ve), ve, aw);
            let quiet = V::bits(d.le(vt.mul(scale)));
            push_bits::<V>(out, i, !quiet & full);
            i += V::LANES;
        }
    }
    for j in i..n {
        let aw = w[j].abs();
        let scale = if aw <= eps { eps } else { aw };
        let quiet = delta[j].abs() <= theta * scale;
        if !quiet {
            out.push(j as u32);
        }
    }
}

/// # Safety
/// `V` supported; `w.len() == g.len()`; `out` has spare capacity for `w.len() + 16`.
#[inline(always)]
pub(crate) unsafe fn kkt_active_simd<V: Simd>(
    w: &[f32],
    g: &[f32],
    l1: f32,
    margin: f32,
    out: &mut Vec<u32>,
) {
    let n = w.len();
    let full = all_lanes::<V>();
    let bound = l1 * (1.0 - margin);
    let mut i = 0;
    // SAFETY: `i + LANES <= n` bounds both loads; feature and spare capacity (at most `i`
    // indices written so far, capacity for `n + 16`) guaranteed by the caller.
    unsafe {
        let (vb, zero) = (V::splat(bound), V::splat(0.0));
        while i + V::LANES <= n {
            let wv = V::load(w.as_ptr().add(i));
            let gv = V::load(g.as_ptr().add(i)).abs();
            let skip = V::bits(wv.eq(zero)) & V::bits(gv.le(vb));
            push_bits::<V>(out, i, !skip & full);
            i += V::LANES;
        }
    }
    for j in i..n {
        let skippable = w[j] == 0.0 && g[j].abs() <= bound;
        if !skippable {
            out.push(j as u32);
        }
    }
}
