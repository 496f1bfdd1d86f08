//! AVX2 tier (8 lanes; F16C for fp16). Every function here is `unsafe` and must only be called
//! after `Isa::Avx2.is_supported()` (the dispatcher's `check`).

use std::arch::x86_64::*;

use crate::simd::Simd;

#[derive(Clone, Copy)]
pub(crate) struct V8(__m256);

// SAFETY (every method below): the `Simd` contract guarantees AVX2 is present and that pointers
// are valid for 8 unaligned f32 reads or writes; the intrinsics have no other precondition.
impl Simd for V8 {
    const LANES: usize = 8;
    type Mask = __m256;
    simd_one_intrinsic_methods!(V8 {
        splat: _mm256_set1_ps,
        load: _mm256_loadu_ps,
        store: _mm256_storeu_ps,
        stream: _mm256_stream_ps,
        sqrt: _mm256_sqrt_ps,
        add: _mm256_add_ps,
        sub: _mm256_sub_ps,
        mul: _mm256_mul_ps,
        div: _mm256_div_ps
    });
    // `vmaskmovps` stores are slow on several AVX2 CPUs: tails stay scalar, and these two
    // (correct but element-wise) are not used by the loops.
    const MASKED_TAIL: bool = false;
    #[inline(always)]
    unsafe fn load_first(p: *const f32, len: usize) -> Self {
        let mut buf = [0.0f32; 8];
        for (j, b) in buf.iter_mut().enumerate().take(len) {
            // SAFETY: the caller guarantees `len` readable elements at `p`.
            *b = unsafe { *p.add(j) };
        }
        // SAFETY: see the impl comment; `buf` holds 8 elements.
        unsafe { V8(_mm256_loadu_ps(buf.as_ptr())) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, len: usize) {
        let mut buf = [0.0f32; 8];
        // SAFETY: see the impl comment; `buf` holds 8 elements.
        unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), self.0) };
        for (j, b) in buf.iter().enumerate().take(len) {
            // SAFETY: the caller guarantees `len` writable elements at `p`.
            unsafe { *p.add(j) = *b };
        }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0)) }
    }
    #[inline(always)]
    unsafe fn copysign(self, sign: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe {
            let m = _mm256_set1_ps(-0.0);
            V8(_mm256_or_ps(
                _mm256_andnot_ps(m, self.0),
                _mm256_and_ps(m, sign.0),
            ))
        }
    }
    #[inline(always)]
    unsafe fn le(self, b: Self) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_cmp_ps::<_CMP_LE_OQ>(self.0, b.0) }
    }
    #[inline(always)]
    unsafe fn eq(self, b: Self) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, b.0) }
    }
    #[inline(always)]
    unsafe fn select(m: __m256, a: Self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_blendv_ps(b.0, a.0, m)) }
    }
    #[inline(always)]
    unsafe fn bits(m: __m256) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_movemask_ps(m) as u32 }
    }
    #[inline(always)]
    unsafe fn store_indices(bits: u32, base: u32, dst: *mut u32) {
        // SAFETY: see the impl comment; `dst` is valid for 8 u32 writes (trait contract), and
        // `bits < 256` indexes the table.
        unsafe {
            let perm =
                _mm256_loadu_si256(COMPRESS[(bits & 0xff) as usize].as_ptr() as *const __m256i);
            let lanes = _mm256_add_epi32(_mm256_set1_epi32(base as i32), perm);
            _mm256_storeu_si256(dst as *mut __m256i, lanes);
        }
    }
}

/// For each 8-bit mask, the positions of its set bits in ascending order (then zeros).
static COMPRESS: [[u32; 8]; 256] = compress_table();

const fn compress_table() -> [[u32; 8]; 256] {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let mut k = 0;
        let mut j = 0;
        while j < 8 {
            if m & (1 << j) != 0 {
                t[m][k] = j as u32;
                k += 1;
            }
            j += 1;
        }
        m += 1;
    }
    t
}

generic_entry_points!(V8, "avx2,f16c");

stream_conversion! {
    /// # Safety
    /// AVX2 and F16C present; equal lengths.
    #[target_feature(enable = "avx2,f16c")]
    fn f32_to_f16(f32 => u16) via crate::scalar::f32_to_f16_bits;
    lanes 8, align 16;
    |s, d: *mut __m128i| _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s));
    store _mm_storeu_si128, stream _mm_stream_si128
}

stream_conversion! {
    /// # Safety
    /// AVX2 and F16C present; equal lengths.
    #[target_feature(enable = "avx2,f16c")]
    fn f16_to_f32(u16 => f32) via crate::scalar::f16_bits_to_f32;
    lanes 8, align 32;
    |s, d: *mut f32| _mm256_cvtph_ps(_mm_loadu_si128(s as *const __m128i));
    store _mm256_storeu_ps, stream _mm256_stream_ps
}

stream_conversion! {
    /// # Safety
    /// AVX2 present; equal lengths.
    #[target_feature(enable = "avx2,f16c")]
    fn f32_to_bf16(f32 => u16) via crate::scalar::f32_to_bf16_bits;
    lanes 8, align 16;
    setup {
        let one = _mm256_set1_epi32(1);
        let round = _mm256_set1_epi32(0x7fff);
        let quiet = _mm256_set1_epi32(0x40);
    }
    |s, d: *mut __m128i| {
        let v = _mm256_loadu_ps(s);
        let x = _mm256_castps_si256(v);
        let hi = _mm256_srli_epi32::<16>(x);
        let lsb = _mm256_and_si256(hi, one);
        let r = _mm256_srli_epi32::<16>(_mm256_add_epi32(_mm256_add_epi32(x, round), lsb));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        let res = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
        // Pack 32 -> 16 bits per 128-bit lane, then gather the two low halves.
        let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(res, res));
        _mm256_castsi256_si128(packed)
    };
    store _mm_storeu_si128, stream _mm_stream_si128
}

stream_conversion! {
    /// # Safety
    /// AVX2 present; equal lengths.
    #[target_feature(enable = "avx2,f16c")]
    fn bf16_to_f32(u16 => f32) via crate::scalar::bf16_bits_to_f32;
    lanes 8, align 32;
    |s, d: *mut f32| {
        let h = _mm_loadu_si128(s as *const __m128i);
        let x = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
        _mm256_castsi256_ps(x)
    };
    store _mm256_storeu_ps, stream _mm256_stream_ps
}
