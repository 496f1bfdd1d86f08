//! Conversions against hand-worked encodings and against the `half` crate (a reference written
//! independently), exhaustively for 16-bit inputs and on a sweep of f32 bit patterns.

use ferrops_kernels::{convert, scalar, with_isa, Isa};

#[test]
fn f16_hand_cases() {
    let cases: [(f32, u16); 14] = [
        (0.0, 0x0000),
        (-0.0, 0x8000),
        (1.0, 0x3c00),
        (-2.0, 0xc000),
        (65504.0, 0x7bff),                     // largest finite
        (65519.99, 0x7bff),                    // just below the rounding midpoint
        (65520.0, 0x7c00),                     // midpoint: ties to even = inf
        (1.0e9, 0x7c00),                       // overflow
        (f32::from_bits(0x3380_0000), 0x0001), // 2^-24, smallest subnormal
        (f32::from_bits(0x3300_0000), 0x0000), // 2^-25: tie, even = 0
        (f32::from_bits(0x3340_0000), 0x0001), // 1.5 * 2^-25 rounds up
        (1.0 + 1.0 / 2048.0, 0x3c00),          // tie between 0x3c00 and 0x3c01: even
        (1.0 + 3.0 / 2048.0, 0x3c02),          // tie between 0x3c01 and 0x3c02: even
        (f32::from_bits(0x387f_e000), 0x0400), // rounds up from subnormal to min normal
    ];
    for isa in Isa::supported() {
        let src: Vec<f32> = cases.iter().map(|c| c.0).cycle().take(14 * 3).collect();
        let mut dst = vec![0u16; src.len()];
        with_isa(isa, || convert::f32_to_f16(&src, &mut dst)).unwrap();
        for (i, d) in dst.iter().enumerate() {
            assert_eq!(*d, cases[i % 14].1, "{isa} f32->f16 of {:e}", src[i]);
        }
    }
}

#[test]
fn bf16_hand_cases() {
    let cases: [(u32, u16); 7] = [
        (0x3f80_0000, 0x3f80),
        (0x3f80_8000, 0x3f80), // tie, even stays
        (0x3f81_8000, 0x3f82), // tie, odd rounds up
        (0x3f80_8001, 0x3f81),
        (0x7f7f_ffff, 0x7f80), // f32::MAX rounds to inf
        (0x0000_0001, 0x0000), // subnormal, not flushed: rounds to +0
        (0x8001_8000, 0x8002), // negative subnormal, tie to even
    ];
    for isa in Isa::supported() {
        let src: Vec<f32> = cases
            .iter()
            .map(|c| f32::from_bits(c.0))
            .cycle()
            .take(7 * 5)
            .collect();
        let mut dst = vec![0u16; src.len()];
        with_isa(isa, || convert::f32_to_bf16(&src, &mut dst)).unwrap();
        for (i, d) in dst.iter().enumerate() {
            assert_eq!(
                *d,
                cases[i % 7].1,
                "{isa} f32->bf16 of {:#x}",
                cases[i % 7].0
            );
        }
    }
}

#[test]
fn all_16_bit_patterns_widen_like_half() {
    let src: Vec<u16> = (0..=u16::MAX).collect();
    for isa in Isa::supported() {
        let mut f = vec![0f32; src.len()];
        with_isa(isa, || convert::f16_to_f32(&src, &mut f)).unwrap();
        let mut b = vec![0f32; src.len()];
        with_isa(isa, || convert::bf16_to_f32(&src, &mut b)).unwrap();
        for (i, h) in src.iter().enumerate() {
            let want = half::f16::from_bits(*h).to_f32();
            assert!(
                f[i].to_bits() == want.to_bits() || (f[i].is_nan() && want.is_nan()),
                "{isa} f16 {h:#06x}: {} vs {}",
                f[i],
                want
            );
            let want = half::bf16::from_bits(*h).to_f32();
            assert!(
                b[i].to_bits() == want.to_bits() || (b[i].is_nan() && want.is_nan()),
                "{isa} bf16 {h:#06x}"
            );
            // Narrowing an exactly representable value gives it back (NaN stays NaN).
            let back = scalar::f32_to_f16_bits(f[i]);
            if f[i].is_nan() {
                assert!(half::f16::from_bits(back).is_nan(), "{h:#06x}");
                assert_eq!(back & 0x8000, h & 0x8000, "NaN sign {h:#06x}");
            } else {
                assert_eq!(back, *h);
            }
        }
    }
}

