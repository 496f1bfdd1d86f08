//! Filter masks that decide which coordinates a push or pull can skip, returned as index lists.

use crate::isa::{active_isa, Isa};
use crate::simd::Simd;
use crate::KernelError;

fn check(a: usize, b: usize, what: &'static str) -> Result<(), KernelError> {
    if a != b {
        return Err(KernelError::Length {
            what,
            got: b,
            expected: a,
        });
    }
    if a > u32::MAX as usize + 1 {
        return Err(KernelError::TooLong { len: a });
    }
    Ok(())
}

impl Isa {
    /// [`significant_indices`] on this tier.
    pub fn significant_indices(
        self,
        delta: &[f32],
        w: &[f32],
        theta: f32,
        eps: f32,
        out: &mut Vec<u32>,
    ) -> Result<usize, KernelError> {
        self.check()?;
        check(delta.len(), w.len(), "w")?;
        out.clear();
        // Room for every index plus one whole vector of scratch lanes (see `push_bits`).
        out.reserve(delta.len() + 16);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: equal lengths checked, tier checked.
            Isa::Avx2 => unsafe { crate::x86::avx2::significant(delta, w, theta, eps, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: equal lengths checked, tier checked.
            Isa::Avx512 => unsafe { crate::x86::avx512::significant(delta, w, theta, eps, out) },
            _ => crate::scalar::significant_ref(delta, w, theta, eps, out),
        }
        Ok(out.len())
    }

    /// [`kkt_active_indices`] on this tier.
    pub fn kkt_active_indices(
        self,
        w: &[f32],
        g: &[f32],
        l1: f32,
        margin: f32,
        out: &mut Vec<u32>,
    ) -> Result<usize, KernelError> {
        self.check()?;
        check(w.len(), g.len(), "g")?;
        out.clear();
        out.reserve(w.len() + 16);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: equal lengths checked, tier checked.
            Isa::Avx2 => unsafe { crate::x86::avx2::kkt_active(w, g, l1, margin, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: equal lengths checked, tier checked.
            Isa::Avx512 => unsafe { crate::x86::avx512::kkt_active(w, g, l1, margin, out) },
            _ => crate::scalar::kkt_active_ref(w, g, l1, margin, out),
        }
        Ok(out.len())
    }
}

/// Significantly-modified filter: clears `out`, then lists (ascending) every `i` with
/// `!(|delta[i]| <= theta * max(|w[i]|, eps))`, i.e. the accumulated change exceeds a relative
/// threshold. NaN in `delta` or `w` is always listed. Returns the count. `out` is reserved once
/// up front (no growth inside the loop).
pub fn significant_indices(
    delta: &[f32],
    w: &[f32],
    theta: f32,
    eps: f32,
    out: &mut Vec<u32>,
) -> Result<usize, KernelError> {
    active_isa().significant_indices(delta, w, theta, eps, out)
}

/// KKT filter for L1: clears `out`, then lists every `i` that may NOT be skipped, where skippable
/// means `w[i] == 0 && |g[i]| <= l1 * (1 - margin)` (the coordinate sits at zero and its gradient
/// is safely inside the subdifferential). NaN is never skippable. Returns the count.
pub fn kkt_active_indices(
    w: &[f32],
    g: &[f32],
    l1: f32,
    margin: f32,
    out: &mut Vec<u32>,
) -> Result<usize, KernelError> {
    active_isa().kkt_active_indices(w, g, l1, margin, out)
}

/// Appends `base + j` for every set bit `j` of `bits` (at most `V::LANES` of them).
///
/// # Safety
/// `V` supported, and `out` has spare capacity for at least `V::LANES` more elements.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
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

/// # Safety
/// `V` supported; `delta.len() == w.len()`; `out` has spare capacity for `delta.len() + 16`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn significant_simd<V: Simd>(
    delta: &[f32],
    w: &[f32],
    theta: f32,
    eps: f32,
    out: &mut Vec<u32>,
) {
    let n = delta.len();
    let full = if V::LANES == 32 {
        u32::MAX
    } else {
        (1u32 << V::LANES) - 1
    };
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
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn kkt_active_simd<V: Simd>(
    w: &[f32],
    g: &[f32],
    l1: f32,
    margin: f32,
    out: &mut Vec<u32>,
) {
    let n = w.len();
    let full = if V::LANES == 32 {
        u32::MAX
    } else {
        (1u32 << V::LANES) - 1
    };
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
