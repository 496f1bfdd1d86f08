//! Value compression: f32 <-> IEEE fp16 and f32 <-> bfloat16, round-to-nearest-even, every tier
//! bit-identical to the scalar reference (`scalar::f32_to_f16_bits` and friends). Each
//! conversion is a public entry (on the active tier) and a `*_on` function that checks the
//! lengths and makes one dispatch to the given tier.

use crate::error::KernelError;
use crate::isa::{active_isa, Isa};

fn check(src: usize, dst: usize) -> Result<(), KernelError> {
    if src == dst {
        Ok(())
    } else {
        Err(KernelError::Length {
            what: "conversion dst",
            got: dst,
            expected: src,
        })
    }
}

macro_rules! conversion {
    ($(#[$doc:meta])* $name:ident / $name_on:ident, $src:ty, $dst:ty, $scalar:path) => {
        #[doc = concat!("[`", stringify!($name), "`] on `isa` (error if the CPU lacks it).")]
        pub(crate) fn $name_on(
            isa: Isa,
            src: &[$src],
            dst: &mut [$dst],
        ) -> Result<(), KernelError> {
            isa.check()?;
            check(src.len(), dst.len())?;
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: equal lengths checked, tier checked.
                Isa::Avx2 => unsafe { crate::x86::avx2::$name(src, dst) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: equal lengths checked, tier checked.
                Isa::Avx512 => unsafe { crate::x86::avx512::$name(src, dst) },
                _ => {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = $scalar(*s);
                    }
                }
            }
            Ok(())
        }

        $(#[$doc])*
        pub fn $name(src: &[$src], dst: &mut [$dst]) -> Result<(), KernelError> {
            $name_on(active_isa(), src, dst)
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