#[test]
fn f32_sweep_narrows_like_half() {
    // Every 251st bit pattern (about 17 million values), all signs and exponents.
    let src: Vec<f32> = (0..=u32::MAX / 251)
        .map(|i| f32::from_bits(i * 251))
        .collect();
    for isa in Isa::supported() {
        let mut h = vec![0u16; src.len()];
        let mut b = vec![0u16; src.len()];
        with_isa(isa, || convert::f32_to_f16(&src, &mut h)).unwrap();
        with_isa(isa, || convert::f32_to_bf16(&src, &mut b)).unwrap();
        for (i, x) in src.iter().enumerate() {
            let wh = half::f16::from_f32(*x);
            let wb = half::bf16::from_f32(*x);
            if x.is_nan() {
                assert!(
                    half::f16::from_bits(h[i]).is_nan() && half::bf16::from_bits(b[i]).is_nan()
                );
                assert_eq!(h[i] >> 15, (x.to_bits() >> 31) as u16);
                assert_eq!(b[i] >> 15, (x.to_bits() >> 31) as u16);
            } else {
                assert_eq!(
                    h[i],
                    wh.to_bits(),
                    "{isa} f16 of {x:e} ({:#x})",
                    x.to_bits()
                );
                assert_eq!(
                    b[i],
                    wb.to_bits(),
                    "{isa} bf16 of {x:e} ({:#x})",
                    x.to_bits()
                );
            }
        }
    }
}

#[test]
fn conversion_length_mismatch_is_an_error() {
    let mut dst = [0u16; 3];
    assert!(ferrops_kernels::convert::f32_to_f16(&[1.0; 4], &mut dst).is_err());
    let mut dst = [0f32; 5];
    assert!(ferrops_kernels::convert::bf16_to_f32(&[1; 4], &mut dst).is_err());
}

#[test]
fn large_conversions_take_the_streaming_path_correctly() {
    // Outputs of 16 MiB or more are written with non-temporal stores after an aligning head;
    // start one element into the allocations so the head is non-empty.
    let n = (8 << 20) + 21;
    let src: Vec<f32> = (0..n + 1)
        .map(|i| f32::from_bits((i as u32).wrapping_mul(2_654_435_761)))
        .collect();
    let halves: Vec<u16> = (0..n + 1)
        .map(|i| (i as u16).wrapping_mul(40_503))
        .collect();
    let mut want16 = vec![0u16; n];
    let mut want32 = vec![0f32; n];
    for isa in Isa::supported() {
        type To16 = fn(&[f32], &mut [u16]) -> Result<(), ferrops_kernels::KernelError>;
        type To32 = fn(&[u16], &mut [f32]) -> Result<(), ferrops_kernels::KernelError>;
        let pairs: [(To16, To32); 2] = [
            (convert::f32_to_f16, convert::f16_to_f32),
            (convert::f32_to_bf16, convert::bf16_to_f32),
        ];
        for (to16, to32) in pairs {
            with_isa(Isa::Scalar, || to16(&src[1..], &mut want16)).unwrap();
            with_isa(Isa::Scalar, || to32(&halves[1..], &mut want32)).unwrap();
            let mut got16 = vec![7u16; n + 1];
            with_isa(isa, || to16(&src[1..], &mut got16[1..])).unwrap();
            assert_eq!(got16[0], 7);
            assert!(got16[1..] == want16[..], "{isa} narrow");
            let mut got32 = vec![7f32; n + 1];
            with_isa(isa, || to32(&halves[1..], &mut got32[1..])).unwrap();
            assert_eq!(got32[0], 7.0);
            let same = got32[1..]
                .iter()
                .zip(&want32)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{isa} widen");
        }
    }
}
