//! The scalar reference: the one-element formulas of every rule ([`elem`]), the fp16 / bf16
//! bit conversions, and the plain loops of the k-way sum and the filters, compiled without
//! target features. Every fast tier must match them bit for bit (see the crate docs).
//!
//! The reference of a whole kernel is the `Isa::Scalar` tier, which runs these formulas (the
//! element-wise rules through `ops.rs`): tests and benchmarks call it through the one public
//! entry with the tier pinned, `with_isa(Isa::Scalar, || apply_dense(..))`. This module
//! depends on nothing else in the crate.

pub mod elem;

mod convert;
mod filter;

pub use convert::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
pub(crate) use filter::{kkt_active_ref, significant_ref};

/// Lengths already checked.
pub(crate) fn sum_k_ref(out: &mut [f32], bufs: &[&[f32]]) {
    match bufs.split_first() {
        None => out.fill(0.0),
        Some((first, rest)) => {
            out.copy_from_slice(first);
            for b in rest {
                for (o, x) in out.iter_mut().zip(b.iter()) {
                    *o += *x;
                }
            }
        }
    }
}
