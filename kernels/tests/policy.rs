//! The NaN/Inf policy of the crate docs, the filters on hand cases, and the serde form of Rule.

use ferrops_kernels::{
    apply_dense, kkt_active_indices, significant_indices, with_isa, Isa, Rule, State,
};

fn rules() -> Vec<Rule> {
    vec![
        Rule::Assign,
        Rule::Sum,
        Rule::Sgd { lr: 0.1 },
        Rule::Momentum { lr: 0.1, mu: 0.9 },
        Rule::AdaGrad { lr: 0.1, eps: 1e-8 },
        Rule::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 3,
        },
        Rule::Ftrl {
            alpha: 0.1,
            beta: 1.0,
            l1: 0.5,
            l2: 0.1,
        },
        Rule::ProxL1 { lr: 0.1, l1: 100.0 },
        Rule::ElasticNet {
            lr: 0.1,
            l1: 100.0,
            l2: 1.0,
        },
        Rule::ScaledProxL1 {
            l1: 100.0,
            delta: 1.0,
        },
    ]
}

#[test]
fn nan_gradient_propagates_to_w_for_every_rule() {
    // Large l1 would zero any finite value; a NaN must survive anyway.
    for isa in Isa::supported() {
        for rule in rules() {
            let n = 37;
            let mut w = vec![0.5f32; n];
            let mut g = vec![0.25f32; n * rule.inputs()];
            g[3] = f32::NAN;
            g[20] = f32::NAN;
            let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
            let state = State::for_rule(rule, &mut a, &mut b);
            with_isa(isa, || apply_dense(rule, &mut w, state, &g)).unwrap();
            assert!(w[3].is_nan() && w[20].is_nan(), "{isa} {}", rule.name());
            assert!(!w[4].is_nan() && !w[21].is_nan(), "{isa} {}", rule.name());
        }
    }
}

#[test]
fn nan_weight_is_never_cleaned() {
    for isa in Isa::supported() {
        for rule in rules() {
            if rule == Rule::Assign {
                continue; // assign overwrites by definition
            }
            let n = 19;
            let mut w = vec![0.0f32; n];
            w[17] = f32::NAN;
            let g = vec![0.0f32; n * rule.inputs()];
            let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
            let state = State::for_rule(rule, &mut a, &mut b);
            with_isa(isa, || apply_dense(rule, &mut w, state, &g)).unwrap();
            let ftrl = matches!(rule, Rule::Ftrl { .. });
            // FTRL recomputes w from z and n; the NaN moves into z (sigma*w with sigma = 0
            // gives 0*NaN = NaN) and from there into w.
            assert!(w[17].is_nan(), "{isa} {} w", rule.name());
            if ftrl {
                assert!(a[17].is_nan());
            }
        }
    }
}

#[test]
fn infinities_follow_ieee() {
    for isa in Isa::supported() {
        let mut w = vec![1.0f32; 17];
        let mut g = vec![0.0f32; 17];
        g[16] = f32::INFINITY;
        with_isa(isa, || {
            apply_dense(Rule::Sgd { lr: 0.5 }, &mut w, State::none(), &g)
        })
        .unwrap();
        assert_eq!(w[16], f32::NEG_INFINITY);
        // inf - inf = NaN, not cleaned.
        with_isa(isa, || apply_dense(Rule::Sum, &mut w, State::none(), &g)).unwrap();
        assert!(w[16].is_nan());
        // Soft-thresholding keeps an infinite value infinite.
        let mut w = vec![f32::INFINITY; 17];
        let g = vec![0.0f32; 17];
        with_isa(isa, || {
            apply_dense(Rule::ProxL1 { lr: 1.0, l1: 1.0 }, &mut w, State::none(), &g)
        })
        .unwrap();
        assert!(w.iter().all(|x| *x == f32::INFINITY));
    }
}

#[test]
fn filters_hand_cases() {
    for isa in Isa::supported() {
        // theta = 0.1, eps = 1: threshold 0.1*max(|w|, 1).
        let delta = [0.05f32, 0.2, -0.2, 5.0, f32::NAN, 0.0, 0.1, 1.0].repeat(3);
        let w = [0.0f32, 0.0, 0.0, 100.0, 1.0, f32::NAN, 1.0, 9.0].repeat(3);
        let mut out = Vec::new();
        let count = with_isa(isa, || significant_indices(&delta, &w, 0.1, 1.0, &mut out)).unwrap();
        let base = [1u32, 2, 4, 5, 7];
        let want: Vec<u32> = (0..3)
            .flat_map(|r| base.iter().map(move |b| b + 8 * r))
            .collect();
        assert_eq!(out, want, "{isa}");
        assert_eq!(count, want.len());

        // KKT: l1 = 1, margin = 0.1 → skippable iff w == 0 and |g| <= 0.9.
        let w = [0.0f32, -0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(2);
        let g = [0.5f32, -0.9, 0.95, 0.0, f32::NAN, 0.0, -2.0, 0.1, 0.9].repeat(2);
        with_isa(isa, || kkt_active_indices(&w, &g, 1.0, 0.1, &mut out)).unwrap();
        let base = [2u32, 3, 4, 6];
        let want: Vec<u32> = (0..2)
            .flat_map(|r| base.iter().map(move |b| b + 9 * r))
            .collect();
        assert_eq!(out, want, "{isa}");

        assert!(with_isa(isa, || kkt_active_indices(&w, &g[1..], 1.0, 0.1, &mut out)).is_err());
    }
}

#[test]
fn forcing_scalar_changes_the_active_isa() {
    let detected = ferrops_kernels::detected_isa();
    ferrops_kernels::force_scalar(true);
    assert_eq!(ferrops_kernels::active_isa(), Isa::Scalar);
    ferrops_kernels::force_scalar(false);
    assert_eq!(ferrops_kernels::active_isa(), detected);
    for isa in Isa::ALL {
        assert_eq!(
            ferrops_kernels::force_isa(Some(isa)).is_ok(),
            isa.is_supported()
        );
    }
    ferrops_kernels::force_isa(None).unwrap();
}

#[cfg(feature = "serde")]
#[test]
fn rule_serde_round_trip() {
    for rule in rules() {
        let text = serde_json::to_string(&rule).unwrap();
        let back: Rule = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rule, "{text}");
    }
    let r: Rule = serde_json::from_str(r#"{"Sgd":{"lr":0.5}}"#).unwrap();
    assert_eq!(r, Rule::Sgd { lr: 0.5 });
}
