//! Small hand-computed cases (independent of the scalar reference), run on every tier the CPU
//! supports, plus the validation errors.

use ferrops_kernels::{apply_dense, apply_sparse, sum_k, with_isa, Isa, KernelError, Rule, State};

fn tiers() -> Vec<Isa> {
    Isa::supported().collect()
}

/// 19 copies of the pattern, so every tier runs full vectors and a tail.
fn rep(v: &[f32]) -> Vec<f32> {
    v.iter().copied().cycle().take(v.len() * 19).collect()
}

fn check(isa: Isa, got: &[f32], want: &[f32], what: &str) {
    let want = rep(want);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{isa} {what}[{i}]: got {g:?}, want {w:?}"
        );
    }
}

#[test]
fn sgd_sum_assign() {
    for isa in tiers() {
        let mut w = rep(&[1.0, -2.0, 0.5, 0.0]);
        let g = rep(&[2.0, 4.0, -1.0, 8.0]);
        with_isa(isa, || {
            apply_dense(Rule::Sgd { lr: 0.5 }, &mut w, State::none(), &g)
        })
        .unwrap();
        check(isa, &w, &[0.0, -4.0, 1.0, -4.0], "sgd");
        with_isa(isa, || apply_dense(Rule::Sum, &mut w, State::none(), &g)).unwrap();
        check(isa, &w, &[2.0, 0.0, 0.0, 4.0], "sum");
        with_isa(isa, || apply_dense(Rule::Assign, &mut w, State::none(), &g)).unwrap();
        check(isa, &w, &[2.0, 4.0, -1.0, 8.0], "assign");
    }
}

#[test]
fn momentum_and_adagrad() {
    for isa in tiers() {
        let mut w = rep(&[1.0, 1.0]);
        let mut v = rep(&[2.0, -2.0]);
        let g = rep(&[1.0, 1.0]);
        let rule = Rule::Momentum { lr: 0.25, mu: 0.5 };
        with_isa(isa, || apply_dense(rule, &mut w, State::one(&mut v), &g)).unwrap();
        // v = 0.5*2+1 = 2, 0.5*-2+1 = 0; w = 1 - 0.25*2 = 0.5, 1 - 0 = 1
        check(isa, &v, &[2.0, 0.0], "momentum v");
        check(isa, &w, &[0.5, 1.0], "momentum w");

        let mut w = rep(&[1.0, 0.0]);
        let mut n = rep(&[12.0, 0.0]);
        let g = rep(&[2.0, 3.0]);
        let rule = Rule::AdaGrad { lr: 1.0, eps: 0.0 };
        with_isa(isa, || apply_dense(rule, &mut w, State::one(&mut n), &g)).unwrap();
        // n = 16, 9; w = 1 - 2/4 = 0.5, 0 - 3/3 = -1
        check(isa, &n, &[16.0, 9.0], "adagrad n");
        check(isa, &w, &[0.5, -1.0], "adagrad w");
    }
}

#[test]
fn adam_first_step_moves_by_lr() {
    // At t = 1 with eps = 0, m_hat = g and v_hat = g^2, so w moves by exactly lr*sign(g).
    for isa in tiers() {
        let mut w = rep(&[1.0, 1.0]);
        let (mut m, mut v) = (rep(&[0.0, 0.0]), rep(&[0.0, 0.0]));
        let g = rep(&[0.5, -4.0]);
        let rule = Rule::Adam {
            lr: 0.25,
            beta1: 0.5,
            beta2: 0.75,
            eps: 0.0,
            step: 1,
        };
        with_isa(isa, || {
            apply_dense(rule, &mut w, State::two(&mut m, &mut v), &g)
        })
        .unwrap();
        check(isa, &m, &[0.25, -2.0], "adam m");
        check(isa, &v, &[0.0625, 4.0], "adam v");
        check(isa, &w, &[0.75, 1.25], "adam w");
    }
}

