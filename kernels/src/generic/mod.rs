//! The generic kernel bodies: every loop written once over the [`Simd`] vector abstraction and
//! instantiated per instruction set inside a `#[target_feature]` function (see `x86/`), plus
//! the scalar loops that form the reference tier.
//!
//! Nothing here checks its arguments: every function is `unsafe` and relies on the dispatch
//! layer (`apply.rs`, `filter.rs`) to have validated lengths, slots and the tier first.
//!
//! [`Simd`]: crate::simd::Simd

mod elementwise;
mod filter;
mod sum;

pub(crate) use elementwise::{run_dense, run_scalar, run_sparse, run_sparse_scalar, Streams};
pub(crate) use filter::{kkt_active_simd, significant_simd};
pub(crate) use sum::sum_k;
