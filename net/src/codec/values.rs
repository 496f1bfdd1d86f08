//! Value compression for one table's f32 values: raw, IEEE fp16, bfloat16 (both lossy, rounded
//! to nearest-even by `ferrops-kernels`), or LZ4 (lossless, block format without a size prefix).
//!
//! Every format decodes into a caller slice of the length the header implies; the encoded
//! section must match it exactly. LZ4 decompresses into that slice and may never produce more
//! or fewer bytes than `4 · len`, so a peer cannot make the decoder allocate anything.
//!
//! # Rounding bounds (round-to-nearest-even)
//! - **fp16** (`ValueCodec::Fp16`, 2 bytes/value): for `2^-14 ≤ |x| < 65520` (the fp16 normal
//!   range and its rounding boundary) the decoded value `y` satisfies
//!   `|y - x| ≤ 2^-11 · |x|`. `|x| ≥ 65520` becomes ±inf; below `2^-14` values become fp16
//!   subnormals with absolute error at most `2^-25`, and `|x| ≤ 2^-25` becomes ±0. NaN stays
//!   NaN, ±inf stays ±inf.
//! - **bf16** (`ValueCodec::Bf16`, 2 bytes/value): for normal f32 with `|x|` below
//!   `f32::MAX` rounded to bf16 (`≈ 3.3895e38`), `|y - x| ≤ 2^-8 · |x|`; larger magnitudes
//!   become ±inf. Subnormals keep f32's absolute error of at most `2^-134`. NaN stays NaN.
//! - **Raw** and **Lz4** are exact (bit for bit, NaN payloads included).

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::CodecError;
use ferrops_kernels::convert;

/// Header id of raw little-endian f32.
pub const VALUE_CODEC_RAW: u8 = 0;
/// Header id of IEEE binary16.
pub const VALUE_CODEC_FP16: u8 = 1;
/// Header id of bfloat16.
pub const VALUE_CODEC_BF16: u8 = 2;
/// Header id of LZ4 (block format) over the raw f32 bytes.
pub const VALUE_CODEC_LZ4: u8 = 3;

/// Values converted per step through the stack buffer of the 16-bit codecs.
const CHUNK: usize = 4096;

/// How a values section is encoded (chosen per table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueCodec {
    /// Little-endian f32, exact.
    Raw,
    /// IEEE fp16, 2 bytes per value; see the [rounding bounds](self).
    Fp16,
    /// bfloat16, 2 bytes per value; see the [rounding bounds](self).
    Bf16,
    /// LZ4 block of the raw bytes, exact; pays off on values with many zeros or repeats.
    Lz4,
}

impl ValueCodec {
    /// The id carried in `Header::value_codec`.
    pub fn id(self) -> u8 {
        match self {
            ValueCodec::Raw => VALUE_CODEC_RAW,
            ValueCodec::Fp16 => VALUE_CODEC_FP16,
            ValueCodec::Bf16 => VALUE_CODEC_BF16,
            ValueCodec::Lz4 => VALUE_CODEC_LZ4,
        }
    }

    /// The codec a header id names.
    pub fn from_id(id: u8) -> Result<ValueCodec, CodecError> {
        match id {
            VALUE_CODEC_RAW => Ok(ValueCodec::Raw),
            VALUE_CODEC_FP16 => Ok(ValueCodec::Fp16),
            VALUE_CODEC_BF16 => Ok(ValueCodec::Bf16),
            VALUE_CODEC_LZ4 => Ok(ValueCodec::Lz4),
            _ => Err(CodecError::UnknownCodec { what: "value", id }),
        }
    }

    /// Whether decoding gives back the exact input.
    pub fn is_lossless(self) -> bool {
        matches!(self, ValueCodec::Raw | ValueCodec::Lz4)
    }

    /// The largest section `n` values can encode to (exact for all but LZ4).
    pub fn max_encoded_len(self, n: usize) -> usize {
        match self {
            ValueCodec::Raw => n * 4,
            ValueCodec::Fp16 | ValueCodec::Bf16 => n * 2,
            ValueCodec::Lz4 => lz4_flex::block::get_maximum_output_size(n * 4),
        }
    }
}

/// Appends `values` encoded with `codec` to `out`; returns the number of bytes appended.
pub fn encode_values(
    codec: ValueCodec,
    values: &[f32],
    out: &mut Vec<u8>,
) -> Result<usize, CodecError> {
    let start = out.len();
    match codec {
        ValueCodec::Raw => push_raw(values, out),
        ValueCodec::Fp16 => encode_16(values, out, convert::f32_to_f16)?,
        ValueCodec::Bf16 => encode_16(values, out, convert::f32_to_bf16)?,
        ValueCodec::Lz4 => {
            out.resize(start + codec.max_encoded_len(values.len()), 0);
            let src = values_as_le_bytes(values);
            match lz4_flex::block::compress_into(&src, &mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(e) => {
                    out.truncate(start);
                    return Err(CodecError::Lz4(e.to_string()));
                }
            }
        }
    }
    Ok(out.len() - start)
}

