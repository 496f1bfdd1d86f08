//! Dispatch of the element-wise kernels: [`apply_dense`], [`apply_sparse`] and [`sum_k`] are
//! the public entries (on the active tier); each `*_on` function validates everything a peer
//! could get wrong, then makes one dispatch to the given tier (the bench harness calls those
//! directly to compare tiers).

use crate::error::{check_len, KernelError};
use crate::generic::{run_scalar, run_sparse_scalar, Streams};
use crate::isa::{on_active_isa, on_tier, Isa};
use crate::ops::{with_op, Op};
use crate::rule::{Rule, State};

/// Checks the state arrays against the rule and `w_len`, and builds the streams (inputs planar,
/// each `per_input` long).
fn streams(
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    inputs: &[f32],
    per_input: usize,
) -> Result<Streams, KernelError> {
    rule.validate()?;
    if state.len() != rule.state_len() {
        return Err(KernelError::StateCount {
            rule: rule.name(),
            got: state.len(),
            expected: rule.state_len(),
        });
    }
    let expected_inputs = per_input
        .checked_mul(rule.inputs())
        .ok_or(KernelError::Length {
            what: "inputs",
            got: inputs.len(),
            expected: usize::MAX,
        })?;
    check_len("inputs", inputs.len(), expected_inputs)?;
    let n = w.len();
    let mut s = Streams {
        rw: [std::ptr::null_mut(); 3],
        ro: [std::ptr::null(); 2],
    };
    s.rw[0] = w.as_mut_ptr();
    if let Some(a) = state.a {
        check_len("state[0]", a.len(), n)?;
        s.rw[1] = a.as_mut_ptr();
    }
    if let Some(b) = state.b {
        check_len("state[1]", b.len(), n)?;
        s.rw[2] = b.as_mut_ptr();
    }
    s.ro[0] = inputs.as_ptr();
    // The second input starts after the first (planar); only read by two-input rules.
    s.ro[1] = inputs.as_ptr().wrapping_add(per_input);
    Ok(s)
}

/// [`apply_dense`] on `isa` (error if the CPU lacks it).
pub(crate) fn apply_dense_on(
    isa: Isa,
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    inputs: &[f32],
) -> Result<(), KernelError> {
    isa.check()?;
    let n = w.len();
    let s = streams(rule, w, state, inputs, n)?;
    with_op!(rule, op => {
        // SAFETY: `streams` checked every used array against `n` (w, states: n; inputs:
        // rule.inputs()*n), the borrows guarantee no overlap, and `check` the tier.
        unsafe { dense_on(isa, op, n, s) }
    });
    Ok(())
}

/// [`apply_sparse`] on `isa` (error if the CPU lacks it).
pub(crate) fn apply_sparse_on(
    isa: Isa,
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    slots: &[u32],
    dim: usize,
    inputs: &[f32],
) -> Result<(), KernelError> {
    isa.check()?;
    if dim == 0 {
        return Err(KernelError::ZeroDim);
    }
    let rows = w.len() / dim;
    for (index, &slot) in slots.iter().enumerate() {
        if slot as usize >= rows {
            return Err(KernelError::SlotOutOfRange {
                index,
                slot,
                rows,
                dim,
            });
        }
    }
    let per_input = slots.len().checked_mul(dim).ok_or(KernelError::Length {
        what: "inputs",
        got: inputs.len(),
        expected: usize::MAX,
    })?;
    let s = streams(rule, w, state, inputs, per_input)?;
    with_op!(rule, op => {
        // SAFETY: every slot addresses a whole row inside w (and so inside each state array,
        // checked to have w's length), inputs hold rule.inputs()*slots.len()*dim values.
        unsafe { sparse_on(isa, op, slots, dim, s) }
    });
    Ok(())
}

/// [`sum_k`] on `isa` (error if the CPU lacks it).
pub(crate) fn sum_k_on(isa: Isa, out: &mut [f32], bufs: &[&[f32]]) -> Result<(), KernelError> {
    isa.check()?;
    for b in bufs {
        check_len("sum_k input", b.len(), out.len())?;
    }
    // SAFETY: lengths checked above, tier checked by `check`.
    unsafe { on_tier!(isa, sum_k(out, bufs), scalar: crate::scalar::sum_k_ref(out, bufs)) }
    Ok(())
}

/// # Safety
/// As `generic::run_dense`, and `isa` must be supported.
#[inline(always)]
unsafe fn dense_on<O: Op>(isa: Isa, op: O, n: usize, s: Streams) {
    // SAFETY: forwarded contract.
    unsafe { on_tier!(isa, dense(op, n, s), scalar: run_scalar(op, 0, n, s)) }
}

/// # Safety
/// As `generic::run_sparse`, and `isa` must be supported.
#[inline(always)]
unsafe fn sparse_on<O: Op>(isa: Isa, op: O, slots: &[u32], dim: usize, s: Streams) {
    // SAFETY: forwarded contract.
    unsafe {
        on_tier!(isa, sparse(op, slots, dim, s), scalar: run_sparse_scalar(op, slots, dim, s))
    }
}

on_active_isa! {
    /// Applies `rule` to every element: `w[i]` (and `state.*[i]`) updated from `inputs[i]` (and, for
    /// two-input rules, `inputs[n + i]`). Needs `w`, each state array and each input of equal length;
    /// anything else is a [`KernelError`] and nothing is modified.
    pub fn apply_dense(
        rule: Rule,
        w: &mut [f32],
        state: State<'_>,
        inputs: &[f32],
    ) -> Result<(), KernelError> => apply_dense_on;

    /// Applies `rule` to rows `slots[j]` of `w` (rows `dim` wide; a trailing partial row is never addressed), the
    /// same rows of each state array, with inputs `j*dim ..(j+1)*dim` (per input array; arrays planar,
    /// each `slots.len()*dim` long). Rows are processed in request order, so a repeated slot sees the
    /// previous update. Everything is validated before any element is touched.
    pub fn apply_sparse(
        rule: Rule,
        w: &mut [f32],
        state: State<'_>,
        slots: &[u32],
        dim: usize,
        inputs: &[f32],
    ) -> Result<(), KernelError> => apply_sparse_on;

    /// Aggregation of several pushes: `out[i] = ((bufs[0][i] + bufs[1][i]) + ...) + bufs[k-1][i]`,
    /// summed left to right (so every tier rounds identically); `out` is overwritten (zeros for
    /// `k = 0`). Every buffer must have `out`'s length.
    pub fn sum_k(out: &mut [f32], bufs: &[&[f32]]) -> Result<(), KernelError> => sum_k_on;
}
