//! Key codec: round trips (unit and property), the chooser, and every kind of malformed input.

use ferrops_net::codec::keys::{
    decode_keys, decode_keys_into, encode_keys, encoded_len, BLOCK, KEY_CODEC_DELTA_BITPACK,
    KEY_CODEC_RAW,
};
use ferrops_net::codec::{choose_key_codec, CodecError, KeyCodec};
use proptest::prelude::*;

fn encode(codec: KeyCodec, keys: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = encode_keys(codec, keys, &mut out).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(encoded_len(codec, keys), Some(n));
    out
}

fn round_trip(codec: KeyCodec, keys: &[u64]) {
    let bytes = encode(codec, keys);
    let mut back = vec![0u64; keys.len()];
    decode_keys_into(codec, &bytes, &mut back).unwrap();
    assert_eq!(back, keys);
    assert_eq!(decode_keys(codec, &bytes, keys.len()).unwrap(), keys);
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[test]
fn ids_match_the_header_convention() {
    assert_eq!(KEY_CODEC_RAW, 0);
    assert_eq!(KEY_CODEC_DELTA_BITPACK, 1);
    for c in [KeyCodec::Raw, KeyCodec::DeltaBitpack] {
        assert_eq!(KeyCodec::from_id(c.id()), Ok(c));
    }
    assert_eq!(
        KeyCodec::from_id(2),
        Err(CodecError::UnknownCodec { what: "key", id: 2 })
    );
}

#[test]
fn edge_lists_round_trip() {
    let cases: Vec<Vec<u64>> = vec![
        vec![],
        vec![7],
        vec![u64::MAX],
        vec![0, u64::MAX],
        vec![5, 5, 5, 5],
        (0..BLOCK as u64 + 1).collect(),
        (0..BLOCK as u64 + 2).collect(),
        (0..10_000).map(|i| i * 3 + 1_000_000).collect(),
        (0..1000).map(|i| (i as u64) << 50).collect(),
        vec![0, 1, u64::MAX - 1, u64::MAX],
    ];
    for keys in &cases {
        round_trip(KeyCodec::Raw, keys);
        round_trip(KeyCodec::DeltaBitpack, keys);
    }
}

#[test]
fn dense_keys_pack_tightly() {
    let keys: Vec<u64> = (1_000..1_000 + 128 * 1000).collect();
    let bytes = encode(KeyCodec::DeltaBitpack, &keys);
    // One bit per delta plus a width byte per block: about 64x smaller than raw.
    assert!(bytes.len() * 50 < keys.len() * 8, "{} bytes", bytes.len());
    assert_eq!(choose_key_codec(&keys), KeyCodec::DeltaBitpack);
}

#[test]
fn chooser_keeps_hashed_keys_raw() {
    let mut keys: Vec<u64> = (0..10_000).map(splitmix).collect();
    keys.sort_unstable();
    assert_eq!(choose_key_codec(&keys), KeyCodec::Raw);
    // Unsorted and tiny lists stay raw too.
    assert_eq!(choose_key_codec(&[3, 1]), KeyCodec::Raw);
    assert_eq!(choose_key_codec(&[3]), KeyCodec::Raw);
    assert_eq!(choose_key_codec(&[]), KeyCodec::Raw);
}

#[test]
fn unsorted_input_is_refused_and_out_untouched() {
    let mut out = vec![9u8, 9];
    let keys: Vec<u64> = (0..300).map(|i| if i == 200 { 0 } else { i }).collect();
    assert_eq!(
        encode_keys(KeyCodec::DeltaBitpack, &keys, &mut out),
        Err(CodecError::Unsorted { index: 200 })
    );
    assert_eq!(out, vec![9, 9]);
    assert_eq!(encoded_len(KeyCodec::DeltaBitpack, &keys), None);
}

#[test]
fn count_mismatch_and_limits() {
    let keys: Vec<u64> = (0..1000).collect();
    let bytes = encode(KeyCodec::DeltaBitpack, &keys);
    let mut short = vec![0u64; 999];
    assert!(matches!(
        decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut short),
        Err(CodecError::CountMismatch {
            found: 1000,
            expected: 999,
            ..
        })
    ));
    assert_eq!(
        decode_keys(KeyCodec::DeltaBitpack, &bytes, 999),
        Err(CodecError::TooMany {
            found: 1000,
            limit: 999
        })
    );
    let raw = encode(KeyCodec::Raw, &keys);
    assert!(matches!(
        decode_keys_into(KeyCodec::Raw, &raw[..raw.len() - 1], &mut short),
        Err(CodecError::Length { .. })
    ));
}

