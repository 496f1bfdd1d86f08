//! One-element formulas of every rule: the definition the fast paths must reproduce bit for bit.
//! Each is written as a sequence of single IEEE operations (no fused multiply-add), in the order
//! the vector bodies in `ops.rs` use.

/// Soft-thresholding `S(x, t)`: `0` if `|x| <= t`, else `x - copysign(t, x)`. NaN propagates.
#[inline(always)]
pub fn soft_threshold(x: f32, t: f32) -> f32 {
    if x.abs() <= t {
        0.0
    } else {
        x - t.copysign(x)
    }
}

/// `w - lr*g`.
#[inline(always)]
pub fn sgd(w: f32, g: f32, lr: f32) -> f32 {
    w - lr * g
}

/// Heavy ball: `v = mu*v + g; w = w - lr*v`.
#[inline(always)]
pub fn momentum(w: &mut f32, v: &mut f32, g: f32, lr: f32, mu: f32) {
    *v = mu * *v + g;
    *w -= lr * *v;
}

/// `n = n + g*g; w = w - lr*g / (sqrt(n) + eps)`.
#[inline(always)]
pub fn adagrad(w: &mut f32, n: &mut f32, g: f32, lr: f32, eps: f32) {
    *n += g * g;
    *w -= (lr * g) / (n.sqrt() + eps);
}

/// Adam with the bias correction folded into `lr_t` (see [`adam_lr_t`]):
/// `m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; w = w - lr_t*m / (sqrt(v) + eps)`.
/// `c1 = 1 - b1` and `c2 = 1 - b2` are computed once in f32.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn adam(
    w: &mut f32,
    m: &mut f32,
    v: &mut f32,
    g: f32,
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    lr_t: f32,
    eps: f32,
) {
    *m = b1 * *m + c1 * g;
    *v = b2 * *v + c2 * (g * g);
    *w -= (lr_t * *m) / (v.sqrt() + eps);
}

/// Bias-corrected step size of Adam at 1-based step `t`: `lr * sqrt(1 - b2^t) / (1 - b1^t)`,
/// computed in f64 and rounded once.
pub fn adam_lr_t(lr: f32, b1: f32, b2: f32, t: u32) -> f32 {
    let t = t.min(i32::MAX as u32) as i32;
    let (b1, b2) = (b1 as f64, b2 as f64);
    (lr as f64 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t))) as f32
}

/// FTRL-Proximal (McMahan et al. 2013), one coordinate, with `inv_alpha = 1/alpha` computed
/// once per call (one division per element instead of three):
/// ```text
/// n' = n + g*g
/// sigma = (sqrt(n') - sqrt(n)) * inv_alpha
/// z = z + (g - sigma*w)
/// w = 0                                                          if |z| <= l1
///   = (copysign(l1, z) - z) / ((beta + sqrt(n')) * inv_alpha + l2)   otherwise
/// ```
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn ftrl(
    w: &mut f32,
    z: &mut f32,
    n: &mut f32,
    g: f32,
    inv_alpha: f32,
    beta: f32,
    l1: f32,
    l2: f32,
) {
    let n_new = *n + g * g;
    let sq_new = n_new.sqrt();
    let sigma = (sq_new - n.sqrt()) * inv_alpha;
    *z += g - sigma * *w;
    *n = n_new;
    *w = if z.abs() <= l1 {
        0.0
    } else {
        (l1.copysign(*z) - *z) / ((beta + sq_new) * inv_alpha + l2)
    };
}

/// `S(w - lr*g, t)` with `t = lr*l1` precomputed.
#[inline(always)]
pub fn prox_l1(w: f32, g: f32, lr: f32, t: f32) -> f32 {
    soft_threshold(w - lr * g, t)
}

/// `S(w - lr*g, t) * inv_k` with `t = lr*l1`, `inv_k = 1 / (1 + lr*l2)` precomputed.
#[inline(always)]
pub fn elastic_net(w: f32, g: f32, lr: f32, t: f32, inv_k: f32) -> f32 {
    soft_threshold(w - lr * g, t) * inv_k
}

/// `r = 1 / (h + delta); S(w - g*r, l1*r)` (one division per element).
#[inline(always)]
pub fn scaled_prox_l1(w: f32, g: f32, h: f32, l1: f32, delta: f32) -> f32 {
    let r = 1.0 / (h + delta);
    soft_threshold(w - g * r, l1 * r)
}
