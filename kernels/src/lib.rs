//! Numeric update kernels of ferrops: everything the server does to a block of parameters when a
//! push arrives. [`Rule`] names the update (assign, sum, sgd, momentum, adagrad, adam, ftrl,
//! prox_l1, elastic net, scaled prox_l1) with its hyper-parameters; [`apply_dense`] and
//! [`apply_sparse`] run it over contiguous parameters or over rows picked by slot; [`sum_k`]
//! aggregates several workers' pushes; the [`filter`] functions list the coordinates worth
//! sending; [`convert`] compresses values to fp16/bf16. Every kernel has a plain scalar reference
//! in [`scalar`] and a fast path for AVX2 and AVX-512 chosen once at run time ([`active_isa`]);
//! [`force_isa`] / the methods on [`Isa`] pick a tier explicitly. [`mod@bench`] measures them. The
//! crate does no I/O and allocates nothing in its loops.
//!
//! # Layout
//! `rule.rs` (Rule, State) · `apply.rs` (validation and dispatch) · `ops.rs` (each rule as a
//! scalar and a vector body) · `simd.rs` (the vector abstraction and loops) · `x86/` (AVX2 and
//! AVX-512 instantiations) · `scalar/` (the reference) · `filter.rs` · `convert.rs` · `isa.rs`
//! (detection) · `bench.rs` (measurement harness, no printing).
//!
//! # Formulas
//! `S(x, t) = 0 if |x| <= t, else x - copysign(t, x)` is soft-thresholding. Per element, with
//! gradient `g` (and curvature `h`):
//!
//! | rule | state | update |
//! |---|---|---|
//! | Assign | – | `w = g` |
//! | Sum | – | `w = w + g` |
//! | Sgd | – | `w = w - lr*g` |
//! | Momentum | `v` | `v = mu*v + g; w = w - lr*v` |
//! | AdaGrad | `n` | `n = n + g*g; w = w - lr*g / (sqrt(n) + eps)` |
//! | Adam | `m, v` | `m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; w = w - lr_t*m / (sqrt(v) + eps)` |
//! | Ftrl | `z, n` | McMahan et al. 2013, see [`scalar::elem::ftrl`] |
//! | ProxL1 | – | `w = S(w - lr*g, lr*l1)` |
//! | ElasticNet | – | `w = S(w - lr*g, lr*l1) * (1 / (1 + lr*l2))` |
//! | ScaledProxL1 | – | `r = 1/(h + delta); w = S(w - g*r, l1*r)` (inputs planar: all g, then all h) |
//!
//! ## Adam step count
//! `Rule::Adam` carries `step`, the 1-based step number `t` for bias correction,
//! `lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)` (computed once per call in f64). The caller owns
//! the counter: the server keeps it per table (or per row for sparse tables, if it wants exact
//! per-row correction) and increments it once per applied update. Keeping it outside the
//! kernel keeps the state at two arrays and makes a call a pure function of its arguments
//! (replay and replication give the same result). `step == 0` is rejected.
//!
//! # Exactness: bit-identical on every tier (0 ULP)
//! The fast paths perform the same IEEE-754 operations, in the same order, as the scalar
//! reference: add, sub, mul, correctly rounded div and sqrt, no fused multiply-add, no
//! reciprocal approximations. So every tier gives bit-identical results for every input,
//! including ±0, subnormals, infinities and NaN (the ULP bound is 0; the tests check bit
//! equality). FMA is deliberately not used: these kernels are bound by memory bandwidth, so FMA
//! would buy no speed, and bit-identical results let replicas on different CPUs agree exactly.
//! Hyper-parameters are pre-combined once per call in scalar code shared by all tiers
//! (`lr*l1`, `1/(1 + lr*l2)`, `1/alpha`, `1 - b1`, `lr_t`). `sum_k` adds left to right on every
//! tier. Where the formulas multiply by a reciprocal instead of dividing (elastic net, FTRL,
//! scaled prox_l1: one division per element instead of two or three, since the divider limits
//! in-cache speed) the result may differ from the textbook quotient by 1 ULP per reciprocal;
//! that is part of the definition, identical on every tier.
//!
//! # NaN and infinity policy
//! Kernels never clean values: a NaN in a weight, state, input or hyper-parameter propagates
//! to every output that depends on it (soft-thresholding tests `|x| <= t`, which is false for
//! NaN, so a NaN is not zeroed), and infinities follow IEEE arithmetic. The filters list NaN
//! coordinates as significant / not skippable, so a NaN is pushed on, never silently dropped.
//! Conversions keep NaN as NaN (quiet bit set, sign and top payload kept) and round overflow to
//! ±inf. Inputs are not checked for NaN.
//!
//! # Tiers and speed
//! AVX-512 uses only AVX-512F intrinsics (stable since Rust 1.89); AVX2 also needs F16C. Both
//! are chosen once at run time; other targets run the scalar reference (NEON is not written
//! yet). The vector loop peels a scalar head so stores to `w` are vector-aligned and runs two
//! vectors per iteration; AVX-512 finishes a tail shorter than a vector with one masked step.
//! The sparse form prefetches the rows of the slots eight positions ahead and runs rows
//! narrower than half a vector with the scalar form. Write-only outputs of 16 MiB or more
//! (`Assign`, [`sum_k`], the conversions) use non-temporal stores, saving the
//! read-for-ownership. The filters build their index lists with a register compress (AVX-512)
//! or a permute table (AVX2) instead of a loop over set bits.
//!
//! # Errors
//! Every length, state count, slot and `dim` is checked before the first element is touched;
//! a failed call returns a [`KernelError`] and leaves all arrays unchanged. No kernel panics
//! on peer-supplied data.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod apply;
pub mod bench;
pub mod convert;
mod error;
pub mod filter;
// The vector bodies and loops are only instantiated by the x86 tiers.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod generic;
mod isa;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod ops;
mod rule;
pub mod scalar;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use apply::{apply_dense, apply_sparse, sum_k};
pub use error::KernelError;
pub use filter::{kkt_active_indices, significant_indices};
pub use isa::{active_isa, detected_isa, force_isa, force_scalar, with_isa, Isa};
pub use rule::{Rule, State};
