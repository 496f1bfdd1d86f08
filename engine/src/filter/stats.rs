//! Counters of the bandwidth reducers: coordinates per filter and bytes per codec, serializable
//! (for reports and metrics) and mergeable across workers, servers or time windows.

use ferrops_net::codec::{KeyCodec, ValueCodec};
use serde::{Deserialize, Serialize};

/// Coordinates seen by one filter. What "delayed" and "dropped" mean depends on the filter:
/// the significantly-modified filter delays (sends later) and never drops; the KKT filter
/// drops (never sends that round); `ChangedSince` drops unchanged values from a pull reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCounts {
    pub offered: u64,
    pub sent: u64,
    pub delayed: u64,
    pub dropped: u64,
}

impl FilterCounts {
    /// Adds `other` field by field (saturating).
    pub fn merge(&mut self, other: &FilterCounts) {
        self.offered = self.offered.saturating_add(other.offered);
        self.sent = self.sent.saturating_add(other.sent);
        self.delayed = self.delayed.saturating_add(other.delayed);
        self.dropped = self.dropped.saturating_add(other.dropped);
    }
}

/// Bytes through one codec: sections encoded, their raw size and their encoded size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecBytes {
    pub sections: u64,
    pub before: u64,
    pub after: u64,
}

impl CodecBytes {
    /// Records one section.
    pub fn record(&mut self, before: usize, after: usize) {
        self.sections = self.sections.saturating_add(1);
        self.before = self.before.saturating_add(before as u64);
        self.after = self.after.saturating_add(after as u64);
    }

    /// Adds `other` field by field (saturating).
    pub fn merge(&mut self, other: &CodecBytes) {
        self.sections = self.sections.saturating_add(other.sections);
        self.before = self.before.saturating_add(other.before);
        self.after = self.after.saturating_add(other.after);
    }

    /// `before / after` (1 when nothing was recorded).
    pub fn ratio(&self) -> f64 {
        if self.after == 0 {
            1.0
        } else {
            self.before as f64 / self.after as f64
        }
    }
}

/// Everything the bandwidth reducers saved, per filter and per codec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducerStats {
    pub significant: FilterCounts,
    pub kkt: FilterCounts,
    pub changed_since: FilterCounts,
    /// Key lists sent as their signature alone (key caching): `after` is 0.
    pub key_cached: CodecBytes,
    pub key_raw: CodecBytes,
    pub key_delta_bitpack: CodecBytes,
    pub value_raw: CodecBytes,
    pub value_fp16: CodecBytes,
    pub value_bf16: CodecBytes,
    pub value_lz4: CodecBytes,
}

impl ReducerStats {
    /// Records a keys section of `before` raw bytes encoded to `after` bytes.
    pub fn record_keys(&mut self, codec: KeyCodec, before: usize, after: usize) {
        match codec {
            KeyCodec::Raw => &mut self.key_raw,
            KeyCodec::DeltaBitpack => &mut self.key_delta_bitpack,
        }
        .record(before, after);
    }

    /// Records a values section of `before` raw bytes encoded to `after` bytes.
    pub fn record_values(&mut self, codec: ValueCodec, before: usize, after: usize) {
        match codec {
            ValueCodec::Raw => &mut self.value_raw,
            ValueCodec::Fp16 => &mut self.value_fp16,
            ValueCodec::Bf16 => &mut self.value_bf16,
            ValueCodec::Lz4 => &mut self.value_lz4,
        }
        .record(before, after);
    }

    /// Adds every counter of `other` to this one.
    pub fn merge(&mut self, other: &ReducerStats) {
        self.key_cached.merge(&other.key_cached);
        self.significant.merge(&other.significant);
        self.kkt.merge(&other.kkt);
        self.changed_since.merge(&other.changed_since);
        self.key_raw.merge(&other.key_raw);
        self.key_delta_bitpack.merge(&other.key_delta_bitpack);
        self.value_raw.merge(&other.value_raw);
        self.value_fp16.merge(&other.value_fp16);
        self.value_bf16.merge(&other.value_bf16);
        self.value_lz4.merge(&other.value_lz4);
    }

    /// Total bytes before and after all codecs.
    pub fn bytes(&self) -> CodecBytes {
        let mut total = CodecBytes::default();
        for c in [
            &self.key_raw,
            &self.key_delta_bitpack,
            &self.value_raw,
            &self.value_fp16,
            &self.value_bf16,
            &self.value_lz4,
        ] {
            total.merge(c);
        }
        total
    }
}
