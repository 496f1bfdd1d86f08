//! The filter bodies generic over [`Simd`]: compare a vector of elements, turn the lane mask
//! into bits and append the indices of the set bits with one vector store. One loop,
//! [`select_simd`], serves every filter; a filter is only its per-element test ([`Keep`]).

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

/// A filter's test, per element of two equal-length arrays `a` and `b`: whether index `j` is
/// kept. [`select_simd`] runs it a vector at a time, then over the scalar tail.
trait Keep<V: Simd> {
    /// One bit per lane, set where the lane is kept (bits above `V::LANES` are ignored).
    ///
    /// # Safety
    /// `V` supported.
    unsafe fn lanes(&self, a: V, b: V) -> u32;
    /// Whether element `(a, b)` is kept; must agree with [`Keep::lanes`] lane for lane.
    fn one(&self, a: f32, b: f32) -> bool;
}

/// Appends to `out` the index of every `j` that `keep` keeps, ascending.
///
/// # Safety
/// `V` supported; `a.len() == b.len()`; `out` has spare capacity for `a.len() + 16`.
#[inline(always)]
unsafe fn select_simd<V: Simd>(a: &[f32], b: &[f32], keep: impl Keep<V>, out: &mut Vec<u32>) {
    let n = a.len();
    let full = all_lanes::<V>();
    let mut i = 0;
    // SAFETY: `i + LANES <= n` bounds both loads; feature and spare capacity (at most `i`
    // indices written so far, capacity for `n + 16`) guaranteed by the caller.
    unsafe {
        while i + V::LANES <= n {
            let bits = keep.lanes(V::load(a.as_ptr().add(i)), V::load(b.as_ptr().add(i)));
            push_bits::<V>(out, i, bits & full);
            i += V::LANES;
        }
    }
    for j in i..n {
        if keep.one(a[j], b[j]) {
            out.push(j as u32);
        }
    }
}

/// The significantly-modified test: `delta` is kept unless `|delta| <= theta * max(|w|, eps)`
/// (`vt`, `ve`: `theta` and `eps` splat once for the vector loop).
struct Significant<V> {
    theta: f32,
    eps: f32,
    vt: V,
    ve: V,
}

impl<V: Simd> Keep<V> for Significant<V> {
    #[inline(always)]
    unsafe fn lanes(&self, delta: V, w: V) -> u32 {
        // SAFETY: forwarded contract.
        unsafe {
            let aw = w.abs();
            let scale = V::select(aw.le(self.ve), self.ve, aw);
            !V::bits(delta.abs().le(self.vt.mul(scale)))
        }
    }
    #[inline(always)]
    fn one(&self, delta: f32, w: f32) -> bool {
        let aw = w.abs();
        let scale = if aw <= self.eps { self.eps } else { aw };
        let quiet = delta.abs() <= self.theta * scale;
        !quiet
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
    // SAFETY: forwarded contract.
    unsafe {
        let (vt, ve) = (V::splat(theta), V::splat(eps));
        let keep = Significant { theta, eps, vt, ve };
        select_simd::<V>(delta, w, keep, out);
    }
}

/// The KKT test: `(w, g)` is kept unless `w == 0` and `|g| <= bound` (`vb`, `zero`: `bound` and
/// 0 splat once for the vector loop).
struct KktActive<V> {
    bound: f32,
    vb: V,
    zero: V,
}

impl<V: Simd> Keep<V> for KktActive<V> {
    #[inline(always)]
    unsafe fn lanes(&self, w: V, g: V) -> u32 {
        // SAFETY: forwarded contract.
        unsafe { !(V::bits(w.eq(self.zero)) & V::bits(g.abs().le(self.vb))) }
    }
    #[inline(always)]
    fn one(&self, w: f32, g: f32) -> bool {
        let skippable = w == 0.0 && g.abs() <= self.bound;
        !skippable
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
    let bound = l1 * (1.0 - margin);
    // SAFETY: forwarded contract.
    unsafe {
        let (vb, zero) = (V::splat(bound), V::splat(0.0));
        select_simd::<V>(w, g, KktActive { bound, vb, zero }, out);
    }
}
