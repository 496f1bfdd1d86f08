//! Scalar f32 <-> fp16 / bf16 conversions, round-to-nearest-even, written from the IEEE 754
//! encodings.

/// f32 to IEEE binary16 bits, round-to-nearest-even. Overflow goes to ±inf, tiny values to
/// subnormals or ±0. NaN stays NaN: sign kept, quiet bit set, top 9 payload bits kept (as the
/// x86 F16C instruction does).
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | 0x7c00
        } else {
            sign | 0x7e00 | (man >> 13) as u16
        };
    }
    // Exponent re-biased for binary16 (bias 15 instead of 127).
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e >= 1 {
        // Normal: keep 10 mantissa bits, round on the 13 dropped ones. A carry out of the
        // mantissa correctly bumps the exponent (up to infinity).
        let h = ((e as u32) << 10) | (man >> 13);
        let rest = man & 0x1fff;
        let up = rest > 0x1000 || (rest == 0x1000 && h & 1 == 1);
        return sign | (h + up as u32) as u16;
    }
    if e < -10 {
        // Below half of the smallest subnormal (2^-25): rounds to zero.
        return sign;
    }
    // Subnormal result: value = m * 2^(e - 1 - 23 - 14 + ...) ; h = m >> (14 - e).
    let m = man | 0x0080_0000;
    let shift = (14 - e) as u32;
    let h = m >> shift;
    let rest = m & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let up = rest > half || (rest == half && h & 1 == 1);
    sign | (h + up as u32) as u16
}

/// IEEE binary16 bits to f32 (exact). NaN: sign and payload kept, quiet bit set.
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x03ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise the mantissa into an f32 normal.
            let mut m = man;
            let mut e = 127 - 15 + 1;
            while m & 0x0400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x03ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 to bfloat16 bits (the top half of the f32), round-to-nearest-even; overflow to ±inf,
/// subnormals kept (no flushing). NaN stays NaN: sign and top payload kept, quiet bit set.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    let lsb = (b >> 16) & 1;
    (b.wrapping_add(0x7fff + lsb) >> 16) as u16
}

/// bfloat16 bits to f32 (exact; NaN payload unchanged).
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}
