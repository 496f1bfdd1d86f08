//! The scalar reference of every kernel: plain loops over the formulas in [`elem`], compiled
//! without target features. The dispatched paths must match these (bit for bit, see the crate
//! docs); tests and benchmarks call them directly.

pub mod elem;

mod convert;
mod filter;

pub use convert::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
pub(crate) use filter::{kkt_active_ref, significant_ref};

use crate::{Isa, KernelError, Rule, State};

/// Scalar reference of [`crate::apply_dense`].
pub fn apply_dense(
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    inputs: &[f32],
) -> Result<(), KernelError> {
    Isa::Scalar.apply_dense(rule, w, state, inputs)
}

/// Scalar reference of [`crate::apply_sparse`].
pub fn apply_sparse(
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    slots: &[u32],
    dim: usize,
    inputs: &[f32],
) -> Result<(), KernelError> {
    Isa::Scalar.apply_sparse(rule, w, state, slots, dim, inputs)
}

/// Scalar reference of [`crate::sum_k`].
pub fn sum_k(out: &mut [f32], bufs: &[&[f32]]) -> Result<(), KernelError> {
    Isa::Scalar.sum_k(out, bufs)
}

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