/// Decodes a values section into `out`, whose length is the number of values the caller
/// expects. The section must decode to exactly that many; `out` may be partly written on error.
pub fn decode_values(codec: ValueCodec, bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    match codec {
        ValueCodec::Raw => {
            expect_len("raw values", bytes.len(), out.len() * 4)?;
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            Ok(())
        }
        ValueCodec::Fp16 => decode_16(bytes, out, "fp16 values", convert::f16_to_f32),
        ValueCodec::Bf16 => decode_16(bytes, out, "bf16 values", convert::bf16_to_f32),
        ValueCodec::Lz4 => {
            let expected = out.len() * 4;
            let dst = out.as_mut_bytes();
            let n = lz4_flex::block::decompress_into(bytes, dst)
                .map_err(|e| CodecError::Lz4(e.to_string()))?;
            if n != expected {
                return Err(CodecError::Lz4(format!(
                    "decompressed to {n} bytes, expected {expected}"
                )));
            }
            from_le_in_place(out);
            Ok(())
        }
    }
}

fn expect_len(what: &'static str, got: usize, expected: usize) -> Result<(), CodecError> {
    if got == expected {
        Ok(())
    } else {
        Err(CodecError::Length {
            what,
            got,
            expected,
        })
    }
}

fn push_raw(values: &[f32], out: &mut Vec<u8>) {
    push_le(values, out, f32::to_le_bytes);
}

/// Appends `items` as little-endian bytes: one copy on little-endian targets, `to_le` per
/// item elsewhere.
fn push_le<T, const N: usize>(items: &[T], out: &mut Vec<u8>, to_le: fn(T) -> [u8; N])
where
    T: IntoBytes + Immutable + Copy,
{
    if cfg!(target_endian = "little") {
        out.extend_from_slice(items.as_bytes());
    } else {
        for &item in items {
            out.extend_from_slice(&to_le(item));
        }
    }
}

/// The values as little-endian bytes: borrowed on little-endian targets.
fn values_as_le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(values.as_bytes())
    } else {
        let mut v = Vec::with_capacity(values.len() * 4);
        push_raw(values, &mut v);
        std::borrow::Cow::Owned(v)
    }
}

/// Turns f32 whose bytes were written little-endian into native values (no-op on LE targets).
fn from_le_in_place(values: &mut [f32]) {
    if cfg!(target_endian = "big") {
        for v in values {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
    }
}

type ToHalf = fn(&[f32], &mut [u16]) -> Result<(), ferrops_kernels::KernelError>;
type FromHalf = fn(&[u16], &mut [f32]) -> Result<(), ferrops_kernels::KernelError>;

fn encode_16(values: &[f32], out: &mut Vec<u8>, to_half: ToHalf) -> Result<(), CodecError> {
    let start = out.len();
    out.reserve(values.len() * 2);
    let mut buf = [0u16; CHUNK];
    for chunk in values.chunks(CHUNK) {
        let half = &mut buf[..chunk.len()];
        // Equal lengths by construction, so the kernel cannot refuse.
        if to_half(chunk, half).is_err() {
            out.truncate(start);
            return Err(CodecError::Length {
                what: "16-bit conversion",
                got: half.len(),
                expected: chunk.len(),
            });
        }
        push_u16(half, out);
    }
    Ok(())
}

fn push_u16(half: &[u16], out: &mut Vec<u8>) {
    push_le(half, out, u16::to_le_bytes);
}

fn decode_16(
    bytes: &[u8],
    out: &mut [f32],
    what: &'static str,
    from_half: FromHalf,
) -> Result<(), CodecError> {
    expect_len(what, bytes.len(), out.len() * 2)?;
    // Aligned sections (frames arrive in 8-byte-aligned buffers) are converted in place.
    if cfg!(target_endian = "little") {
        if let Ok(half) = <[u16]>::ref_from_bytes(bytes) {
            return from_half(half, out).map_err(|_| CodecError::Length {
                what,
                got: bytes.len(),
                expected: out.len() * 2,
            });
        }
    }
    let expected = out.len() * 2;
    let mut buf = [0u16; CHUNK];
    for (dst, src) in out.chunks_mut(CHUNK).zip(bytes.chunks(CHUNK * 2)) {
        let half = &mut buf[..dst.len()];
        for (h, b) in half.iter_mut().zip(src.chunks_exact(2)) {
            *h = u16::from_le_bytes([b[0], b[1]]);
        }
        from_half(half, dst).map_err(|_| CodecError::Length {
            what,
            got: bytes.len(),
            expected,
        })?;
    }
    Ok(())
}
