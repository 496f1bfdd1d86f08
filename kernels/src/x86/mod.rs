//! x86-64 fast paths: a [`crate::simd::Simd`] implementation per tier, the
//! `#[target_feature]` entry points that instantiate the generic kernel bodies (written once,
//! by `generic_entry_points!`, for every tier) and the hand-written conversions.

/// Writes the `#[target_feature]` entry points of one tier into the module that invokes it:
/// `dense`, `sparse`, `sum_k`, `significant` and `kkt_active`, each compiling the generic body
/// of `crate::generic` for the tier's vector type `$v` with the tier's features enabled (the
/// hot loops are only vectorised inside such a function). Invoked once per tier.
macro_rules! generic_entry_points {
    ($v:ty, $features:literal) => {
        /// # Safety
        /// The tier's features present; streams as `generic::run_dense`.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn dense<O: $crate::ops::Op>(
            op: O,
            n: usize,
            s: $crate::generic::Streams,
        ) {
            // SAFETY: forwarded contract; this function enables the features the vector type
            // needs.
            unsafe { $crate::generic::run_dense::<$v, O>(op, n, s) }
        }

        /// # Safety
        /// The tier's features present; as `generic::run_sparse`.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn sparse<O: $crate::ops::Op>(
            op: O,
            slots: &[u32],
            dim: usize,
            s: $crate::generic::Streams,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::generic::run_sparse::<$v, O>(op, slots, dim, s) }
        }

        /// # Safety
        /// The tier's features present; every buffer as long as `out`.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn sum_k(out: &mut [f32], bufs: &[&[f32]]) {
            // SAFETY: forwarded contract.
            unsafe { $crate::generic::sum_k::<$v>(out, bufs) }
        }

        /// # Safety
        /// The tier's features present; equal lengths.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn significant(
            delta: &[f32],
            w: &[f32],
            theta: f32,
            eps: f32,
            out: &mut Vec<u32>,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::generic::significant_simd::<$v>(delta, w, theta, eps, out) }
        }

        /// # Safety
        /// The tier's features present; equal lengths.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn kkt_active(
            w: &[f32],
            g: &[f32],
            l1: f32,
            margin: f32,
            out: &mut Vec<u32>,
        ) {
            // SAFETY: forwarded contract.
            unsafe { $crate::generic::kkt_active_simd::<$v>(w, g, l1, margin, out) }
        }
    };
}

pub(crate) mod avx2;
pub(crate) mod avx512;

/// For a conversion writing `n` elements of `T` to `dst`: `None` when the output is small enough
/// to stay cached (plain stores), else `Some(head)`, the number of leading elements to convert
/// with scalar code so that `dst + head` is aligned to `align` bytes for non-temporal stores.
pub(crate) fn stream_head<T>(dst: *const T, align: usize, n: usize) -> Option<usize> {
    let size = std::mem::size_of::<T>();
    if n * size < crate::simd::STREAM_BYTES {
        return None;
    }
    Some(((dst as usize).wrapping_neg() % align / size).min(n))
}
