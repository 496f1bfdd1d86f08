//! Numeric update kernels of ferrops: everything the server does to a block of parameters when a
//! push arrives. [`Rule`] names the update (assign, sum, sgd, momentum, adagrad, adam, ftrl,
//! prox_l1, elastic net, scaled prox_l1) with its hyper-parameters; [`apply_dense`] and
//! [`apply_sparse`] run it over contiguous parameters or over rows picked by slot; [`sum_k`]
//! aggregates several workers' pushes; the [`filter`] functions list the coordinates worth
//! sending; [`convert`] compresses values to fp16/bf16. Each of these is the one public entry of
//! its kernel: it validates its arguments and runs on the tier chosen once at run time
//! ([`active_isa`]: AVX-512, AVX2 or the scalar reference). [`with_isa`] pins a tier for a
//! closure on one thread (tests and benchmarks compare tiers this way; `Isa::Scalar` is the
//! reference), [`force_isa`] for the whole process. [`mod@bench`] measures them. The crate does
//! no I/O and allocates nothing in its loops.
//!
//! # Where things live, and where new code goes
//! Modules depend only on modules listed before them (no import loops):
//!
//! 1. `error.rs` ([`KernelError`]), `rule.rs` ([`Rule`], [`State`]), `isa.rs` ([`Isa`],
//!    detection, [`force_isa`], [`with_isa`]).
//! 2. `scalar/`: the reference, with no crate dependencies: per-element formulas
//!    ([`scalar::elem`]), fp16/bf16 bit conversions, the filter and k-way-sum loops.
//! 3. `simd.rs`: the `Simd` trait, one vector of f32 lanes, with no crate dependencies.
//! 4. `ops.rs`: one `Op` per rule, its element update written twice (scalar, calling
//!    `scalar::elem`, and generic over `Simd`), and `with_op!`, which maps a [`Rule`] to its op.
//! 5. `generic/`: every loop written once over `Op` and `Simd` (dense, sparse, the scalar loop
//!    that is the reference tier, k-way sum, filters). Unchecked: callers validate first.
//! 6. `x86/`: per tier (`avx2.rs`, `avx512.rs`) the `Simd` implementation, the
//!    `#[target_feature]` entry points into `generic/` (written by one macro,
//!    `generic_entry_points!` in `x86/mod.rs`) and the hand-written conversions.
//! 7. Dispatch: `apply.rs` (apply_dense, apply_sparse, sum_k), `filter.rs`, `convert.rs`. Per
//!    kernel a crate-private `*_on(isa, ..)` validates everything and makes the one `match` on
//!    the tier (the dense and sparse updates share one, `apply_on`, told the rows by a `Rows`
//!    value); the public entry calls it with [`active_isa`].
//! 8. `bench.rs`: the measurement harness (calls the `*_on` functions; no printing).
//!
//! **A new update rule** needs: a [`Rule`] variant (with `state_len`, `inputs`, `name`), its
//! formula in `scalar/elem.rs`, an `Op` in `ops.rs` whose vector body performs the same IEEE
//! operations in the same order, an arm in `with_op!`, a hand case in `tests/hand.rs` and a
//! strategy arm in `tests/props.rs` (which compares every tier bit for bit with the reference).
//! Dispatch and every tier pick it up through `with_op!`. **A new kind of kernel** needs: the
//! scalar reference in `scalar/`, a body generic over `Simd` in `generic/` (a filter is only its
//! per-element test, a `Keep`, run by the one filter loop `select_simd`), an entry point in
//! `generic_entry_points!`, a `*_on` dispatcher plus public entry in a dispatch module
//! (re-exported here), and a property test against `with_isa(Isa::Scalar, ..)`. **A new
//! instruction-set tier** needs: an [`Isa`] variant (`ALL`, `name`, the `u8` codes, `detect`),
//! a module beside `x86/avx2.rs` with a `Simd` implementation, one `generic_entry_points!`
//! invocation and the conversions, and one arm in each `match isa` of the dispatch modules.
//! The property tests then cover it on any CPU that has it.
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
