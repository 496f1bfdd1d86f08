//! What a server did and holds, reported when it stops: request counts, network metrics,
//! each table's memory and the process's resident set, merged over shards and logged.

use ferrops_net::MetricsSnapshot;

use crate::memory::accounting::format_bytes;
use crate::store::TableMemory;

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct ServerReport {
    pub pushes: u64,
    pub duplicate_pushes: u64,
    pub pulls: u64,
    pub parked_pulls: u64,
    pub rejected_requests: u64,
    /// Updates sent down chains as a head replicating after aggregation (one per batch).
    pub replicated_batches: u64,
    pub net: MetricsSnapshot,
    /// Memory held by each table, by name.
    pub tables: Vec<(String, TableMemory)>,
    /// The process's resident set when the server stopped (0 if unknown).
    pub resident_bytes: u64,
    /// What each store holds (one per table and range this server held, as head or replica):
    /// replicas of a range that applied the same pushes have the same digest. Empty unless
    /// `ServerConfig::digest_on_exit`.
    pub contents: Vec<RangeContents>,
}

/// One store's contents in short: the table, the range, its keys and their digest
/// (`TableStore::digest`: keys, values and rule state, whatever their slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeContents {
    pub table: String,
    pub range: u32,
    pub keys: u64,
    pub digest: u64,
}

impl ServerReport {
    /// Adds another shard's report to this one.
    pub fn merge(&mut self, other: ServerReport) {
        self.pushes += other.pushes;
        self.duplicate_pushes += other.duplicate_pushes;
        self.pulls += other.pulls;
        self.parked_pulls += other.parked_pulls;
        self.rejected_requests += other.rejected_requests;
        self.replicated_batches += other.replicated_batches;
        let (a, b) = (&mut self.net, other.net);
        a.frames_sent += b.frames_sent;
        a.frames_received += b.frames_received;
        a.header_bytes_sent += b.header_bytes_sent;
        a.key_bytes_sent += b.key_bytes_sent;
        a.value_bytes_sent += b.value_bytes_sent;
        a.extra_bytes_sent += b.extra_bytes_sent;
        a.header_bytes_received += b.header_bytes_received;
        a.key_bytes_received += b.key_bytes_received;
        a.value_bytes_received += b.value_bytes_received;
        a.extra_bytes_received += b.extra_bytes_received;
        a.value_bytes_copied += b.value_bytes_copied;
        a.rejected_frames += b.rejected_frames;
        self.tables.extend(other.tables);
        self.contents.extend(other.contents);
        self.resident_bytes = self.resident_bytes.max(other.resident_bytes);
    }
}

/// Logs a shard's report: each table's memory, the resident set and the request counts.
pub(super) fn log_report(report: &ServerReport, rank: Option<u32>) {
    for (name, m) in &report.tables {
        tracing::info!(
            "table `{name}`: {} keys; values {}, state {}, key map {}, resolution cache {}{}",
            m.keys,
            format_bytes(m.values_bytes),
            format_bytes(m.state_bytes),
            format_bytes(m.key_map_bytes),
            format_bytes(m.resolution_cache_bytes),
            if m.locked { ", locked" } else { "" }
        );
    }
    tracing::info!("resident set {}", format_bytes(report.resident_bytes));
    tracing::info!(
        "server {} done: {} pushes, {} pulls ({} parked), {} rejected",
        rank.map_or("?".into(), |r| r.to_string()),
        report.pushes,
        report.pulls,
        report.parked_pulls,
        report.rejected_requests
    );
}
