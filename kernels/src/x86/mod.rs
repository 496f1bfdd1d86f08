//! x86-64 fast paths: a [`crate::simd::Simd`] implementation per tier and the
//! `#[target_feature]` entry points that instantiate the generic kernel bodies.

pub(crate) mod avx2;
pub(crate) mod avx512;

/// For a conversion writing `n` elements of `T` to `dst`: `None` when the output is small enough
/// to stay cached (plain stores), else `Some(head)`, the number of leading elements to convert
/// with scalar code so that `dst + head` is aligned to `align` bytes for non-temporal stores.
pub(crate) fn stream_head<T>(dst: *const T, align: usize, n: usize) -> Option<usize> {
    let size = std::mem::size_of::<T>();
    if n * size < crate::generic::STREAM_BYTES {
        return None;
    }
    Some(((dst as usize).wrapping_neg() % align / size).min(n))
}