#[test]
fn huge_claimed_count_is_refused_before_allocating() {
    // Count u32::MAX with almost no data: must not allocate 32 GiB.
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.push(0);
    assert!(matches!(
        decode_keys(KeyCodec::DeltaBitpack, &bytes, usize::MAX),
        Err(CodecError::Truncated { .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let keys: Vec<u64> = (0..700u64).map(|i| i * i).collect();
    let bytes = encode(KeyCodec::DeltaBitpack, &keys);
    let mut out = vec![0u64; keys.len()];
    for cut in 0..bytes.len() {
        assert!(
            decode_keys_into(KeyCodec::DeltaBitpack, &bytes[..cut], &mut out).is_err(),
            "cut at {cut}"
        );
        assert!(decode_keys(KeyCodec::DeltaBitpack, &bytes[..cut], 1 << 20).is_err());
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        decode_keys_into(KeyCodec::DeltaBitpack, &long, &mut out),
        Err(CodecError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn bad_width_is_an_error() {
    let keys: Vec<u64> = (0..10).collect();
    let mut bytes = encode(KeyCodec::DeltaBitpack, &keys);
    bytes[12] = 65;
    let mut out = vec![0u64; 10];
    assert_eq!(
        decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut out),
        Err(CodecError::BadWidth {
            block: 0,
            width: 65
        })
    );
}

#[test]
fn overflow_is_an_error() {
    let keys = [u64::MAX - 1, u64::MAX];
    let mut bytes = encode(KeyCodec::DeltaBitpack, &keys);
    // Width 1, delta 1: make it width 2, delta 3 (past u64::MAX).
    assert_eq!(bytes[12], 1);
    bytes[12] = 2;
    bytes[13] = 3;
    let mut out = vec![0u64; 2];
    assert_eq!(
        decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut out),
        Err(CodecError::Overflow { index: 1 })
    );
    // Width-64 blocks check overflow too.
    let keys = [1, u64::MAX];
    let mut bytes = encode(KeyCodec::DeltaBitpack, &keys);
    assert_eq!(bytes[12], 64);
    bytes[13..21].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut out),
        Err(CodecError::Overflow { index: 1 })
    );
}

fn sorted_keys() -> impl Strategy<Value = Vec<u64>> {
    (
        any::<u64>(),
        prop::collection::vec((0u32..65, any::<u64>()), 0..600),
    )
        .prop_map(|(start, steps)| {
            let mut k = start;
            let mut keys = vec![];
            for (bits, r) in steps {
                let step = if bits == 0 { 0 } else { r >> (64 - bits) };
                match k.checked_add(step) {
                    Some(n) => k = n,
                    None => break,
                }
                keys.push(k);
            }
            keys
        })
}

proptest! {
    #[test]
    fn any_sorted_list_round_trips(keys in sorted_keys()) {
        round_trip(KeyCodec::DeltaBitpack, &keys);
        round_trip(KeyCodec::Raw, &keys);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), n in 0usize..100) {
        let mut out = vec![0u64; n];
        let _ = decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut out);
        let _ = decode_keys(KeyCodec::DeltaBitpack, &bytes, 1000);
        let _ = decode_keys(KeyCodec::Raw, &bytes, 1000);
    }

    #[test]
    fn corrupted_encodings_never_panic(keys in sorted_keys(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(KeyCodec::DeltaBitpack, &keys);
        if !bytes.is_empty() {
            let i = pos.index(bytes.len());
            bytes[i] = byte;
        }
        let mut out = vec![0u64; keys.len()];
        if decode_keys_into(KeyCodec::DeltaBitpack, &bytes, &mut out).is_ok() {
            // Whatever decodes is a sorted list.
            prop_assert!(out.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
