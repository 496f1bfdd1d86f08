//! What `ferrops ctl status` reports, and what each server tells the scheduler for it (and for
//! a worker's admission). A server's summary travels like every control message; the job's
//! status travels as the JSON text the tool prints (`JobStatus::to_json`), whose members'
//! common fields are flattened into each.

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
    /// Grows with every failover.
    pub routing_version: u32,
    pub servers: Vec<ServerStatus>,
    /// Every worker that registered and is still connected, live or done.
    pub workers: Vec<WorkerStatus>,
    /// Every key range, with its replication chain (server ranks, head first).
    pub ranges: Vec<RangeStatus>,
    pub tables: Vec<TableStatus>,
}

/// What every member of a job has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: u32,
    pub rank: u32,
    /// A server: welcomed and serving (a dead one is out of the job and not listed). A
    /// worker: counted for barriers and consistency (false once done).
    pub live: bool,
    /// Milliseconds since the scheduler last heard from it.
    pub last_heard_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    #[serde(flatten)]
    pub member: Member,
    pub addr: String,
    /// The key ranges it heads, as [first key, last key].
    pub ranges: Vec<[u64; 2]>,
    /// The key ranges it holds a whole copy of (as head or replica; a copy still being taken
    /// is not counted).
    pub holds: Vec<[u64; 2]>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    #[serde(flatten)]
    pub member: Member,
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

impl JobStatus {
    /// The status as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A status from its JSON text.
    pub fn from_json(text: &str) -> Result<JobStatus, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_round_trips_through_its_json_with_flat_members() {
        let member = Member {
            id: 3,
            rank: 0,
            live: true,
            last_heard_ms: Some(12),
        };
        let status = JobStatus {
            routing_version: 2,
            workers: vec![WorkerStatus {
                member,
                clock: Some(7),
            }],
            ..JobStatus::default()
        };
        let json = status.to_json();
        assert!(
            json.contains(r#""workers":[{"id":3,"rank":0,"live":true"#),
            "{json}"
        );
        assert_eq!(JobStatus::from_json(&json).unwrap(), status);
    }
}
