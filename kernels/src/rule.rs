//! `Rule` (which update to apply, with its hyper-parameters) and `State` (the per-parameter state
//! arrays a rule keeps beside the weights).

use crate::error::KernelError;

/// An update rule and its hyper-parameters. See the crate docs for the exact formula of each.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Rule {
    /// `w = g`.
    Assign,
    /// `w = w + g`.
    Sum,
    /// `w = w - lr*g`.
    Sgd { lr: f32 },
    /// Heavy ball, state `[v]`: `v = mu*v + g; w = w - lr*v`.
    Momentum { lr: f32, mu: f32 },
    /// State `[n]`: `n = n + g*g; w = w - lr*g / (sqrt(n) + eps)`.
    AdaGrad { lr: f32, eps: f32 },
    /// State `[m, v]`. `step` is the 1-based step number used for bias correction; the caller
    /// owns the counter (see the crate docs, "Adam step count").
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        step: u32,
    },
    /// FTRL-Proximal (McMahan et al. 2013), state `[z, n]`.
    Ftrl {
        alpha: f32,
        beta: f32,
        l1: f32,
        l2: f32,
    },
    /// `w = S(w - lr*g, lr*l1)` with soft-thresholding `S`.
    ProxL1 { lr: f32, l1: f32 },
    /// `w = S(w - lr*g, lr*l1) * (1 / (1 + lr*l2))`.
    ElasticNet { lr: f32, l1: f32, l2: f32 },
    /// Delayed block proximal gradient, two planar inputs `g` then `h`:
    /// `r = 1/(h + delta); w = S(w - g*r, l1*r)`.
    ScaledProxL1 { l1: f32, delta: f32 },
}

impl Rule {
    /// Adam with learning rate `lr` and the usual moments and ε (β₁ 0.9, β₂ 0.999, ε 1e-8),
    /// from step 0.
    pub const fn adam(lr: f32) -> Rule {
        Rule::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
        }
    }

    /// How many per-parameter state arrays the rule keeps (0, 1 or 2), each as long as `w`.
    pub fn state_len(&self) -> usize {
        match self {
            Rule::Momentum { .. } | Rule::AdaGrad { .. } => 1,
            Rule::Adam { .. } | Rule::Ftrl { .. } => 2,
            _ => 0,
        }
    }

    /// How many input arrays a push carries: 1 (gradient or value), or 2 for `ScaledProxL1`
    /// (gradient then curvature, planar).
    pub fn inputs(&self) -> usize {
        match self {
            Rule::ScaledProxL1 { .. } => 2,
            _ => 1,
        }
    }

    /// Short lower-case name (`"prox_l1"`), stable for logs, configs and benchmark output.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Assign => "assign",
            Rule::Sum => "sum",
            Rule::Sgd { .. } => "sgd",
            Rule::Momentum { .. } => "momentum",
            Rule::AdaGrad { .. } => "adagrad",
            Rule::Adam { .. } => "adam",
            Rule::Ftrl { .. } => "ftrl",
            Rule::ProxL1 { .. } => "prox_l1",
            Rule::ElasticNet { .. } => "elastic_net",
            Rule::ScaledProxL1 { .. } => "scaled_prox_l1",
        }
    }

    /// Checks the hyper-parameters that would make the rule meaningless (not their ranges in
    /// general: a NaN learning rate simply propagates, like any other NaN).
    pub fn validate(&self) -> Result<(), KernelError> {
        if let Rule::Adam { step: 0, .. } = self {
            return Err(KernelError::InvalidRule {
                rule: "adam",
                reason: "step is 1-based and must be at least 1",
            });
        }
        Ok(())
    }
}

/// The per-parameter state arrays of a rule, laid out like `w` (same length; in the sparse form
/// the same rows are updated). Build it with [`State::none`], [`State::one`] or [`State::two`]; the
/// order of the arrays is given on each [`Rule`] variant.
#[derive(Debug, Default)]
pub struct State<'a> {
    pub(crate) a: Option<&'a mut [f32]>,
    pub(crate) b: Option<&'a mut [f32]>,
}

impl<'a> State<'a> {
    /// No state (assign, sum, sgd, the proximal rules).
    pub fn none() -> Self {
        State { a: None, b: None }
    }
    /// One state array (momentum `v`, adagrad `n`).
    pub fn one(a: &'a mut [f32]) -> Self {
        State {
            a: Some(a),
            b: None,
        }
    }
    /// Two state arrays (adam `m, v`; ftrl `z, n`).
    pub fn two(a: &'a mut [f32], b: &'a mut [f32]) -> Self {
        State {
            a: Some(a),
            b: Some(b),
        }
    }
    /// The arrays `rule` uses, taken in order from `a` and `b` (none, `a`, or both).
    pub fn for_rule(rule: Rule, a: &'a mut [f32], b: &'a mut [f32]) -> Self {
        match rule.state_len() {
            0 => State::none(),
            1 => State::one(a),
            _ => State::two(a, b),
        }
    }
    /// Number of arrays held.
    pub fn len(&self) -> usize {
        self.a.is_some() as usize + self.b.is_some() as usize
    }
    /// True when no array is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
