//! AVX-512F tier (16 lanes). Every function here is `unsafe` and must only be called after
//! `Isa::Avx512.is_supported()` (the dispatcher's `check`). Only AVX-512F intrinsics are used
//! (stable since Rust 1.89), so any AVX-512 CPU qualifies.

use std::arch::x86_64::*;

use crate::simd::Simd;

#[derive(Clone, Copy)]
pub(crate) struct V16(__m512);

// SAFETY (every method below): the `Simd` contract guarantees AVX-512F is present and that
// pointers are valid for 16 unaligned f32 reads or writes; the intrinsics need nothing else.
impl Simd for V16 {
    const LANES: usize = 16;
    type Mask = __mmask16;
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_set1_ps(x)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: see the impl comment.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: see the impl comment; the caller guarantees 64-byte alignment.
        unsafe { _mm512_stream_ps(p, self.0) }
    }
    const MASKED_TAIL: bool = true;
    #[inline(always)]
    unsafe fn load_first(p: *const f32, len: usize) -> Self {
        // SAFETY: see the impl comment; masked-off lanes are not accessed (no fault), so only
        // the `len` valid elements are read.
        unsafe { V16(_mm512_maskz_loadu_ps(((1u32 << len) - 1) as __mmask16, p)) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, len: usize) {
        // SAFETY: see the impl comment; only the `len` unmasked lanes are written.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << len) - 1) as __mmask16, self.0) }
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
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_add_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_sub_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_mul_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_div_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_sqrt_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_abs_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn copysign(self, sign: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe {
            let m = _mm512_set1_epi32(i32::MIN);
            let mag = _mm512_andnot_si512(m, _mm512_castps_si512(self.0));
            let sgn = _mm512_and_si512(m, _mm512_castps_si512(sign.0));
            V16(_mm512_castsi512_ps(_mm512_or_si512(mag, sgn)))
        }
    }
    #[inline(always)]
    unsafe fn le(self, b: Self) -> __mmask16 {
        // SAFETY: see the impl comment.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LE_OQ>(self.0, b.0) }
    }
    #[inline(always)]
    unsafe fn eq(self, b: Self) -> __mmask16 {
        // SAFETY: see the impl comment.
        unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, b.0) }
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, a: Self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V16(_mm512_mask_blend_ps(m, b.0, a.0)) }
    }
    #[inline(always)]
    unsafe fn bits(m: __mmask16) -> u32 {
        m as u32
    }
    #[inline(always)]
    unsafe fn store_indices(bits: u32, base: u32, dst: *mut u32) {
        // SAFETY: see the impl comment; `dst` is valid for 16 u32 writes (trait contract).
        // Compress in a register, then one plain store (a compressing store to memory is
        // microcoded and slow on some AVX-512 CPUs).
        unsafe {
            let lanes = _mm512_add_epi32(
                _mm512_set1_epi32(base as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            );
            let packed = _mm512_maskz_compress_epi32(bits as __mmask16, lanes);
            _mm512_storeu_si512(dst as *mut __m512i, packed);
        }
    }
}

generic_entry_points!(V16, "avx512f,avx2,f16c");

/// # Safety
/// AVX-512F present; equal lengths.
#[target_feature(enable = "avx512f,avx2,f16c")]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 32, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f32_to_f16_bits(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 32-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 16 <= n` bounds the 16-element load and the 16-u16 (32-byte) store.
    unsafe {
        while i + 16 <= n {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            let d = dst.as_mut_ptr().add(i) as *mut __m256i;
            if stream.is_some() {
                _mm256_stream_si256(d, h);
            } else {
                _mm256_storeu_si256(d, h);
            }
            i += 16;
        }
        if stream.is_some() {
            _mm_sfence();
        }
    }
    for j in i..n {
        dst[j] = crate::scalar::f32_to_f16_bits(src[j]);
    }
}

/// # Safety
/// AVX-512F present; equal lengths.
#[target_feature(enable = "avx512f,avx2,f16c")]
pub(crate) unsafe fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 64, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f16_bits_to_f32(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 64-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 16 <= n` bounds the 32-byte load and the 16-element store.
    unsafe {
        while i + 16 <= n {
            let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
            let f = _mm512_cvtph_ps(h);
            if stream.is_some() {
                _mm512_stream_ps(dst.as_mut_ptr().add(i), f);
            } else {
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), f);
            }
            i += 16;
        }
        if stream.is_some() {
            _mm_sfence();
        }
    }
    for j in i..n {
        dst[j] = crate::scalar::f16_bits_to_f32(src[j]);
    }
}

/// # Safety
/// AVX-512F present; equal lengths.
#[target_feature(enable = "avx512f,avx2,f16c")]
pub(crate) unsafe fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 32, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f32_to_bf16_bits(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 32-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 16 <= n` bounds the 16-element load and the 32-byte store.
    unsafe {
        let one = _mm512_set1_epi32(1);
        let round = _mm512_set1_epi32(0x7fff);
        let quiet = _mm512_set1_epi32(0x40);
        while i + 16 <= n {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let x = _mm512_castps_si512(v);
            let hi = _mm512_srli_epi32::<16>(x);
            let lsb = _mm512_and_si512(hi, one);
            let r = _mm512_srli_epi32::<16>(_mm512_add_epi32(_mm512_add_epi32(x, round), lsb));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let res = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, quiet));
            let d = dst.as_mut_ptr().add(i) as *mut __m256i;
            if stream.is_some() {
                _mm256_stream_si256(d, _mm512_cvtepi32_epi16(res));
            } else {
                _mm256_storeu_si256(d, _mm512_cvtepi32_epi16(res));
            }
            i += 16;
        }
        if stream.is_some() {
            _mm_sfence();
        }
    }
    for j in i..n {
        dst[j] = crate::scalar::f32_to_bf16_bits(src[j]);
    }
}

/// # Safety
/// AVX-512F present; equal lengths.
#[target_feature(enable = "avx512f,avx2,f16c")]
pub(crate) unsafe fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 64, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::bf16_bits_to_f32(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 64-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 16 <= n` bounds the 32-byte load and the 16-element store.
    unsafe {
        while i + 16 <= n {
            let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
            let x = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
            if stream.is_some() {
                _mm512_stream_ps(dst.as_mut_ptr().add(i), _mm512_castsi512_ps(x));
            } else {
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_castsi512_ps(x));
            }
            i += 16;
        }
        if stream.is_some() {
            _mm_sfence();
        }
    }
    for j in i..n {
        dst[j] = crate::scalar::bf16_bits_to_f32(src[j]);
    }
}