#[test]
fn ftrl_hand_case() {
    for isa in tiers() {
        // n = 0, z = 0, w = 0, g = 3: n' = 9, sigma = 3/alpha = 1.5, z = 3,
        // |z| > l1 = 1: w = (1 - 3) / ((beta + 3)/alpha + l2) = -2 / ((1+3)/2 + 0) = -1.
        // g = 0.5: n' = 0.25, sigma = 0.25, z = 0.5 <= l1 so w = 0.
        let mut w = rep(&[0.0, 0.0]);
        let (mut z, mut n) = (rep(&[0.0, 0.0]), rep(&[0.0, 0.0]));
        let g = rep(&[3.0, 0.5]);
        let rule = Rule::Ftrl {
            alpha: 2.0,
            beta: 1.0,
            l1: 1.0,
            l2: 0.0,
        };
        with_isa(isa, || {
            apply_dense(rule, &mut w, State::two(&mut z, &mut n), &g)
        })
        .unwrap();
        check(isa, &z, &[3.0, 0.5], "ftrl z");
        check(isa, &n, &[9.0, 0.25], "ftrl n");
        check(isa, &w, &[-1.0, 0.0], "ftrl w");
    }
}

#[test]
fn proximal_rules() {
    for isa in tiers() {
        // y = w - lr*g = [3, -3, 0.5, -0.5]; threshold lr*l1 = 1.
        let mut w = rep(&[4.0, -4.0, 1.0, 0.0]);
        let g = rep(&[2.0, -2.0, 1.0, 1.0]);
        let rule = Rule::ProxL1 { lr: 0.5, l1: 2.0 };
        with_isa(isa, || apply_dense(rule, &mut w, State::none(), &g)).unwrap();
        check(isa, &w, &[2.0, -2.0, 0.0, 0.0], "prox_l1");

        let mut w = rep(&[4.0, -4.0, 1.0, 0.0]);
        let rule = Rule::ElasticNet {
            lr: 0.5,
            l1: 2.0,
            l2: 2.0,
        };
        with_isa(isa, || apply_dense(rule, &mut w, State::none(), &g)).unwrap();
        check(isa, &w, &[1.0, -1.0, 0.0, 0.0], "elastic_net");

        // d = h + delta = 2: y = w - g/2, t = l1/2 = 1.
        let mut w = rep(&[4.0, -4.0, 1.0, 0.0]);
        let mut gh = rep(&[2.0, -2.0, 1.0, 1.0]);
        gh.extend(rep(&[1.5, 1.5, 1.5, 1.5]));
        let rule = Rule::ScaledProxL1 {
            l1: 2.0,
            delta: 0.5,
        };
        with_isa(isa, || apply_dense(rule, &mut w, State::none(), &gh)).unwrap();
        check(isa, &w, &[2.0, -2.0, 0.0, 0.0], "scaled_prox_l1");
    }
}

#[test]
fn sparse_rows_in_request_order() {
    for isa in tiers() {
        let dim = 17;
        let mut w = vec![1.0f32; 4 * dim];
        // Slot 2 twice (sequential), slot 0 once; row 1 and 3 untouched.
        let slots = [2u32, 0, 2];
        let g: Vec<f32> = (0..3 * dim).map(|i| (i / dim) as f32 + 1.0).collect();
        with_isa(isa, || {
            apply_sparse(Rule::Sum, &mut w, State::none(), &slots, dim, &g)
        })
        .unwrap();
        for (i, x) in w.iter().enumerate() {
            let want = match i / dim {
                0 => 3.0,
                2 => 1.0 + 1.0 + 3.0,
                _ => 1.0,
            };
            assert_eq!(*x, want, "{isa} w[{i}]");
        }
    }
}

#[test]
fn sum_k_left_to_right() {
    for isa in tiers() {
        let a = rep(&[1.0, 1e8, -0.0]);
        let b = rep(&[2.0, 1.0, -0.0]);
        let c = rep(&[3.0, -1e8, -0.0]);
        let mut out = vec![9.0; a.len()];
        with_isa(isa, || sum_k(&mut out, &[&a, &b, &c])).unwrap();
        // (1e8 + 1) rounds back to 1e8 in f32, then - 1e8 = 0. -0 + -0 = -0.
        check(isa, &out, &[6.0, 0.0, -0.0], "sum_k");
        with_isa(isa, || sum_k(&mut out, &[])).unwrap();
        check(isa, &out, &[0.0, 0.0, 0.0], "sum_k empty");
    }
}

