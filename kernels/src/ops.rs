//! One `Op` per rule: the same element-wise update written twice, once over scalars (calling the
//! reference formulas in `scalar::elem`) and once over any [`Simd`] vector, with the same IEEE
//! operations in the same order.

use crate::scalar::elem;
use crate::simd::{soft_threshold, Simd};

/// An element-wise update over `RW` read-write streams (`w`, then the state arrays) and `RO`
/// read-only inputs.
pub(crate) trait Op: Copy {
    const RW: usize;
    const RO: usize;
    /// False when the op never reads `w` (assign): large outputs are then streamed.
    const READS_W: bool = true;
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]);
    /// # Safety
    /// `V` must be supported by the CPU.
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]);
}

#[derive(Clone, Copy)]
pub(crate) struct Assign;
impl Op for Assign {
    const RW: usize = 1;
    const RO: usize = 1;
    const READS_W: bool = false;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] = g[0];
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        x[0] = g[0];
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Sum;
impl Op for Sum {
    const RW: usize = 1;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] += g[0];
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        x[0] = unsafe { x[0].add(g[0]) };
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Sgd {
    pub lr: f32,
}
impl Op for Sgd {
    const RW: usize = 1;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] = elem::sgd(x[0], g[0], self.lr);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        x[0] = unsafe { x[0].sub(V::splat(self.lr).mul(g[0])) };
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Momentum {
    pub lr: f32,
    pub mu: f32,
}
impl Op for Momentum {
    const RW: usize = 2;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        let [w, v, _] = x;
        elem::momentum(w, v, g[0], self.lr, self.mu);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            x[1] = V::splat(self.mu).mul(x[1]).add(g[0]);
            x[0] = x[0].sub(V::splat(self.lr).mul(x[1]));
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct AdaGrad {
    pub lr: f32,
    pub eps: f32,
}
impl Op for AdaGrad {
    const RW: usize = 2;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        let [w, n, _] = x;
        elem::adagrad(w, n, g[0], self.lr, self.eps);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            x[1] = x[1].add(g[0].mul(g[0]));
            let step = V::splat(self.lr).mul(g[0]);
            x[0] = x[0].sub(step.div(x[1].sqrt().add(V::splat(self.eps))));
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Adam {
    pub b1: f32,
    pub c1: f32,
    pub b2: f32,
    pub c2: f32,
    pub lr_t: f32,
    pub eps: f32,
}
impl Op for Adam {
    const RW: usize = 3;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        let [w, m, v] = x;
        elem::adam(
            w, m, v, g[0], self.b1, self.c1, self.b2, self.c2, self.lr_t, self.eps,
        );
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            let g = g[0];
            x[1] = V::splat(self.b1).mul(x[1]).add(V::splat(self.c1).mul(g));
            x[2] = V::splat(self.b2)
                .mul(x[2])
                .add(V::splat(self.c2).mul(g.mul(g)));
            let num = V::splat(self.lr_t).mul(x[1]);
            x[0] = x[0].sub(num.div(x[2].sqrt().add(V::splat(self.eps))));
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Ftrl {
    pub inv_alpha: f32,
    pub beta: f32,
    pub l1: f32,
    pub l2: f32,
}
impl Op for Ftrl {
    const RW: usize = 3;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        let [w, z, n] = x;
        elem::ftrl(w, z, n, g[0], self.inv_alpha, self.beta, self.l1, self.l2);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            let g = g[0];
            let inv_alpha = V::splat(self.inv_alpha);
            let l1 = V::splat(self.l1);
            let n_new = x[2].add(g.mul(g));
            let sq_new = n_new.sqrt();
            let sigma = sq_new.sub(x[2].sqrt()).mul(inv_alpha);
            x[1] = x[1].add(g.sub(sigma.mul(x[0])));
            x[2] = n_new;
            let z = x[1];
            let denom = V::splat(self.beta)
                .add(sq_new)
                .mul(inv_alpha)
                .add(V::splat(self.l2));
            let w = l1.copysign(z).sub(z).div(denom);
            x[0] = V::select(z.abs().le(l1), V::splat(0.0), w);
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct ProxL1 {
    pub lr: f32,
    pub t: f32,
}
impl Op for ProxL1 {
    const RW: usize = 1;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] = elem::prox_l1(x[0], g[0], self.lr, self.t);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            let y = x[0].sub(V::splat(self.lr).mul(g[0]));
            x[0] = soft_threshold(y, V::splat(self.t));
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct ElasticNet {
    pub lr: f32,
    pub t: f32,
    pub inv_k: f32,
}
impl Op for ElasticNet {
    const RW: usize = 1;
    const RO: usize = 1;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] = elem::elastic_net(x[0], g[0], self.lr, self.t, self.inv_k);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            let y = x[0].sub(V::splat(self.lr).mul(g[0]));
            x[0] = soft_threshold(y, V::splat(self.t)).mul(V::splat(self.inv_k));
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct ScaledProxL1 {
    pub l1: f32,
    pub delta: f32,
}
impl Op for ScaledProxL1 {
    const RW: usize = 1;
    const RO: usize = 2;
    #[inline(always)]
    fn scalar(self, x: &mut [f32; 3], g: [f32; 2]) {
        x[0] = elem::scaled_prox_l1(x[0], g[0], g[1], self.l1, self.delta);
    }
    #[inline(always)]
    unsafe fn vector<V: Simd>(self, x: &mut [V; 3], g: [V; 2]) {
        // SAFETY: forwarded caller contract (feature present).
        unsafe {
            let r = V::splat(1.0).div(g[1].add(V::splat(self.delta)));
            let y = x[0].sub(g[0].mul(r));
            x[0] = soft_threshold(y, V::splat(self.l1).mul(r));
        }
    }
}

/// Expands `$body` once per rule with `$op` bound to that rule's [`Op`] (hyper-parameters
/// pre-combined exactly as the scalar reference does).
macro_rules! with_op {
    ($rule:expr, $op:ident => $body:expr) => {{
        use $crate::ops::*;
        match $rule {
            $crate::rule::Rule::Assign => {
                let $op = Assign;
                $body
            }
            $crate::rule::Rule::Sum => {
                let $op = Sum;
                $body
            }
            $crate::rule::Rule::Sgd { lr } => {
                let $op = Sgd { lr };
                $body
            }
            $crate::rule::Rule::Momentum { lr, mu } => {
                let $op = Momentum { lr, mu };
                $body
            }
            $crate::rule::Rule::AdaGrad { lr, eps } => {
                let $op = AdaGrad { lr, eps };
                $body
            }
            $crate::rule::Rule::Adam {
                lr,
                beta1,
                beta2,
                eps,
                step,
            } => {
                let $op = adam_op(lr, beta1, beta2, eps, step);
                $body
            }
            $crate::rule::Rule::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => {
                let $op = Ftrl {
                    inv_alpha: 1.0 / alpha,
                    beta,
                    l1,
                    l2,
                };
                $body
            }
            $crate::rule::Rule::ProxL1 { lr, l1 } => {
                let $op = ProxL1 { lr, t: lr * l1 };
                $body
            }
            $crate::rule::Rule::ElasticNet { lr, l1, l2 } => {
                let $op = ElasticNet {
                    lr,
                    t: lr * l1,
                    inv_k: 1.0 / (1.0 + lr * l2),
                };
                $body
            }
            $crate::rule::Rule::ScaledProxL1 { l1, delta } => {
                let $op = ScaledProxL1 { l1, delta };
                $body
            }
        }
    }};
}
pub(crate) use with_op;

/// The Adam op: bias correction folded into `lr_t`, `1 - beta` pre-computed in f32.
pub(crate) fn adam_op(lr: f32, beta1: f32, beta2: f32, eps: f32, step: u32) -> Adam {
    Adam {
        b1: beta1,
        c1: 1.0 - beta1,
        b2: beta2,
        c2: 1.0 - beta2,
        lr_t: elem::adam_lr_t(lr, beta1, beta2, step),
        eps,
    }
}
