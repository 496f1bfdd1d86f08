//! Value codecs: ids, exact round trips (raw, LZ4), the documented fp16/bf16 rounding bounds,
//! and malformed sections.

use ferrops_net::codec::values::{decode_values, encode_values};
use ferrops_net::codec::{CodecError, ValueCodec};
use proptest::prelude::*;

const ALL: [ValueCodec; 4] = [
    ValueCodec::Raw,
    ValueCodec::Fp16,
    ValueCodec::Bf16,
    ValueCodec::Lz4,
];

fn encode(codec: ValueCodec, v: &[f32]) -> Vec<u8> {
    let mut out = vec![0xAA]; // encoders append
    let n = encode_values(codec, v, &mut out).unwrap();
    assert_eq!(n + 1, out.len());
    assert!(n <= codec.max_encoded_len(v.len()));
    out.remove(0);
    out
}

fn round_trip(codec: ValueCodec, v: &[f32]) -> Vec<f32> {
    let bytes = encode(codec, v);
    let mut back = vec![0f32; v.len()];
    decode_values(codec, &bytes, &mut back).unwrap();
    back
}

#[test]
fn ids() {
    for (i, c) in ALL.iter().enumerate() {
        assert_eq!(c.id(), i as u8);
        assert_eq!(ValueCodec::from_id(i as u8), Ok(*c));
    }
    assert!(ValueCodec::from_id(4).is_err());
}

#[test]
fn lossless_codecs_are_bit_exact() {
    let mut v: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.37).sin()).collect();
    v.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 3.0,
        f32::from_bits(0x7fc0_1234),
    ]);
    v.extend(std::iter::repeat_n(0.0, 5000));
    for c in [ValueCodec::Raw, ValueCodec::Lz4] {
        assert!(c.is_lossless());
        let back = round_trip(c, &v);
        assert!(back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert!(round_trip(ValueCodec::Lz4, &[]).is_empty());
}

#[test]
fn lz4_compresses_sparse_values() {
    let v: Vec<f32> = (0..100_000)
        .map(|i| if i % 50 == 0 { i as f32 } else { 0.0 })
        .collect();
    let bytes = encode(ValueCodec::Lz4, &v);
    assert!(bytes.len() * 10 < v.len() * 4, "{} bytes", bytes.len());
}

#[test]
fn sixteen_bit_codecs_halve_and_keep_specials() {
    let v = [
        0.0,
        -0.0,
        1.0,
        -2.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for c in [ValueCodec::Fp16, ValueCodec::Bf16] {
        assert!(!c.is_lossless());
        assert_eq!(encode(c, &v).len(), v.len() * 2);
        let back = round_trip(c, &v);
        assert_eq!(back[..6], v[..6]);
        assert_eq!(back[1].to_bits(), (-0.0f32).to_bits());
        assert!(back[6].is_nan());
    }
    // fp16 overflow goes to infinity, at its rounding boundary.
    let back = round_trip(ValueCodec::Fp16, &[65519.0, 65520.0, -1e6]);
    assert_eq!(back, [65504.0, f32::INFINITY, f32::NEG_INFINITY]);
    let back = round_trip(ValueCodec::Bf16, &[f32::MAX, -f32::MAX]);
    assert_eq!(back, [f32::INFINITY, f32::NEG_INFINITY]);
}

#[test]
fn unaligned_sixteen_bit_sections_decode() {
    let v: Vec<f32> = (0..9000).map(|i| i as f32 * 0.5).collect();
    for c in [ValueCodec::Fp16, ValueCodec::Bf16] {
        let bytes = encode(c, &v);
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let mut a = vec![0f32; v.len()];
        let mut b = vec![0f32; v.len()];
        decode_values(c, &bytes, &mut a).unwrap();
        decode_values(c, &shifted[1..], &mut b).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn lengths_must_match_exactly() {
    let v = vec![1.0f32; 100];
    for c in ALL {
        let bytes = encode(c, &v);
        let mut more = vec![0f32; 101];
        let mut less = vec![0f32; 99];
        assert!(decode_values(c, &bytes, &mut more).is_err(), "{c:?}");
        assert!(decode_values(c, &bytes, &mut less).is_err(), "{c:?}");
        let mut ok = vec![0f32; 100];
        assert!(decode_values(c, &bytes[..bytes.len() - 1], &mut ok).is_err());
    }
    let mut out = vec![0f32; 2];
    assert_eq!(
        decode_values(ValueCodec::Raw, &[0; 7], &mut out),
        Err(CodecError::Length {
            what: "raw values",
            got: 7,
            expected: 8
        })
    );
}

#[test]
fn lz4_cannot_claim_more_than_expected() {
    // 1 MB of zeros compresses to a few KB; decoding it into 1000 values must fail, not grow.
    let bytes = encode(ValueCodec::Lz4, &vec![0f32; 250_000]);
    let mut out = vec![0f32; 1000];
    assert!(matches!(
        decode_values(ValueCodec::Lz4, &bytes, &mut out),
        Err(CodecError::Lz4(_))
    ));
}

proptest! {
    #[test]
    fn fp16_relative_error_in_normal_range(m in 1.0f32..2.0, e in -14i32..16, neg: bool) {
        let x = m * 2f32.powi(e) * if neg { -1.0 } else { 1.0 };
        prop_assume!(x.abs() < 65520.0);
        let y = round_trip(ValueCodec::Fp16, &[x])[0];
        prop_assert!(((y - x) as f64).abs() <= x.abs() as f64 * 2f64.powi(-11), "{x} -> {y}");
    }

    #[test]
    fn fp16_subnormal_absolute_error(x in -6.1e-5f32..6.1e-5) {
        let y = round_trip(ValueCodec::Fp16, &[x])[0];
        prop_assert!(((y - x) as f64).abs() <= 2f64.powi(-25), "{x} -> {y}");
    }

    #[test]
    fn bf16_relative_error(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        prop_assume!(x.is_normal() && x.abs() < 3.38e38);
        let y = round_trip(ValueCodec::Bf16, &[x])[0];
        prop_assert!(((y as f64) - (x as f64)).abs() <= (x.abs() as f64) * 2f64.powi(-8), "{x} -> {y}");
    }

    #[test]
    fn lossless_round_trip(v in prop::collection::vec(any::<u32>().prop_map(f32::from_bits), 0..3000)) {
        for c in [ValueCodec::Raw, ValueCodec::Lz4] {
            let back = round_trip(c, &v);
            prop_assert!(back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), n in 0usize..200) {
        let mut out = vec![0f32; n];
        for c in ALL {
            let _ = decode_values(c, &bytes, &mut out);
        }
    }
}