#[test]
fn errors_are_typed_and_leave_data_alone() {
    for isa in tiers() {
        let mut w = vec![1.0f32; 8];
        let g = vec![1.0f32; 7];
        let err = with_isa(isa, || apply_dense(Rule::Sum, &mut w, State::none(), &g)).unwrap_err();
        assert!(matches!(err, KernelError::Length { .. }), "{err}");

        let g = vec![1.0f32; 8];
        let err = with_isa(isa, || {
            apply_dense(
                Rule::Momentum { lr: 1.0, mu: 0.0 },
                &mut w,
                State::none(),
                &g,
            )
        })
        .unwrap_err();
        assert!(matches!(err, KernelError::StateCount { expected: 1, .. }));

        let mut short = vec![0.0f32; 3];
        let err = with_isa(isa, || {
            apply_dense(
                Rule::AdaGrad { lr: 1.0, eps: 1.0 },
                &mut w,
                State::one(&mut short),
                &g,
            )
        })
        .unwrap_err();
        assert!(matches!(err, KernelError::Length { .. }));

        let rule = Rule::Adam {
            lr: 1.0,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            step: 0,
        };
        let (mut m, mut v) = (vec![0.0; 8], vec![0.0; 8]);
        let err = with_isa(isa, || {
            apply_dense(rule, &mut w, State::two(&mut m, &mut v), &g)
        })
        .unwrap_err();
        assert!(matches!(err, KernelError::InvalidRule { .. }));

        // Sparse: slot out of range (4 rows of 2), dim 0, short inputs; nothing modified.
        let g4 = vec![5.0f32; 4];
        let err = with_isa(isa, || {
            apply_sparse(Rule::Sum, &mut w, State::none(), &[0, 4], 2, &g4)
        })
        .unwrap_err();
        assert!(matches!(
            err,
            KernelError::SlotOutOfRange {
                index: 1,
                slot: 4,
                ..
            }
        ));
        let err = with_isa(isa, || {
            apply_sparse(Rule::Sum, &mut w, State::none(), &[0], 0, &[])
        })
        .unwrap_err();
        assert_eq!(err, KernelError::ZeroDim);
        let err = with_isa(isa, || {
            apply_sparse(Rule::Sum, &mut w, State::none(), &[0, 1], 2, &g4[..3])
        })
        .unwrap_err();
        assert!(matches!(err, KernelError::Length { .. }));
        let err = with_isa(isa, || {
            apply_sparse(Rule::Sum, &mut w, State::none(), &[u32::MAX], 2, &g4[..2])
        })
        .unwrap_err();
        assert!(matches!(err, KernelError::SlotOutOfRange { .. }));
        assert!(w.iter().all(|&x| x == 1.0));

        let mut out = vec![0.0f32; 8];
        let err = with_isa(isa, || sum_k(&mut out, &[&g, &g4])).unwrap_err();
        assert!(matches!(err, KernelError::Length { .. }));
    }
}

#[test]
fn rule_metadata() {
    let ftrl = Rule::Ftrl {
        alpha: 1.0,
        beta: 1.0,
        l1: 0.0,
        l2: 0.0,
    };
    assert_eq!(
        (ftrl.state_len(), ftrl.inputs(), ftrl.name()),
        (2, 1, "ftrl")
    );
    let s = Rule::ScaledProxL1 {
        l1: 1.0,
        delta: 1.0,
    };
    assert_eq!(
        (s.state_len(), s.inputs(), s.name()),
        (0, 2, "scaled_prox_l1")
    );
    let m = Rule::Momentum { lr: 1.0, mu: 0.9 };
    assert_eq!((m.state_len(), m.inputs()), (1, 1));
    assert_eq!(Rule::Assign.state_len(), 0);
}

#[test]
fn large_outputs_take_the_streaming_path_correctly() {
    // Past 16 MiB, assign and sum_k write with non-temporal stores after an aligning head;
    // start one element into the allocation so the head is non-empty.
    let n = (4 << 20) + 37;
    let g: Vec<f32> = (0..n + 1).map(|i| (i % 1000) as f32 - 500.0).collect();
    let h: Vec<f32> = (0..n + 1).map(|i| (i % 7) as f32 * 0.5).collect();
    for isa in tiers() {
        let mut w = vec![1.0f32; n + 1];
        with_isa(isa, || {
            apply_dense(Rule::Assign, &mut w[1..], State::none(), &g[1..])
        })
        .unwrap();
        assert_eq!(w[0], 1.0);
        assert!(
            w[1..].iter().zip(&g[1..]).all(|(a, b)| a == b),
            "{isa} assign"
        );
        with_isa(isa, || sum_k(&mut w[1..], &[&g[1..], &h[1..]])).unwrap();
        assert_eq!(w[0], 1.0);
        for i in 1..=n {
            assert_eq!(w[i], g[i] + h[i], "{isa} sum_k[{i}]");
        }
    }
}
