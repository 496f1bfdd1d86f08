//! Property tests: every fast tier against the scalar reference, bit for bit (a NaN result
//! must be NaN on both sides; its payload is unspecified), on random lengths including 0, 1, 15
//! and 17, sub-slices starting 0..3 elements into an allocation, and values that include ±0,
//! subnormals, huge magnitudes, infinities and NaN.

use ferrops_kernels::{
    apply_dense, apply_sparse, convert, kkt_active_indices, significant_indices, sum_k, with_isa,
    Isa, Rule, State,
};
use proptest::prelude::*;

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(isa: Isa, what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            same(*g, *w),
            "{} {}[{}]: got {:?} ({:#x}), reference {:?} ({:#x})",
            isa,
            what,
            i,
            g,
            g.to_bits(),
            w,
            w.to_bits()
        );
    }
    Ok(())
}

fn fast_tiers() -> Vec<Isa> {
    Isa::supported().filter(|i| *i != Isa::Scalar).collect()
}

const SPECIAL: [f32; 16] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1.0e-45, // smallest subnormal
    -3.0e-39,
    1.0e38,
    -3.0e38,
    f32::MAX,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    0.5,
    2.0,
];

/// Mostly ordinary values, often specials, sometimes any bit pattern.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -10.0f32..10.0,
        2 => prop::sample::select(SPECIAL.to_vec()),
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

/// Non-negative hyper-parameters, occasionally special.
fn hyper() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => 0.0f32..2.0,
        1 => prop::sample::select(vec![0.0f32, 1.0e-40, 1.0e30, f32::INFINITY, f32::NAN, -0.5]),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let h = hyper;
    prop_oneof![
        Just(Rule::Assign),
        Just(Rule::Sum),
        h().prop_map(|lr| Rule::Sgd { lr }),
        (h(), h()).prop_map(|(lr, mu)| Rule::Momentum { lr, mu }),
        (h(), h()).prop_map(|(lr, eps)| Rule::AdaGrad { lr, eps }),
        (h(), 0.0f32..1.0, 0.0f32..1.0, h(), 1u32..10_000).prop_map(
            |(lr, beta1, beta2, eps, step)| Rule::Adam {
                lr,
                beta1,
                beta2,
                eps,
                step
            }
        ),
        (h(), h(), h(), h()).prop_map(|(alpha, beta, l1, l2)| Rule::Ftrl {
            alpha,
            beta,
            l1,
            l2
        }),
        (h(), h()).prop_map(|(lr, l1)| Rule::ProxL1 { lr, l1 }),
        (h(), h(), h()).prop_map(|(lr, l1, l2)| Rule::ElasticNet { lr, l1, l2 }),
        (h(), h()).prop_map(|(l1, delta)| Rule::ScaledProxL1 { l1, delta }),
    ]
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![0usize, 1, 7, 8, 15, 16, 17, 31, 33]),
        0usize..200,
    ]
}

/// A vector of `off + n` values; the kernel sees `[off..]` (unaligned starts).
fn data(n: usize, off: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(value(), n + off)
}

#[derive(Debug, Clone)]
struct Case {
    rule: Rule,
    off: usize,
    w: Vec<f32>,
    s0: Vec<f32>,
    s1: Vec<f32>,
    inputs: Vec<f32>,
}

fn dense_case() -> impl Strategy<Value = Case> {
    (rule(), len(), 0usize..4).prop_flat_map(|(rule, n, off)| {
        let k = rule.inputs();
        (
            Just(rule),
            Just(off),
            data(n, off),
            data(n, off),
            data(n, off),
            data(k * n, off),
        )
            .prop_map(|(rule, off, w, s0, s1, inputs)| Case {
                rule,
                off,
                w,
                s0,
                s1,
                inputs,
            })
    })
}

