//! Value compression: f32 <-> IEEE fp16 and f32 <-> bfloat16, round-to-nearest-even, every tier
//! bit-identical to the scalar reference (`scalar::f32_to_f16_bits` and friends). Each
//! conversion is a public entry (on the active tier) and a `*_on` function that checks the
//! lengths and makes one dispatch to the given tier.

use crate::error::{check_len, KernelError};
use crate::isa::{on_active_isa, on_tier, Isa};

macro_rules! conversion {
    ($(#[$doc:meta])* $name:ident / $name_on:ident, $src:ty, $dst:ty, $scalar:path) => {
        #[doc = concat!("[`", stringify!($name), "`] on `isa` (error if the CPU lacks it).")]
        pub(crate) fn $name_on(
            isa: Isa,
            src: &[$src],
            dst: &mut [$dst],
        ) -> Result<(), KernelError> {
            isa.check()?;
            check_len("conversion dst", dst.len(), src.len())?;
            // SAFETY: equal lengths checked, tier checked.
            unsafe {
                on_tier!(isa, $name(src, dst), scalar: {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = $scalar(*s);
                    }
                })
            }
            Ok(())
        }

        on_active_isa! {
            $(#[$doc])*
            pub fn $name(src: &[$src], dst: &mut [$dst]) -> Result<(), KernelError> => $name_on;
        }
    };
}

conversion!(
    /// f32 to fp16 bits (round-to-nearest-even; see `scalar::f32_to_f16_bits`). Lengths must match.
    f32_to_f16 / f32_to_f16_on, f32, u16, crate::scalar::f32_to_f16_bits
);
conversion!(
    /// fp16 bits to f32 (exact). Lengths must match.
    f16_to_f32 / f16_to_f32_on, u16, f32, crate::scalar::f16_bits_to_f32
);
conversion!(
    /// f32 to bf16 bits (round-to-nearest-even; see `scalar::f32_to_bf16_bits`). Lengths must match.
    f32_to_bf16 / f32_to_bf16_on, f32, u16, crate::scalar::f32_to_bf16_bits
);
conversion!(
    /// bf16 bits to f32 (exact). Lengths must match.
    bf16_to_f32 / bf16_to_f32_on, u16, f32, crate::scalar::bf16_bits_to_f32
);
