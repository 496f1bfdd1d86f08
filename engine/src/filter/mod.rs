//! Worker- and server-side filters that decide which coordinates are worth sending (Li et al.,
//! OSDI'14, §5.2 "user-defined filters"). All of them are pure state machines over key lists
//! and values — no I/O — so the worker client and the server can call them on their own paths.
//!
//! - [`significant::SigFilter`] (worker): accumulates updates per key and sends a key only once
//!   its accumulated change is significant relative to the weight; nothing is dropped, only
//!   delayed until it matters or until [`significant::SigFilter::flush`].
//! - [`kkt::KktFilter`] (worker, L1 problems): skips coordinates that sit at zero with a
//!   gradient inside the L1 subdifferential, re-checking all of them every few rounds.
//! - [`changed::ChangedSince`] (server, one per worker): answers a pull with only the keys that
//!   changed significantly since that worker last received them.
//! - [`stats`]: counters of what each filter and codec saved.
//!
//! Key lists must be strictly ascending (as everywhere in ferrops); values are row-major,
//! `dim` f32 per key. Every call validates its arguments before it changes any state.

pub mod changed;
pub mod kkt;
mod rows;
pub mod significant;
pub mod stats;

pub use changed::ChangedSince;
pub use kkt::KktFilter;
pub use significant::SigFilter;
pub use stats::{CodecBytes, FilterCounts, ReducerStats};

use ferrops_kernels::KernelError;

/// Why a filter refused a call (nothing was changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// An array does not have the length the keys and `dim` imply.
    #[error("{what}: length {got}, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// Keys must be strictly ascending.
    #[error("keys not strictly ascending at position {index}")]
    Unsorted { index: usize },
    /// A parameter is outside its domain.
    #[error("invalid parameter {name}: {reason}")]
    Param {
        name: &'static str,
        reason: &'static str,
    },
    /// The mask kernel refused the call.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// Checks strict ascent and the row-major lengths of the arrays in `arrays` (`keys × dim`
/// entries each), and that their entries can be named by the kernels' `u32` indices (every
/// filter has `dim ≥ 1`, so this bounds the keys too).
pub(crate) fn check_rows(
    keys: &[u64],
    dim: usize,
    arrays: &[(&'static str, usize)],
) -> Result<(), FilterError> {
    if let Some(i) = keys.windows(2).position(|w| w[0] >= w[1]) {
        return Err(FilterError::Unsorted { index: i + 1 });
    }
    let expected = keys.len() * dim;
    for &(what, got) in arrays {
        if got != expected {
            return Err(FilterError::Length {
                what,
                got,
                expected,
            });
        }
    }
    if let Some(&(what, got)) = arrays.first() {
        if got > u32::MAX as usize {
            return Err(too_long_for_u32(what, got));
        }
    }
    Ok(())
}

/// The error for an array `what` of `got` entries whose indices a filter cannot name in `u32`.
fn too_long_for_u32(what: &'static str, got: usize) -> FilterError {
    FilterError::Length {
        what,
        got,
        expected: u32::MAX as usize,
    }
}

/// Calls `f(row)` once for every row that holds at least one of the ascending coordinate
/// indices `idx` (rows of `dim` coordinates), in ascending order.
pub(crate) fn for_each_row(idx: &[u32], dim: usize, mut f: impl FnMut(usize)) {
    let mut last = usize::MAX;
    for &i in idx {
        let row = i as usize / dim;
        if row != last {
            f(row);
            last = row;
        }
    }
}
