//! Table declarations from Python arguments: the rule by name with its hyper-parameters as
//! keyword arguments, the consistency as a name or an integer τ, and the value codec by name.
//! Unknown names and keywords are refused with the list of what is accepted.

use std::collections::HashMap;

use ferrops_engine::{Consistency, KeyLayout, TableSpec};
use ferrops_kernels::Rule;
use ferrops_net::codec::ValueCodec;
use pyo3::prelude::*;

use crate::errors::argument;

/// A rule's hyper-parameters with their defaults.
type HyperParams = &'static [(&'static str, f32)];

/// How a rule is built from its hyper-parameters' values, given in the order of its table row.
type BuildRule = fn(&[f32]) -> Rule;

/// The rule names `declare_table` accepts, with each rule's hyper-parameters and defaults, and
/// how the rule is built from their values.
pub const RULES: &[(&str, HyperParams, BuildRule)] = &[
    ("assign", &[], |_| Rule::Assign),
    ("sum", &[], |_| Rule::Sum),
    ("sgd", &[("lr", 0.01)], |v| Rule::Sgd { lr: v[0] }),
    ("momentum", &[("lr", 0.01), ("mu", 0.9)], |v| {
        Rule::Momentum { lr: v[0], mu: v[1] }
    }),
    ("adagrad", &[("lr", 0.01), ("eps", 1e-8)], |v| {
        Rule::AdaGrad {
            lr: v[0],
            eps: v[1],
        }
    }),
    (
        "adam",
        &[
            ("lr", 0.001),
            ("beta1", 0.9),
            ("beta2", 0.999),
            ("eps", 1e-8),
        ],
        |v| Rule::Adam {
            lr: v[0],
            beta1: v[1],
            beta2: v[2],
            eps: v[3],
            // The server counts the steps; 1 is where it starts.
            step: 1,
        },
    ),
    (
        "ftrl",
        &[("alpha", 0.1), ("beta", 1.0), ("l1", 0.0), ("l2", 0.0)],
        |v| Rule::Ftrl {
            alpha: v[0],
            beta: v[1],
            l1: v[2],
            l2: v[3],
        },
    ),
    ("prox_l1", &[("lr", 0.01), ("l1", 0.0)], |v| Rule::ProxL1 {
        lr: v[0],
        l1: v[1],
    }),
    (
        "elastic_net",
        &[("lr", 0.01), ("l1", 0.0), ("l2", 0.0)],
        |v| Rule::ElasticNet {
            lr: v[0],
            l1: v[1],
            l2: v[2],
        },
    ),
    ("scaled_prox_l1", &[("l1", 0.0), ("delta", 1.0)], |v| {
        Rule::ScaledProxL1 {
            l1: v[0],
            delta: v[1],
        }
    }),
];

/// Builds the rule `name` from `kwargs`, refusing unknown rules and hyper-parameters.
pub fn rule(name: &str, kwargs: &HashMap<String, f32>) -> PyResult<Rule> {
    let Some((_, params, build)) = RULES.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = RULES.iter().map(|(n, _, _)| *n).collect();
        return Err(argument(format!(
            "unknown rule `{name}` (rules: {})",
            names.join(", ")
        )));
    };
    if let Some(bad) = kwargs.keys().find(|k| !params.iter().any(|(p, _)| p == k)) {
        let accepted: Vec<&str> = params.iter().map(|(p, _)| *p).collect();
        return Err(argument(if accepted.is_empty() {
            format!("rule `{name}` takes no hyper-parameters, got `{bad}`")
        } else {
            format!(
                "rule `{name}` has no hyper-parameter `{bad}` (it takes {})",
                accepted.join(", ")
            )
        }));
    }
    let values: Vec<f32> = params
        .iter()
        .map(|(p, default)| kwargs.get(*p).copied().unwrap_or(*default))
        .collect();
    Ok(build(&values))
}

/// `"sequential"`, `"eventual"`, or a non-negative integer τ (bounded delay).
pub fn consistency(value: &Bound<'_, PyAny>) -> PyResult<Consistency> {
    const EXPECTED: &str = "consistency must be \"sequential\", \"eventual\" or an int τ >= 0 \
                            (bounded delay)";
    if let Ok(name) = value.extract::<String>() {
        return match name.as_str() {
            "sequential" | "bsp" => Ok(Consistency::Sequential),
            "eventual" | "async" => Ok(Consistency::Eventual),
            other => Err(argument(format!("{EXPECTED}, got \"{other}\""))),
        };
    }
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(argument(format!("{EXPECTED}, got a bool")));
    }
    match value.extract::<i64>() {
        Ok(tau) if (0..=i64::from(u32::MAX)).contains(&tau) => {
            Ok(Consistency::BoundedDelay(tau as u32))
        }
        Ok(tau) => Err(argument(format!("{EXPECTED}, got {tau}"))),
        Err(_) => Err(argument(format!("{EXPECTED}, got {value}"))),
    }
}

/// The value codec named `name`.
pub fn codec(name: &str) -> PyResult<ValueCodec> {
    match name {
        "raw" => Ok(ValueCodec::Raw),
        "fp16" => Ok(ValueCodec::Fp16),
        "bf16" => Ok(ValueCodec::Bf16),
        "lz4" => Ok(ValueCodec::Lz4),
        other => Err(argument(format!(
            "unknown value codec `{other}` (raw, fp16, bf16, lz4)"
        ))),
    }
}

/// Everything `declare_table` was given, turned into a spec.
pub struct Declaration<'a> {
    pub name: String,
    pub dim: i64,
    pub rule: &'a str,
    pub rule_kwargs: HashMap<String, f32>,
    pub consistency: &'a Bound<'a, PyAny>,
    pub dense_keys: Option<u64>,
    pub codec: &'a str,
    pub key_caching: bool,
}

impl Declaration<'_> {
    /// The engine's table spec.
    pub fn spec(&self) -> PyResult<TableSpec> {
        let dim = u32::try_from(self.dim)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| argument(format!("dim must be a positive int, got {}", self.dim)))?;
        let mut spec = match self.dense_keys {
            Some(keys) => TableSpec::dense(self.name.clone(), dim, keys),
            None => TableSpec::new(self.name.clone(), dim),
        };
        spec = spec
            .rule(rule(self.rule, &self.rule_kwargs)?)
            .consistency(consistency(self.consistency)?)
            .value_codec(codec(self.codec)?)
            .key_caching(self.key_caching);
        debug_assert!(self.dense_keys.is_some() == matches!(spec.layout, KeyLayout::Dense { .. }));
        Ok(spec)
    }
}
