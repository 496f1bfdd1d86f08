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
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_set1_ps(x)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: see the impl comment.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: see the impl comment; the caller guarantees 32-byte alignment.
        unsafe { _mm256_stream_ps(p, self.0) }
    }
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
        unsafe { V8(_mm256_add_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_sub_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_mul_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_div_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        // SAFETY: see the impl comment.
        unsafe { V8(_mm256_sqrt_ps(self.0)) }
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

/// # Safety
/// AVX2 and F16C present; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 16, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f32_to_f16_bits(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 16-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 8 <= n` bounds the 8-element load and the 8-u16 (16-byte) store.
    unsafe {
        while i + 8 <= n {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            let d = dst.as_mut_ptr().add(i) as *mut __m128i;
            if stream.is_some() {
                _mm_stream_si128(d, h);
            } else {
                _mm_storeu_si128(d, h);
            }
            i += 8;
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
/// AVX2 and F16C present; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 32, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f16_bits_to_f32(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 32-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 8 <= n` bounds the 16-byte load and the 8-element store.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            let f = _mm256_cvtph_ps(h);
            if stream.is_some() {
                _mm256_stream_ps(dst.as_mut_ptr().add(i), f);
            } else {
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), f);
            }
            i += 8;
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
/// AVX2 present; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 16, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::f32_to_bf16_bits(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 16-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 8 <= n` bounds the 8-element load and the 16-byte store.
    unsafe {
        let one = _mm256_set1_epi32(1);
        let round = _mm256_set1_epi32(0x7fff);
        let quiet = _mm256_set1_epi32(0x40);
        while i + 8 <= n {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            let x = _mm256_castps_si256(v);
            let hi = _mm256_srli_epi32::<16>(x);
            let lsb = _mm256_and_si256(hi, one);
            let r = _mm256_srli_epi32::<16>(_mm256_add_epi32(_mm256_add_epi32(x, round), lsb));
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            let res = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
            // Pack 32 -> 16 bits per 128-bit lane, then gather the two low halves.
            let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(res, res));
            let d = dst.as_mut_ptr().add(i) as *mut __m128i;
            if stream.is_some() {
                _mm_stream_si128(d, _mm256_castsi256_si128(packed));
            } else {
                _mm_storeu_si128(d, _mm256_castsi256_si128(packed));
            }
            i += 8;
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
/// AVX2 present; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len();
    let stream = super::stream_head(dst.as_ptr(), 32, n);
    let head = stream.unwrap_or(0);
    for j in 0..head {
        dst[j] = crate::scalar::bf16_bits_to_f32(src[j]);
    }
    let mut i = head;
    // SAFETY: (streaming: `dst + head` is 32-byte aligned and steps keep it so; the
    // fence follows the loop.) `i + 8 <= n` bounds the 16-byte load and the 8-element store.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            let x = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            if stream.is_some() {
                _mm256_stream_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(x));
            } else {
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(x));
            }
            i += 8;
        }
        if stream.is_some() {
            _mm_sfence();
        }
    }
    for j in i..n {
        dst[j] = crate::scalar::bf16_bits_to_f32(src[j]);
    }
}
