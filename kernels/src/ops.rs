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

/// Declares one op: its struct (the f32 hyper-parameters as public fields), how many read-write
/// and read-only streams it uses (and `reads_w false` when it never reads `w`), its scalar body
/// and its vector body (run inside `unsafe`: the `Simd` methods need the CPU feature the
/// caller guarantees), written in the same IEEE order. `x` is the read-write streams (`w`, then
/// the state arrays; the scalar body may destructure them), `g` the inputs.
macro_rules! op {
    (
        $name:ident $({ $($field:ident),* })?: rw $rw:literal, ro $ro:literal
            $(, reads_w $reads_w:literal)?;
        fn scalar($ss:tt, $sx:pat, $sg:ident) $scalar:block
        unsafe fn vector($vs:tt, $vx:ident, $vg:ident) { $($vector:tt)* }
    ) => {
        op!(@struct $name $($($field)*)?);
        impl Op for $name {
            const RW: usize = $rw;
            const RO: usize = $ro;
            $(const READS_W: bool = $reads_w;)?
            #[inline(always)]
            fn scalar($ss, $sx: &mut [f32; 3], $sg: [f32; 2]) $scalar
            #[inline(always)]
            #[allow(unused_unsafe)] // `Assign` calls no vector method.
            unsafe fn vector<V: Simd>($vs, $vx: &mut [V; 3], $vg: [V; 2]) {
                // SAFETY: forwarded caller contract (feature present).
                unsafe {
                    $($vector)*
                }
            }
        }
    };
    (@struct $name:ident) => {
        #[derive(Clone, Copy)]
        pub(crate) struct $name;
    };
    (@struct $name:ident $($field:ident)+) => {
        #[derive(Clone, Copy)]
        pub(crate) struct $name {
            $(pub $field: f32),+
        }
    };
}

op! {
    Assign: rw 1, ro 1, reads_w false;
    fn scalar(self, x, g) {
        x[0] = g[0];
    }
    unsafe fn vector(self, x, g) {
        x[0] = g[0];
    }
}

op! {
    Sum: rw 1, ro 1;
    fn scalar(self, x, g) {
        x[0] += g[0];
    }
    unsafe fn vector(self, x, g) {
        x[0] = x[0].add(g[0]);
    }
}

op! {
    Sgd { lr }: rw 1, ro 1;
    fn scalar(self, x, g) {
        x[0] = elem::sgd(x[0], g[0], self.lr);
    }
    unsafe fn vector(self, x, g) {
        x[0] = x[0].sub(V::splat(self.lr).mul(g[0]));
    }
}

op! {
    Momentum { lr, mu }: rw 2, ro 1;
    fn scalar(self, [w, v, _], g) {
        elem::momentum(w, v, g[0], self.lr, self.mu);
    }
    unsafe fn vector(self, x, g) {
        x[1] = V::splat(self.mu).mul(x[1]).add(g[0]);
        x[0] = x[0].sub(V::splat(self.lr).mul(x[1]));
    }
}

op! {
    AdaGrad { lr, eps }: rw 2, ro 1;
    fn scalar(self, [w, n, _], g) {
        elem::adagrad(w, n, g[0], self.lr, self.eps);
    }
    unsafe fn vector(self, x, g) {
        x[1] = x[1].add(g[0].mul(g[0]));
        let step = V::splat(self.lr).mul(g[0]);
        x[0] = x[0].sub(step.div(x[1].sqrt().add(V::splat(self.eps))));
    }
}

op! {
    Adam { b1, c1, b2, c2, lr_t, eps }: rw 3, ro 1;
    fn scalar(self, [w, m, v], g) {
        elem::adam(
            w, m, v, g[0], self.b1, self.c1, self.b2, self.c2, self.lr_t, self.eps,
        );
    }
    unsafe fn vector(self, x, g) {
        let g = g[0];
        x[1] = V::splat(self.b1).mul(x[1]).add(V::splat(self.c1).mul(g));
        x[2] = V::splat(self.b2)
            .mul(x[2])
            .add(V::splat(self.c2).mul(g.mul(g)));
        let num = V::splat(self.lr_t).mul(x[1]);
        x[0] = x[0].sub(num.div(x[2].sqrt().add(V::splat(self.eps))));
    }
}

op! {
    Ftrl { inv_alpha, beta, l1, l2 }: rw 3, ro 1;
    fn scalar(self, [w, z, n], g) {
        elem::ftrl(w, z, n, g[0], self.inv_alpha, self.beta, self.l1, self.l2);
    }
    unsafe fn vector(self, x, g) {
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

op! {
    ProxL1 { lr, t }: rw 1, ro 1;
    fn scalar(self, x, g) {
        x[0] = elem::prox_l1(x[0], g[0], self.lr, self.t);
    }
    unsafe fn vector(self, x, g) {
        let y = x[0].sub(V::splat(self.lr).mul(g[0]));
        x[0] = soft_threshold(y, V::splat(self.t));
    }
}

op! {
    ElasticNet { lr, t, inv_k }: rw 1, ro 1;
    fn scalar(self, x, g) {
        x[0] = elem::elastic_net(x[0], g[0], self.lr, self.t, self.inv_k);
    }
    unsafe fn vector(self, x, g) {
        let y = x[0].sub(V::splat(self.lr).mul(g[0]));
        x[0] = soft_threshold(y, V::splat(self.t)).mul(V::splat(self.inv_k));
    }
}

op! {
    ScaledProxL1 { l1, delta }: rw 1, ro 2;
    fn scalar(self, x, g) {
        x[0] = elem::scaled_prox_l1(x[0], g[0], g[1], self.l1, self.delta);
    }
    unsafe fn vector(self, x, g) {
        let r = V::splat(1.0).div(g[1].add(V::splat(self.delta)));
        let y = x[0].sub(g[0].mul(r));
        x[0] = soft_threshold(y, V::splat(self.l1).mul(r));
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
