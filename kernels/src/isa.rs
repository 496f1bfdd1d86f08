//! Which instruction set the dispatched kernels use: detected once, overridable for tests and
//! benchmarks (process-wide with [`force_isa`], or for one closure on one thread with
//! [`with_isa`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

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

thread_local! {
    /// 0 = no pin on this thread, else `Isa::to_u8` of the tier set by [`with_isa`].
    static PINNED: Cell<u8> = const { Cell::new(0) };
}

/// How many [`with_isa`] calls are running on any thread: while none is, dispatch skips the
/// thread-local lookup (every kernel call on the servers' apply path asks [`active_isa`]).
static PINS: AtomicUsize = AtomicUsize::new(0);

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

/// The tier the dispatched functions use now: the one pinned on this thread by [`with_isa`] if
/// any, else the one forced by [`force_isa`] if set, else the detected one.
#[inline]
pub fn active_isa() -> Isa {
    let pinned = if PINS.load(Ordering::Relaxed) == 0 {
        None
    } else {
        Isa::from_u8(PINNED.with(Cell::get))
    };
    pinned
        .or_else(|| Isa::from_u8(FORCED.load(Ordering::Relaxed)))
        .unwrap_or_else(detected_isa)
}

/// Runs `f` with every kernel it calls on this thread dispatched to `isa`, then restores the
/// previous choice (also when `f` panics). Fails with [`KernelError::Unsupported`], without
/// running `f`, if the CPU lacks the tier. This is how tests and benchmarks run a kernel on a
/// given tier (`with_isa(Isa::Scalar, || apply_dense(..))` is the scalar reference) without
/// affecting other threads.
pub fn with_isa<T>(isa: Isa, f: impl FnOnce() -> Result<T, KernelError>) -> Result<T, KernelError> {
    /// Puts the previous pin back when dropped.
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            PINNED.with(|p| p.set(self.0));
            PINS.fetch_sub(1, Ordering::Relaxed);
        }
    }
    isa.check()?;
    PINS.fetch_add(1, Ordering::Relaxed);
    let _restore = Restore(PINNED.with(|p| p.replace(isa.to_u8())));
    f()
}

/// Process-wide override of the dispatched tier (`None` goes back to detection). Fails with
/// [`KernelError::Unsupported`] if the CPU lacks the tier. Meant for benchmarks and tests;
/// to run calls on a given tier without global effect use [`with_isa`] instead.
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

/// One dispatch to a tier: `$f(args)` from the tier's `x86` module on the x86 tiers, `$scalar`
/// on the scalar tier (and on every other target). The x86 entry points are `unsafe`: the caller
/// wraps the dispatch in `unsafe` with the contract it checked.
macro_rules! on_tier {
    ($isa:expr, $f:ident($($arg:expr),*), scalar: $scalar:expr) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx2 => $crate::x86::avx2::$f($($arg),*),
            #[cfg(target_arch = "x86_64")]
            $crate::isa::Isa::Avx512 => $crate::x86::avx512::$f($($arg),*),
            _ => $scalar,
        }
    };
}
pub(crate) use on_tier;

/// Writes public entries that run their `*_on` function on the active tier: each
/// `pub fn name(args) -> R => name_on;` becomes `name_on(active_isa(), args)`.
macro_rules! on_active_isa {
    ($(
        $(#[$doc:meta])*
        pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $on:ident;
    )*) => {$(
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            $on($crate::isa::active_isa(), $($arg),*)
        }
    )*};
}
pub(crate) use on_active_isa;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_holds_inside_with_isa_only_and_on_its_thread_only() {
        let outside = active_isa();
        let inside = with_isa(Isa::Scalar, || {
            let other_thread = std::thread::spawn(active_isa).join().unwrap();
            Ok((active_isa(), other_thread))
        })
        .unwrap();
        assert_eq!(inside, (Isa::Scalar, outside));
        assert_eq!(active_isa(), outside);
        assert_eq!(PINS.load(Ordering::Relaxed), 0);
    }
}
