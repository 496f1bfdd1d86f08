//! Tables: named parameter groups with a value length, an update rule and a consistency model.

use ferrops_kernels::Rule;
use ferrops_net::codec::ValueCodec;
use serde::{Deserialize, Serialize};

/// Identifies a declared table cluster-wide (assigned by the scheduler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId(pub u32);

/// How far a worker may run ahead of the slowest live worker on a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Bulk-synchronous: a pull at clock t sees every worker's pushes of clocks < t (τ = 0).
    Sequential,
    /// Bounded delay τ: a pull at clock t waits until every live worker has completed clock
    /// t − τ − 1.
    BoundedDelay(u32),
    /// Fully asynchronous (τ = ∞): pulls never wait.
    Eventual,
}

impl Consistency {
    /// The staleness bound τ, or `None` for eventual.
    pub fn staleness(&self) -> Option<u32> {
        match self {
            Consistency::Sequential => Some(0),
            Consistency::BoundedDelay(tau) => Some(*tau),
            Consistency::Eventual => None,
        }
    }

    /// How many clocks every live worker must have completed before a pull issued at `clock`
    /// may be answered (0 when it never waits).
    pub fn required_completed(&self, clock: u32) -> u32 {
        match self.staleness() {
            Some(tau) => clock.saturating_sub(tau),
            None => 0,
        }
    }
}

/// How a table's keys are spread over the servers and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyLayout {
    /// Any u64 keys (hashed features, ids): split by the routing table's u64 ranges, stored
    /// through a key → slot map.
    Sparse,
    /// Keys `0..keys` (a dense weight vector or matrix): range i of N gets
    /// `[i·keys/N, (i+1)·keys/N)`, and a key indexes its server's segment directly, with no
    /// key map at all.
    Dense { keys: u64 },
}

/// Everything a server needs to know to store a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Unique name; workers declaring the same name must give the same spec.
    pub name: String,
    /// Number of f32 values per key.
    pub dim: u32,
    /// How a push changes the stored values.
    pub rule: Rule,
    /// When pulls are answered.
    pub consistency: Consistency,
    /// Sparse (any u64 keys) or dense (keys `0..n`).
    pub layout: KeyLayout,
    /// How values travel: the id of a `ferrops_net::codec::ValueCodec` (0 = raw f32; fp16 and
    /// bf16 halve the bytes at their stated rounding; lz4 is lossless).
    pub value_codec: u8,
    /// Whether key lists this table's requests repeat travel as their signature once the
    /// server holds them (key caching; on by default: it cannot change results).
    pub key_caching: bool,
    /// Whether key lists may travel delta + bit packed when that makes them smaller (on by
    /// default: lossless, chosen per message by size).
    pub key_packing: bool,
}

/// `name(value)` builder methods of [`TableSpec`] that set the field of the same name.
macro_rules! builder_setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, $field: $ty) -> TableSpec {
                self.$field = $field;
                self
            }
        )*
    };
}

impl TableSpec {
    /// A table of `dim` values per key, summing pushes, eventually consistent.
    pub fn new(name: impl Into<String>, dim: u32) -> TableSpec {
        TableSpec {
            name: name.into(),
            dim,
            rule: Rule::Sum,
            consistency: Consistency::Eventual,
            layout: KeyLayout::Sparse,
            value_codec: ValueCodec::Raw.id(),
            key_caching: true,
            key_packing: true,
        }
    }

    /// Sets how values travel on the wire.
    pub fn value_codec(mut self, codec: ValueCodec) -> TableSpec {
        self.value_codec = codec.id();
        self
    }

    /// The value codec (validated when the table is declared).
    pub fn codec(&self) -> ValueCodec {
        ValueCodec::from_id(self.value_codec).unwrap_or(ValueCodec::Raw)
    }

    /// A dense table of keys `0..keys`, `dim` values each, summing pushes, eventually
    /// consistent.
    pub fn dense(name: impl Into<String>, dim: u32, keys: u64) -> TableSpec {
        TableSpec {
            layout: KeyLayout::Dense { keys },
            ..TableSpec::new(name, dim)
        }
    }

    builder_setters! {
        /// Sets the update rule.
        rule: Rule,
        /// Sets the consistency model.
        consistency: Consistency,
        /// Turns key caching for this table on or off.
        key_caching: bool,
        /// Turns key packing (delta + bit packing) for this table on or off.
        key_packing: bool,
    }

    /// Floats a push carries per key (dim × the rule's input arrays).
    pub fn push_floats_per_key(&self) -> usize {
        self.dim as usize * self.rule.inputs()
    }

    /// Checks the spec is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("table name is empty".into());
        }
        if self.dim == 0 {
            return Err(format!("table `{}` has dim 0", self.name));
        }
        if let Err(e) = ValueCodec::from_id(self.value_codec) {
            return Err(format!("table `{}`: {e}", self.name));
        }
        if self.layout == (KeyLayout::Dense { keys: 0 }) {
            return Err(format!("dense table `{}` has no keys", self.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_completed_follows_the_staleness_bound() {
        assert_eq!(Consistency::Sequential.required_completed(5), 5);
        assert_eq!(Consistency::BoundedDelay(2).required_completed(5), 3);
        assert_eq!(Consistency::BoundedDelay(2).required_completed(1), 0);
        assert_eq!(Consistency::Eventual.required_completed(1000), 0);
    }
}
