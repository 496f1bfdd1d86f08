//! The logistic loss pieces shared by the distributed solver and the reference solver, and the
//! server's `ScaledProxL1` step for one weight (the kernels' own scalar definition, so a worker
//! can mirror what the server computed).

/// log(1 + exp(−y·m)), computed without overflow.
pub fn loss(y: f32, m: f64) -> f64 {
    let z = -f64::from(y) * m;
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// σ(z) = 1/(1 + exp(−z)).
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// d/dm log(1 + exp(−y·m)) = −y·σ(−y·m), and the second derivative σ(m)(1 − σ(m)).
pub fn derivatives(y: f32, m: f64) -> (f64, f64) {
    let y = f64::from(y);
    let p = sigmoid(m);
    (-y * sigmoid(-y * m), p * (1.0 - p))
}

/// sign(x)·max(|x| − t, 0): the proximal step of t·|x|.
pub fn soft_threshold(x: f64, t: f64) -> f64 {
    if x > t {
        x - t
    } else if x < -t {
        x + t
    } else {
        0.0
    }
}

/// The server's `ScaledProxL1` step for one weight, from the kernels' scalar reference (the
/// definition every SIMD tier reproduces bit for bit).
pub use ferrops_kernels::scalar::elem::scaled_prox_l1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_stable_and_its_derivative_matches_a_finite_difference() {
        assert!((loss(1.0, 0.0) - 2f64.ln()).abs() < 1e-12);
        assert!(loss(1.0, -800.0).is_finite() && loss(-1.0, 800.0) > 799.0);
        for (y, m) in [(1.0f32, 0.3), (-1.0, 1.7), (1.0, -2.2)] {
            let (d1, d2) = derivatives(y, m);
            let e = 1e-5;
            let n1 = (loss(y, m + e) - loss(y, m - e)) / (2.0 * e);
            let n2 = (loss(y, m + e) - 2.0 * loss(y, m) + loss(y, m - e)) / (e * e);
            assert!((d1 - n1).abs() < 1e-6, "{d1} {n1}");
            assert!((d2 - n2).abs() < 1e-3, "{d2} {n2}");
        }
    }

    #[test]
    fn mirrors_the_server_kernel() {
        let rule = ferrops_kernels::Rule::ScaledProxL1 {
            l1: 0.5,
            delta: 0.1,
        };
        let mut w = vec![0.3f32, -2.0, 1.0, 0.0];
        let g = [0.2f32, -1.5, 4.0, 0.01];
        let h = [1.0f32, 0.5, 2.0, 0.0];
        let mine: Vec<f32> = (0..4)
            .map(|i| scaled_prox_l1(w[i], g[i], h[i], 0.5, 0.1))
            .collect();
        let inputs: Vec<f32> = g.iter().chain(h.iter()).copied().collect();
        ferrops_kernels::apply_dense(rule, &mut w, ferrops_kernels::State::none(), &inputs)
            .unwrap();
        assert_eq!(mine, w);
    }
}
