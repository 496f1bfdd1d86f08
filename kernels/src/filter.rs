//! Filter masks that decide which coordinates a push or pull can skip, returned as index lists:
//! the public entries (on the active tier), and per filter one `*_on` function that validates
//! the lengths and makes one dispatch to the given tier.

use crate::error::{check_len, KernelError};
use crate::isa::{on_active_isa, on_tier, Isa};

/// The lengths of a filter's two streams (`b` must have `a`'s length, and `a` must fit the u32
/// indices).
fn check(a: usize, b: usize, what: &'static str) -> Result<(), KernelError> {
    check_len(what, b, a)?;
    if a > u32::MAX as usize + 1 {
        return Err(KernelError::TooLong { len: a });
    }
    Ok(())
}

/// Writes one filter: the public entry `$name` (on the active tier) with the given docs, and
/// `$name_on`, which validates the lengths (`$b` as long as `$a`), clears `out`, reserves room
/// for every index plus one whole vector of scratch lanes (see `push_bits`), and makes one
/// dispatch: the tier's `$tier_fn` entry point, or the scalar `$reference`.
macro_rules! filter {
    (
        $(#[$doc:meta])*
        $name:ident / $name_on:ident($a:ident, $b:ident, $x:ident, $y:ident)
            => $tier_fn:ident, $reference:ident
    ) => {
        #[doc = concat!("[`", stringify!($name), "`] on `isa` (error if the CPU lacks it).")]
        pub(crate) fn $name_on(
            isa: Isa,
            $a: &[f32],
            $b: &[f32],
            $x: f32,
            $y: f32,
            out: &mut Vec<u32>,
        ) -> Result<usize, KernelError> {
            isa.check()?;
            check($a.len(), $b.len(), stringify!($b))?;
            out.clear();
            out.reserve($a.len() + 16);
            // SAFETY: equal lengths checked, tier checked.
            unsafe {
                on_tier!(
                    isa,
                    $tier_fn($a, $b, $x, $y, out),
                    scalar: crate::scalar::$reference($a, $b, $x, $y, out)
                )
            }
            Ok(out.len())
        }

        on_active_isa! {
            $(#[$doc])*
            pub fn $name(
                $a: &[f32],
                $b: &[f32],
                $x: f32,
                $y: f32,
                out: &mut Vec<u32>,
            ) -> Result<usize, KernelError> => $name_on;
        }
    };
}

filter! {
    /// Significantly-modified filter: clears `out`, then lists (ascending) every `i` with
    /// `!(|delta[i]| <= theta * max(|w[i]|, eps))`, i.e. the accumulated change exceeds a
    /// relative threshold. NaN in `delta` or `w` is always listed. Returns the count. `out` is
    /// reserved once up front (no growth inside the loop).
    significant_indices / significant_indices_on(delta, w, theta, eps)
        => significant, significant_ref
}

filter! {
    /// KKT filter for L1: clears `out`, then lists every `i` that may NOT be skipped, where
    /// skippable means `w[i] == 0 && |g[i]| <= l1 * (1 - margin)` (the coordinate sits at zero
    /// and its gradient is safely inside the subdifferential). NaN is never skippable. Returns
    /// the count.
    kkt_active_indices / kkt_active_indices_on(w, g, l1, margin) => kkt_active, kkt_active_ref
}
