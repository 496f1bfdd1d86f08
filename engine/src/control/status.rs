//! What `ferrops ctl status` reports, and what each server tells the scheduler for it (and for
//! a worker's admission): plain data, encoded with postcard on the wire and printed as JSON by
//! the tool.

use serde::{Deserialize, Serialize};

/// One server's answer to `Control::Summarize`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    /// (worker node id, clocks completed) of every worker this server counts as live.
    pub clocks: Vec<(u32, u32)>,
    /// What this server holds of each table in the ranges it heads (so that the servers'
    /// answers add up to each table once, whatever the replication).
    pub tables: Vec<TableHeld>,
}

/// Keys and bytes of one table on one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableHeld {
    pub table: u32,
    pub keys: u64,
    /// Committed bytes of values and rule state.
    pub bytes: u64,
}

/// The job as the scheduler sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub routing_version: u32,
    pub servers: Vec<ServerStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Every key range, with its replication chain (server ranks, head first).
    pub ranges: Vec<RangeStatus>,
    pub tables: Vec<TableStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Node id.
    pub id: u32,
    pub rank: u32,
    pub addr: String,
    /// Welcomed and serving (a dead server is out of the job and not listed).
    pub live: bool,
    /// Milliseconds since the scheduler last heard from it.
    pub last_heard_ms: Option<u64>,
    /// The key ranges it heads, as [first key, last key].
    pub ranges: Vec<[u64; 2]>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Node id.
    pub id: u32,
    pub rank: u32,
    /// Counted for barriers and consistency (false once done).
    pub live: bool,
    pub last_heard_ms: Option<u64>,
    /// Clocks completed, as the servers count them (the most any server heard; absent for a
    /// worker no server counts).
    pub clock: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeStatus {
    pub first: u64,
    pub last: u64,
    pub chain: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStatus {
    pub id: u32,
    pub name: String,
    pub keys: u64,
    pub bytes: u64,
}
