//! Which instruction set the dispatched kernels use: detected once, overridable for tests and
//! benchmarks.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::KernelError;

/// An instruction-set tier of the fast paths, ordered from slowest to fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The scalar reference (every target).
    Scalar,
    /// x86-64 AVX2 (with F16C for the fp16 conversions), 8 lanes.
    Avx2,
    /// x86-64 AVX-512F, 16 lanes.
    Avx512,
}

impl Isa {
    /// Every tier, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// Lower-case name as used in benchmark output (`"scalar"`, `"avx2"`, `"avx512"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// True when this CPU can run the tier.
    pub fn is_supported(self) -> bool {
        self <= detected_isa()
    }

    /// The tiers this CPU can run, slowest first (always starts with `Scalar`).
    pub fn supported() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported())
    }

    pub(crate) fn check(self) -> Result<(), KernelError> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(KernelError::Unsupported(self.name()))
        }
    }

    fn to_u8(self) -> u8 {
        self as u8 + 1
    }

    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// 0 = not detected yet, else `Isa::to_u8`.
static DETECTED: AtomicU8 = AtomicU8::new(0);
/// 0 = no override, else `Isa::to_u8` of the forced tier.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The best tier this CPU supports (detected on first use, then cached).
pub fn detected_isa() -> Isa {
    if let Some(isa) = Isa::from_u8(DETECTED.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = detect();
    DETECTED.store(isa.to_u8(), Ordering::Relaxed);
    isa
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c");
    if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Scalar
}

/// The tier the dispatched functions use now: the forced one if set, else the detected one.
#[inline]
pub fn active_isa() -> Isa {
    Isa::from_u8(FORCED.load(Ordering::Relaxed)).unwrap_or_else(detected_isa)
}

/// Process-wide override of the dispatched tier (`None` goes back to detection). Fails with
/// [`KernelError::Unsupported`] if the CPU lacks the tier. Meant for benchmarks and tests;
/// to run one call on a given tier without global effect use the `Isa` methods instead
/// (`Isa::Scalar.apply_dense(..)`).
pub fn force_isa(isa: Option<Isa>) -> Result<(), KernelError> {
    match isa {
        Some(i) => {
            i.check()?;
            FORCED.store(i.to_u8(), Ordering::Relaxed);
        }
        None => FORCED.store(0, Ordering::Relaxed),
    }
    Ok(())
}

/// Shorthand: force the scalar reference (`true`) or go back to detection (`false`).
pub fn force_scalar(on: bool) {
    // Scalar is always supported, so this cannot fail.
    let _ = force_isa(on.then_some(Isa::Scalar));
}
