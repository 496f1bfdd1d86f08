//! The vector abstraction the fast paths are written against: a trait over one vector of f32
//! lanes, implemented once per instruction set (`x86/`).
//!
//! Each kernel body is written once, generic over [`Simd`] (`ops.rs`, `generic/`), and
//! instantiated per instruction set inside a `#[target_feature]` function. Every [`Simd`]
//! method maps to one IEEE operation that rounds exactly like the scalar operation of the same
//! name, which is what makes the fast paths bit-identical to the scalar reference. This module
//! depends on nothing else in the crate.

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

/// Output arrays at least this large (bytes) are written with non-temporal stores: they cannot
/// stay in the last-level cache anyway, and skipping the read-for-ownership saves a third of
/// the traffic of a write-only stream.
pub(crate) const STREAM_BYTES: usize = 16 << 20;
