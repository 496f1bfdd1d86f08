//! Filter masks that decide which coordinates a push or pull can skip, returned as index lists:
//! the public entries (on the active tier), and per filter one `*_on` function that validates
//! the lengths and makes one dispatch to the given tier.

use crate::error::KernelError;
use crate::isa::{active_isa, Isa};

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

/// [`significant_indices`] on `isa` (error if the CPU lacks it).
pub(crate) fn significant_indices_on(
    isa: Isa,
    delta: &[f32],
    w: &[f32],
    theta: f32,
    eps: f32,
    out: &mut Vec<u32>,
) -> Result<usize, KernelError> {
    isa.check()?;
    check(delta.len(), w.len(), "w")?;
    out.clear();
    // Room for every index plus one whole vector of scratch lanes (see `push_bits`).
    out.reserve(delta.len() + 16);
    match isa {
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

/// [`kkt_active_indices`] on `isa` (error if the CPU lacks it).
pub(crate) fn kkt_active_indices_on(
    isa: Isa,
    w: &[f32],
    g: &[f32],
    l1: f32,
    margin: f32,
    out: &mut Vec<u32>,
) -> Result<usize, KernelError> {
    isa.check()?;
    check(w.len(), g.len(), "g")?;
    out.clear();
    out.reserve(w.len() + 16);
    match isa {
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
    significant_indices_on(active_isa(), delta, w, theta, eps, out)
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
    kkt_active_indices_on(active_isa(), w, g, l1, margin, out)
}
