//! Dispatch of the element-wise kernels: [`apply_dense`], [`apply_sparse`] and [`sum_k`] are
//! the public entries (on the active tier); each `*_on` function validates everything a peer
//! could get wrong, then makes one dispatch to the given tier (the bench harness calls those
//! directly to compare tiers).

use crate::error::{check_len, KernelError};
use crate::generic::{run_scalar, run_sparse_scalar, Streams};
use crate::isa::{active_isa, on_active_isa, on_tier, Isa};
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
        .ok_or_else(|| inputs_overflow(inputs.len()))?;
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

/// Which elements of `w` an update touches.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// Every element: `w[i]` from `inputs[i]` ([`apply_dense`]).
    All,
    /// Rows `slots[j]` of `dim` elements, from inputs `j*dim ..(j+1)*dim` ([`apply_sparse`]).
    Slots { slots: &'a [u32], dim: usize },
}

impl Rows<'_> {
    /// Checks the rows against `w`'s length and returns how many values each input array of the
    /// update holds.
    fn per_input(self, w_len: usize, inputs_len: usize) -> Result<usize, KernelError> {
        let Rows::Slots { slots, dim } = self else {
            return Ok(w_len);
        };
        if dim == 0 {
            return Err(KernelError::ZeroDim);
        }
        let rows = w_len / dim;
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
        slots
            .len()
            .checked_mul(dim)
            .ok_or_else(|| inputs_overflow(inputs_len))
    }
}

/// The error for inputs whose expected length does not fit in `usize`.
fn inputs_overflow(got: usize) -> KernelError {
    KernelError::Length {
        what: "inputs",
        got,
        expected: usize::MAX,
    }
}

/// [`apply_dense`] (`rows`: [`Rows::All`]) or [`apply_sparse`] on `isa` (error if the CPU lacks
/// it): one validation, then one dispatch to the tier's dense or sparse loop.
pub(crate) fn apply_on(
    isa: Isa,
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    rows: Rows<'_>,
    inputs: &[f32],
) -> Result<(), KernelError> {
    isa.check()?;
    let per_input = rows.per_input(w.len(), inputs.len())?;
    let s = streams(rule, w, state, inputs, per_input)?;
    with_op!(rule, op => {
        // SAFETY: `streams` checked every used array (w, states: w's length; inputs:
        // rule.inputs()*per_input), `per_input` that every slot addresses a whole row inside w
        // (and so inside each state array), the borrows guarantee no overlap, and `check` the
        // tier.
        unsafe { rows_on(isa, op, rows, per_input, s) }
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
/// As `generic::run_dense` over `n` elements ([`Rows::All`]) or `generic::run_sparse`, and `isa`
/// must be supported.
#[inline(always)]
unsafe fn rows_on<O: Op>(isa: Isa, op: O, rows: Rows<'_>, n: usize, s: Streams) {
    // SAFETY: forwarded contract.
    unsafe {
        match rows {
            Rows::All => on_tier!(isa, dense(op, n, s), scalar: run_scalar(op, 0, n, s)),
            Rows::Slots { slots, dim } => on_tier!(
                isa,
                sparse(op, slots, dim, s),
                scalar: run_sparse_scalar(op, slots, dim, s)
            ),
        }
    }
}

/// Applies `rule` to every element: `w[i]` (and `state.*[i]`) updated from `inputs[i]` (and, for
/// two-input rules, `inputs[n + i]`). Needs `w`, each state array and each input of equal length;
/// anything else is a [`KernelError`] and nothing is modified.
pub fn apply_dense(
    rule: Rule,
    w: &mut [f32],
    state: State<'_>,
    inputs: &[f32],
) -> Result<(), KernelError> {
    apply_on(active_isa(), rule, w, state, Rows::All, inputs)
}

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
) -> Result<(), KernelError> {
    apply_on(
        active_isa(),
        rule,
        w,
        state,
        Rows::Slots { slots, dim },
        inputs,
    )
}

on_active_isa! {
    /// Aggregation of several pushes: `out[i] = ((bufs[0][i] + bufs[1][i]) + ...) + bufs[k-1][i]`,
    /// summed left to right (so every tier rounds identically); `out` is overwritten (zeros for
    /// `k = 0`). Every buffer must have `out`'s length.
    pub fn sum_k(out: &mut [f32], bufs: &[&[f32]]) -> Result<(), KernelError> => sum_k_on;
}
