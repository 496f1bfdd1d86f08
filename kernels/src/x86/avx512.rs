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
    simd_one_intrinsic_methods!(V16 {
        splat: _mm512_set1_ps,
        load: _mm512_loadu_ps,
        store: _mm512_storeu_ps,
        stream: _mm512_stream_ps,
        sqrt: _mm512_sqrt_ps,
        add: _mm512_add_ps,
        sub: _mm512_sub_ps,
        mul: _mm512_mul_ps,
        div: _mm512_div_ps
    });
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

stream_conversion! {
    /// # Safety
    /// AVX-512F present; equal lengths.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    fn f32_to_f16(f32 => u16) via crate::scalar::f32_to_f16_bits;
    lanes 16, align 32;
    |s, d: *mut __m256i| {
        _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_loadu_ps(s))
    };
    store _mm256_storeu_si256, stream _mm256_stream_si256
}

stream_conversion! {
    /// # Safety
    /// AVX-512F present; equal lengths.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    fn f16_to_f32(u16 => f32) via crate::scalar::f16_bits_to_f32;
    lanes 16, align 64;
    |s, d: *mut f32| _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
    store _mm512_storeu_ps, stream _mm512_stream_ps
}

stream_conversion! {
    /// # Safety
    /// AVX-512F present; equal lengths.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    fn f32_to_bf16(f32 => u16) via crate::scalar::f32_to_bf16_bits;
    lanes 16, align 32;
    setup {
        let one = _mm512_set1_epi32(1);
        let round = _mm512_set1_epi32(0x7fff);
        let quiet = _mm512_set1_epi32(0x40);
    }
    |s, d: *mut __m256i| {
        let v = _mm512_loadu_ps(s);
        let x = _mm512_castps_si512(v);
        let hi = _mm512_srli_epi32::<16>(x);
        let lsb = _mm512_and_si512(hi, one);
        let r = _mm512_srli_epi32::<16>(_mm512_add_epi32(_mm512_add_epi32(x, round), lsb));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let res = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, quiet));
        _mm512_cvtepi32_epi16(res)
    };
    store _mm256_storeu_si256, stream _mm256_stream_si256
}

stream_conversion! {
    /// # Safety
    /// AVX-512F present; equal lengths.
    #[target_feature(enable = "avx512f,avx2,f16c")]
    fn bf16_to_f32(u16 => f32) via crate::scalar::bf16_bits_to_f32;
    lanes 16, align 64;
    |s, d: *mut f32| {
        let h = _mm256_loadu_si256(s as *const __m256i);
        let x = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
        _mm512_castsi512_ps(x)
    };
    store _mm512_storeu_ps, stream _mm512_stream_ps
}
