//! Key-list compression: sorted u64 keys as the first key followed by their deltas, bit-packed
//! in blocks of [`BLOCK`] with one bit width per block.
//!
//! # Format (`KEY_CODEC_DELTA_BITPACK`, all little-endian)
//! ```text
//! count: u32
//! first: u64                       (absent when count == 0)
//! per block of up to 128 deltas (count - 1 deltas in all, the last block may be short):
//!   width: u8                      (0..=64: bits per delta, the bit length of the block's largest)
//!   words: u64 × ceil(n·width/64)  (delta j occupies bits [j·width, (j+1)·width) of the block's
//!                                   bit stream, least significant first)
//! ```
//! Deltas are `k[i] - k[i-1]`, so the keys must be ascending (equal neighbours are allowed and
//! cost a zero delta). A block of equal spacing still pays its width per key; a run of identical
//! deltas is not special-cased.
//!
//! Decoding validates everything a peer controls: the count against the caller's expectation or
//! bound (before anything is allocated), every width (≤ 64), every length (truncation and
//! trailing bytes), and u64 overflow of the running sum. [`choose_key_codec`] computes the
//! exact encoded size in one pass over the keys and keeps raw keys unless packing saves at
//! least a third (hashed keys spread over the whole u64 range rarely do).

use super::CodecError;

/// Header id of uncompressed keys (little-endian u64).
pub const KEY_CODEC_RAW: u8 = 0;
/// Header id of [delta + bit packing](self).
pub const KEY_CODEC_DELTA_BITPACK: u8 = 1;
/// Deltas per block (one width byte each).
pub const BLOCK: usize = 128;

/// Bytes of the count and first key.
const PREFIX: usize = 4 + 8;

/// How a keys section is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyCodec {
    /// Little-endian u64 keys, 8 bytes each.
    Raw,
    /// First key, then block-wise bit-packed deltas (see the [module docs](self)).
    DeltaBitpack,
}

impl KeyCodec {
    /// The id carried in `Header::key_codec`.
    pub fn id(self) -> u8 {
        match self {
            KeyCodec::Raw => KEY_CODEC_RAW,
            KeyCodec::DeltaBitpack => KEY_CODEC_DELTA_BITPACK,
        }
    }

    /// The codec a header id names.
    pub fn from_id(id: u8) -> Result<KeyCodec, CodecError> {
        match id {
            KEY_CODEC_RAW => Ok(KeyCodec::Raw),
            KEY_CODEC_DELTA_BITPACK => Ok(KeyCodec::DeltaBitpack),
            _ => Err(CodecError::UnknownCodec { what: "key", id }),
        }
    }
}

/// Raw when delta packing does not shrink the keys to at most two thirds of their raw size (or
/// the keys are not ascending, or there are fewer than two); delta-bitpack otherwise. One pass
/// over the keys, no allocation.
pub fn choose_key_codec(keys: &[u64]) -> KeyCodec {
    if keys.len() < 2 {
        return KeyCodec::Raw;
    }
    match delta_bitpack_len(keys) {
        Some(len) if len * 3 <= keys.len() * 8 * 2 => KeyCodec::DeltaBitpack,
        _ => KeyCodec::Raw,
    }
}

/// Exact size in bytes of `keys` under `codec` (`None`: the keys cannot be delta-packed, being
/// unsorted or more than `u32::MAX`).
pub fn encoded_len(codec: KeyCodec, keys: &[u64]) -> Option<usize> {
    match codec {
        KeyCodec::Raw => Some(keys.len() * 8),
        KeyCodec::DeltaBitpack => delta_bitpack_len(keys),
    }
}

/// Exact delta-bitpack size of `keys`: one pass computing each block's width.
fn delta_bitpack_len(keys: &[u64]) -> Option<usize> {
    if keys.len() > u32::MAX as usize {
        return None;
    }
    let Some((&first, rest)) = keys.split_first() else {
        return Some(4);
    };
    let mut len = PREFIX;
    let mut prev = first;
    for chunk in rest.chunks(BLOCK) {
        let (or, unsorted) = block_or(prev, chunk);
        if unsorted {
            return None;
        }
        prev = chunk[chunk.len() - 1];
        len += 1 + words_for(chunk.len(), width_of(or)) * 8;
    }
    Some(len)
}

