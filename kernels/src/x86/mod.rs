//! x86-64 fast paths: a [`crate::simd::Simd`] implementation per tier, the
//! `#[target_feature]` entry points that instantiate the generic kernel bodies (written once,
//! by `generic_entry_points!`, for every tier) and the hand-written conversions (their vector
//! step written per tier, the scalar head and tail and the store choice by `stream_conversion!`).

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

        filter_entry_point!($v, $features, significant(delta, w, theta, eps) => significant_simd);
        filter_entry_point!($v, $features, kkt_active(w, g, l1, margin) => kkt_active_simd);
    };
}

/// Writes one `#[target_feature]` conversion of `src` into `dst` (equal lengths): the scalar
/// head that aligns `dst` for non-temporal stores (when the output is large enough to stream,
/// see [`stream_head`]), the vector loop `lanes` elements a step, the fence after streaming
/// stores, and the scalar tail. The tier writes only the vector step: `|s, d| convert` turns the
/// `lanes` source elements at `s` into one register that is then stored at `d` (`dst + i` cast
/// to the store's pointer type) with `$store`, or with `$stream` when streaming. `setup` holds
/// constants hoisted out of the loop.
macro_rules! stream_conversion {
    (
        $(#[$attr:meta])*
        fn $name:ident($src:ty => $dst:ty) via $scalar:path;
        lanes $lanes:literal, align $align:literal;
        $(setup { $($setup:stmt;)* })?
        |$s:ident, $d:ident: $dptr:ty| $convert:expr;
        store $store:ident, stream $stream:ident
    ) => {
        $(#[$attr])*
        pub(crate) unsafe fn $name(src: &[$src], dst: &mut [$dst]) {
            let n = src.len();
            let stream = super::stream_head(dst.as_ptr(), $align, n);
            let head = stream.unwrap_or(0);
            for j in 0..head {
                dst[j] = $scalar(src[j]);
            }
            let mut i = head;
            // SAFETY: (streaming: `dst + head` is `align`-byte aligned and steps keep it so; the
            // fence follows the loop.) `i + lanes <= n` bounds the `lanes`-element load and store.
            unsafe {
                $($($setup)*)?
                while i + $lanes <= n {
                    let $s = src.as_ptr().add(i);
                    let $d = dst.as_mut_ptr().add(i) as $dptr;
                    let converted = $convert;
                    if stream.is_some() {
                        $stream($d, converted);
                    } else {
                        $store($d, converted);
                    }
                    i += $lanes;
                }
                if stream.is_some() {
                    _mm_sfence();
                }
            }
            for j in i..n {
                dst[j] = $scalar(src[j]);
            }
        }
    };
}

/// Writes, inside a tier's `impl Simd`, the methods that are one intrinsic each (`splat`, the
/// plain and streaming loads and stores, `sqrt`, and each binary `$op` that applies `$intrinsic`
/// lane by lane) for the tier's vector type `$v`, and `prefetch` and `fence`, which are the same
/// SSE instructions on every tier.
macro_rules! simd_one_intrinsic_methods {
    (
        $v:ident {
            splat: $splat:ident, load: $load:ident,
            store: $store:ident, stream: $stream:ident,
            sqrt: $sqrt:ident,
            $($op:ident: $intrinsic:ident),*
        }
    ) => {
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: see the impl comment.
            unsafe { $v($splat(x)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: see the impl comment.
            unsafe { $v($load(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: see the impl comment.
            unsafe { $store(p, self.0) }
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut f32) {
            // SAFETY: see the impl comment; the caller guarantees alignment to the vector size.
            unsafe { $stream(p, self.0) }
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            // SAFETY: see the impl comment; a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
        #[inline(always)]
        unsafe fn fence() {
            // SAFETY: see the impl comment (SSE, implied by the tier).
            unsafe { _mm_sfence() }
        }
        $(
            #[inline(always)]
            unsafe fn $op(self, b: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $v($intrinsic(self.0, b.0)) }
            }
        )*
        #[inline(always)]
        unsafe fn sqrt(self) -> Self {
            // SAFETY: see the impl comment.
            unsafe { $v($sqrt(self.0)) }
        }
    };
}

/// One filter entry point of `generic_entry_points!`: two equal-length streams and two
/// thresholds in, the indices it selects appended to `out`.
macro_rules! filter_entry_point {
    (
        $v:ty, $features:literal,
        $name:ident($a:ident, $b:ident, $x:ident, $y:ident) => $body:ident
    ) => {
        /// # Safety
        /// The tier's features present; equal lengths.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $name($a: &[f32], $b: &[f32], $x: f32, $y: f32, out: &mut Vec<u32>) {
            // SAFETY: forwarded contract.
            unsafe { $crate::generic::$body::<$v>($a, $b, $x, $y, out) }
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
