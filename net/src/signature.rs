//! 64-bit signatures of key lists, used to recognise a list the receiver has seen before.

/// The signature of a raw keys section (xxh3-64 over the little-endian key bytes). Collisions are
/// possible in principle, so a receiver that resolves a list by its signature also keeps the keys
/// and compares them, or asks for them, and never trusts the signature alone.
pub fn key_signature(keys: &[u64]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(keys_as_bytes(keys))
}

fn keys_as_bytes(keys: &[u64]) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_for_different_lists_and_matches_for_equal_ones() {
        let a = [1u64, 2, 3];
        let b = [1u64, 2, 4];
        assert_eq!(key_signature(&a), key_signature(a.as_ref()));
        assert_ne!(key_signature(&a), key_signature(&b));
        assert_ne!(key_signature(&a), key_signature(&a[..2]));
    }
}