/// OR of the block's deltas (its bit width) and whether any key is below its predecessor.
#[inline]
fn block_or(mut prev: u64, chunk: &[u64]) -> (u64, bool) {
    let mut or = 0u64;
    let mut unsorted = false;
    for &k in chunk {
        or |= k.wrapping_sub(prev);
        unsorted |= k < prev;
        prev = k;
    }
    (or, unsorted)
}

#[inline]
fn width_of(or: u64) -> u32 {
    64 - or.leading_zeros()
}

#[inline]
fn words_for(n: usize, width: u32) -> usize {
    (n * width as usize).div_ceil(64)
}

/// Appends `keys` encoded with `codec` to `out` and returns the number of bytes appended. On
/// error (`Unsorted` for delta-bitpack, `TooLong`) `out` is left as it was.
pub fn encode_keys(codec: KeyCodec, keys: &[u64], out: &mut Vec<u8>) -> Result<usize, CodecError> {
    let start = out.len();
    match codec {
        KeyCodec::Raw => {
            out.reserve(keys.len() * 8);
            for k in keys {
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
        KeyCodec::DeltaBitpack => {
            if let Err(e) = encode_delta(keys, out) {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(out.len() - start)
}

fn encode_delta(keys: &[u64], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let count = u32::try_from(keys.len()).map_err(|_| CodecError::TooLong { len: keys.len() })?;
    out.extend_from_slice(&count.to_le_bytes());
    let Some((&first, rest)) = keys.split_first() else {
        return Ok(());
    };
    out.extend_from_slice(&first.to_le_bytes());
    let mut prev = first;
    let mut deltas = [0u64; BLOCK];
    for (b, chunk) in rest.chunks(BLOCK).enumerate() {
        let mut or = 0u64;
        let mut unsorted = false;
        for (d, &k) in deltas.iter_mut().zip(chunk) {
            *d = k.wrapping_sub(prev);
            or |= *d;
            unsorted |= k < prev;
            prev = k;
        }
        if unsorted {
            let at = chunk.iter().enumerate().position(|(j, &k)| {
                let before = if j == 0 {
                    keys[b * BLOCK]
                } else {
                    chunk[j - 1]
                };
                k < before
            });
            return Err(CodecError::Unsorted {
                index: 1 + b * BLOCK + at.unwrap_or(0),
            });
        }
        let width = width_of(or);
        out.push(width as u8);
        pack(&deltas[..chunk.len()], width, out);
    }
    Ok(())
}

/// Appends `deltas` packed at `width` bits each, as whole little-endian u64 words.
#[inline]
fn pack(deltas: &[u64], width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let start = out.len();
    out.resize(start + words_for(deltas.len(), width) * 8, 0);
    let mut dst = out[start..].chunks_exact_mut(8);
    if width == 64 {
        for (w, &d) in dst.zip(deltas) {
            w.copy_from_slice(&d.to_le_bytes());
        }
        return;
    }
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for &d in deltas {
        acc |= (d as u128) << bits;
        bits += width;
        if bits >= 64 {
            if let Some(w) = dst.next() {
                w.copy_from_slice(&(acc as u64).to_le_bytes());
            }
            acc >>= 64;
            bits -= 64;
        }
    }
    if bits > 0 {
        if let Some(w) = dst.next() {
            w.copy_from_slice(&(acc as u64).to_le_bytes());
        }
    }
}

/// Decodes a keys section into `out`, whose length is the number of keys the caller expects
/// (from the header). Any mismatch is an error; `out` may be partly written on error.
pub fn decode_keys_into(codec: KeyCodec, bytes: &[u8], out: &mut [u64]) -> Result<(), CodecError> {
    match codec {
        KeyCodec::Raw => {
            if bytes.len() != out.len() * 8 {
                return Err(CodecError::Length {
                    what: "raw keys",
                    got: bytes.len(),
                    expected: out.len() * 8,
                });
            }
            for (k, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *k = u64::from_le_bytes(to8(b));
            }
            Ok(())
        }
        KeyCodec::DeltaBitpack => {
            let count = read_count(bytes)?;
            if count != out.len() {
                return Err(CodecError::CountMismatch {
                    what: "key",
                    found: count,
                    expected: out.len(),
                });
            }
            decode_delta_body(&bytes[4..], out)
        }
    }
}

/// Decodes a keys section into a new vector, refusing (before allocating) more than `max_keys`
/// keys or more than the section's length could possibly encode.
pub fn decode_keys(codec: KeyCodec, bytes: &[u8], max_keys: usize) -> Result<Vec<u64>, CodecError> {
    let count = match codec {
        KeyCodec::Raw => bytes.len() / 8,
        KeyCodec::DeltaBitpack => {
            let count = read_count(bytes)?;
            // Every block of up to BLOCK deltas costs at least its width byte.
            let minimum = if count == 0 {
                4
            } else {
                PREFIX + (count - 1).div_ceil(BLOCK)
            };
            if bytes.len() < minimum {
                return Err(CodecError::Truncated {
                    what: "delta-bitpack keys",
                    needed: minimum - bytes.len(),
                });
            }
            count
        }
    };
    if count > max_keys {
        return Err(CodecError::TooMany {
            found: count,
            limit: max_keys,
        });
    }
    let mut out = vec![0u64; count];
    decode_keys_into(codec, bytes, &mut out)?;
    Ok(out)
}

fn read_count(bytes: &[u8]) -> Result<usize, CodecError> {
    match bytes.get(..4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        None => Err(CodecError::Truncated {
            what: "key count",
            needed: 4 - bytes.len(),
        }),
    }
}

#[inline]
fn to8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Decodes everything after the count into `out` (whose length is the count).
fn decode_delta_body(mut rest: &[u8], out: &mut [u64]) -> Result<(), CodecError> {
    let Some((first_out, deltas_out)) = out.split_first_mut() else {
        return match rest.len() {
            0 => Ok(()),
            extra => Err(CodecError::TrailingBytes { extra }),
        };
    };
    let Some(first) = rest.get(..8) else {
        return Err(CodecError::Truncated {
            what: "first key",
            needed: 8 - rest.len(),
        });
    };
    let mut prev = u64::from_le_bytes(to8(first));
    *first_out = prev;
    rest = &rest[8..];
    for (b, chunk) in deltas_out.chunks_mut(BLOCK).enumerate() {
        let Some((&width, after)) = rest.split_first() else {
            return Err(CodecError::Truncated {
                what: "block width",
                needed: 1,
            });
        };
        if width > 64 {
            return Err(CodecError::BadWidth { block: b, width });
        }
        let len = words_for(chunk.len(), width as u32) * 8;
        if after.len() < len {
            return Err(CodecError::Truncated {
                what: "block data",
                needed: len - after.len(),
            });
        }
        let before = prev;
        if !unpack(&after[..len], width as u32, &mut prev, chunk) {
            let mut p = before;
            let at = chunk.iter().position(|&k| {
                let bad = k < p;
                p = k;
                bad
            });
            return Err(CodecError::Overflow {
                index: 1 + b * BLOCK + at.unwrap_or(0),
            });
        }
        rest = &after[len..];
    }
    match rest.len() {
        0 => Ok(()),
        extra => Err(CodecError::TrailingBytes { extra }),
    }
}

/// Unpacks `out.len()` deltas of `width` bits from `words` (exactly long enough), adding them to
/// the running key `prev`. Returns false if the sum overflowed u64.
#[inline]
fn unpack(words: &[u8], width: u32, prev: &mut u64, out: &mut [u64]) -> bool {
    let mut key = *prev;
    let mut overflow = false;
    match width {
        0 => out.fill(key),
        64 => {
            for (o, w) in out.iter_mut().zip(words.chunks_exact(8)) {
                let (k, of) = key.overflowing_add(u64::from_le_bytes(to8(w)));
                overflow |= of;
                key = k;
                *o = k;
            }
        }
        _ => {
            let mask = (1u64 << width) - 1;
            let mut src = words.chunks_exact(8);
            let mut acc: u128 = 0;
            let mut avail: u32 = 0;
            for o in out.iter_mut() {
                if avail < width {
                    let w = src.next().map_or(0, |w| u64::from_le_bytes(to8(w)));
                    acc |= (w as u128) << avail;
                    avail += 64;
                }
                let d = acc as u64 & mask;
                acc >>= width;
                avail -= width;
                let (k, of) = key.overflowing_add(d);
                overflow |= of;
                key = k;
                *o = k;
            }
        }
    }
    *prev = key;
    !overflow
}
