//! The error type of the codecs.

/// Why a section could not be encoded or decoded. Decoding errors describe data received from a
/// peer; none of them is a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The header names a codec id this node does not know.
    #[error("unknown {what} codec id {id}")]
    UnknownCodec { what: &'static str, id: u8 },
    /// The input ended before the encoded data did.
    #[error("truncated {what}: needs {needed} more byte(s)")]
    Truncated { what: &'static str, needed: usize },
    /// Bytes remain after the last encoded element.
    #[error("{extra} trailing byte(s) after the encoded data")]
    TrailingBytes { extra: usize },
    /// A block declares a bit width over 64.
    #[error("block {block} declares bit width {width} (at most 64)")]
    BadWidth { block: usize, width: u8 },
    /// Summing the deltas leaves the u64 key range.
    #[error("key {index} overflows u64")]
    Overflow { index: usize },
    /// The encoded element count differs from the count the caller expects.
    #[error("encoded {what} count {found}, expected {expected}")]
    CountMismatch {
        what: &'static str,
        found: usize,
        expected: usize,
    },
    /// The encoded count exceeds the caller's bound.
    #[error("encoded count {found} exceeds the limit of {limit}")]
    TooMany { found: usize, limit: usize },
    /// Keys handed to the delta encoder are not in ascending order.
    #[error("keys not sorted at position {index}")]
    Unsorted { index: usize },
    /// A section's byte length does not match the element count.
    #[error("{what} section of {got} bytes, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The LZ4 block is corrupt or does not decompress to exactly the expected size.
    #[error("lz4: {0}")]
    Lz4(String),
    /// More elements than the format can count (u32).
    #[error("{len} elements exceed the u32 count of the format")]
    TooLong { len: usize },
}