/// Runs `rule` on `isa` over copies of the case's arrays; returns (w, s0, s1).
fn run_dense(isa: Isa, c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut w, mut s0, mut s1) = (c.w.clone(), c.s0.clone(), c.s1.clone());
    let o = c.off;
    let state = State::for_rule(c.rule, &mut s0[o..], &mut s1[o..]);
    with_isa(isa, || {
        apply_dense(c.rule, &mut w[o..], state, &c.inputs[o..])
    })
    .unwrap();
    (w, s0, s1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn dense_matches_reference(c in dense_case()) {
        let want = run_dense(Isa::Scalar, &c);
        // The top-level dispatched function too.
        let (mut w, mut s0, mut s1) = (c.w.clone(), c.s0.clone(), c.s1.clone());
        let o = c.off;
        let state = State::for_rule(c.rule, &mut s0[o..], &mut s1[o..]);
        ferrops_kernels::apply_dense(c.rule, &mut w[o..], state, &c.inputs[o..]).unwrap();
        assert_same(ferrops_kernels::active_isa(), "w", &w, &want.0)?;
        assert_same(ferrops_kernels::active_isa(), "s0", &s0, &want.1)?;
        for isa in fast_tiers() {
            let got = run_dense(isa, &c);
            assert_same(isa, "w", &got.0, &want.0)?;
            assert_same(isa, "state0", &got.1, &want.1)?;
            assert_same(isa, "state1", &got.2, &want.2)?;
        }
    }

    #[test]
    fn sparse_matches_reference(
        rule in rule(),
        dim in prop_oneof![Just(1usize), Just(15), Just(16), Just(17), 1usize..40],
        rows in 1usize..12,
        picks in prop::collection::vec(0u32..64, 0..10),
        seed in prop::collection::vec(value(), 3 * 12 * 40 + 2 * 10 * 40),
    ) {
        let n = rows * dim;
        let slots: Vec<u32> = picks.iter().map(|p| p % rows as u32).collect();
        let m = rule.inputs() * slots.len() * dim;
        let w0 = seed[..n].to_vec();
        let s00 = seed[n..2 * n].to_vec();
        let s10 = seed[2 * n..3 * n].to_vec();
        let inputs = seed[3 * n..3 * n + m].to_vec();
        let run = |isa: Isa| {
            let (mut w, mut s0, mut s1) = (w0.clone(), s00.clone(), s10.clone());
            let state = State::for_rule(rule, &mut s0, &mut s1);
            with_isa(isa, || apply_sparse(rule, &mut w, state, &slots, dim, &inputs)).unwrap();
            (w, s0, s1)
        };
        let want = run(Isa::Scalar);
        for isa in fast_tiers() {
            let got = run(isa);
            assert_same(isa, "w", &got.0, &want.0)?;
            assert_same(isa, "state0", &got.1, &want.1)?;
            assert_same(isa, "state1", &got.2, &want.2)?;
        }
        // Rows never addressed are untouched.
        for r in 0..rows {
            if !slots.contains(&(r as u32)) {
                assert_same(Isa::Scalar, "untouched row", &want.0[r * dim..(r + 1) * dim], &w0[r * dim..(r + 1) * dim])?;
            }
        }
    }

    #[test]
    fn sparse_equals_dense_on_gathered_rows(
        rule in rule(),
        dim in 1usize..20,
        seed in prop::collection::vec(value(), 4 * 20 * 3 + 2 * 3 * 20),
    ) {
        // Slots [2, 0] of a 4-row table equal a dense call on those rows.
        let rows = 4;
        let n = rows * dim;
        let slots = [2u32, 0];
        let m = slots.len() * dim;
        let inputs: Vec<f32> = seed[3 * n..3 * n + rule.inputs() * m].to_vec();
        let mut w = seed[..n].to_vec();
        let mut s0 = seed[n..2 * n].to_vec();
        let mut s1 = seed[2 * n..3 * n].to_vec();
        let (mut ws, mut s0s, mut s1s) = (w.clone(), s0.clone(), s1.clone());
        let state = State::for_rule(rule, &mut s0s, &mut s1s);
        ferrops_kernels::apply_sparse(rule, &mut ws, state, &slots, dim, &inputs).unwrap();
        for (j, &s) in slots.iter().enumerate() {
            let r = s as usize * dim..(s as usize + 1) * dim;
            let mut inp: Vec<f32> = inputs[j * dim..(j + 1) * dim].to_vec();
            if rule.inputs() == 2 {
                inp.extend_from_slice(&inputs[m + j * dim..m + (j + 1) * dim]);
            }
            let state = State::for_rule(rule, &mut s0[r.clone()], &mut s1[r.clone()]);
            with_isa(Isa::Scalar, || apply_dense(rule, &mut w[r], state, &inp)).unwrap();
        }
        assert_same(Isa::Scalar, "w", &ws, &w)?;
        assert_same(Isa::Scalar, "s0", &s0s, &s0)?;
        assert_same(Isa::Scalar, "s1", &s1s, &s1)?;
    }

    #[test]
    fn sum_k_matches_reference(
        n in len(),
        off in 0usize..4,
        k in 0usize..6,
        seed in prop::collection::vec(value(), 6 * 203),
    ) {
        let bufs: Vec<&[f32]> = (0..k).map(|j| &seed[j * 203 + off..j * 203 + off + n]).collect();
        let mut want = vec![1.0f32; n];
        with_isa(Isa::Scalar, || sum_k(&mut want, &bufs)).unwrap();
        for isa in fast_tiers() {
            let mut got = vec![1.0f32; n + off];
            with_isa(isa, || sum_k(&mut got[off..], &bufs)).unwrap();
            assert_same(isa, "sum_k", &got[off..], &want)?;
        }
    }

    #[test]
    fn filters_match_reference(
        n in len(),
        off in 0usize..4,
        a in prop::collection::vec(value(), 203),
        b in prop::collection::vec(value(), 203),
        theta in hyper(),
        eps in hyper(),
    ) {
        // Make exact zeros common in w so the KKT test has something to skip.
        let w: Vec<f32> = b.iter().map(|x| if x.abs() < 3.0 { 0.0 } else { *x }).collect();
        let (d, w) = (&a[off..off + n], &w[off..off + n]);
        let mut want = Vec::new();
        let mut got = Vec::new();
        with_isa(Isa::Scalar, || significant_indices(d, w, theta, eps, &mut want)).unwrap();
        for isa in fast_tiers() {
            with_isa(isa, || significant_indices(d, w, theta, eps, &mut got)).unwrap();
            prop_assert_eq!(&got, &want, "{} significant", isa);
        }
        with_isa(Isa::Scalar, || kkt_active_indices(w, d, theta, eps.min(1.0), &mut want)).unwrap();
        for isa in fast_tiers() {
            with_isa(isa, || kkt_active_indices(w, d, theta, eps.min(1.0), &mut got)).unwrap();
            prop_assert_eq!(&got, &want, "{} kkt", isa);
        }
    }

    #[test]
    fn conversions_match_reference(
        n in len(),
        off in 0usize..4,
        bits in prop::collection::vec(any::<u32>(), 203),
        vals in prop::collection::vec(value(), 203),
    ) {
        let mut src: Vec<f32> = bits.iter().zip(&vals).enumerate()
            .map(|(i, (b, v))| if i % 2 == 0 { f32::from_bits(*b) } else { *v })
            .collect();
        src.truncate(off + n);
        let src = &src[off..];
        let halves: Vec<u16> = bits.iter().map(|b| *b as u16).take(off + n).collect();
        let halves = &halves[off..];
        let mut want16 = vec![0u16; n];
        let mut want32 = vec![0f32; n];
        let mut got16 = vec![0u16; n];
        let mut got32 = vec![0f32; n];
        type To16 = fn(&[f32], &mut [u16]) -> Result<(), ferrops_kernels::KernelError>;
        type To32 = fn(&[u16], &mut [f32]) -> Result<(), ferrops_kernels::KernelError>;
        let pairs: [(&str, To16, To32); 2] = [
            ("f16", convert::f32_to_f16, convert::f16_to_f32),
            ("bf16", convert::f32_to_bf16, convert::bf16_to_f32),
        ];
        for (name, to16, to32) in pairs {
            with_isa(Isa::Scalar, || to16(src, &mut want16)).unwrap();
            with_isa(Isa::Scalar, || to32(halves, &mut want32)).unwrap();
            for isa in fast_tiers() {
                with_isa(isa, || to16(src, &mut got16)).unwrap();
                prop_assert_eq!(&got16, &want16, "{} f32 -> {}", isa, name);
                with_isa(isa, || to32(halves, &mut got32)).unwrap();
                // Conversions are exact bit operations: NaN payloads must match too.
                let g: Vec<u32> = got32.iter().map(|x| x.to_bits()).collect();
                let w: Vec<u32> = want32.iter().map(|x| x.to_bits()).collect();
                prop_assert_eq!(g, w, "{} {} -> f32", isa, name);
            }
        }
    }
}
