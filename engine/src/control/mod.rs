//! Control messages between nodes and the scheduler, carried in the extra section of
//! `Opcode::Control` frames and encoded with postcard; `send_control` and `reply_control`
//! put them on an event loop's connections.

mod send;
pub mod status;

pub(crate) use send::{reply_control, send_control};
pub use status::{JobStatus, ServerSummary};

use ferrops_net::{Header, Opcode};
use serde::{Deserialize, Serialize};

use crate::checkpoint::SavedFile;
pub use crate::role::Role;
use crate::routing::RoutingTable;
use crate::table::{TableId, TableSpec};

/// Every control message of the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Node → scheduler: join the job. Servers give the address workers should use, and the
    /// address of their RDMA listener when they have one. `rank` is the rank the node asks
    /// for (a launcher that numbers its processes, so that both use the same names); `None`
    /// takes the lowest free one.
    Register {
        role: Role,
        addr: Option<String>,
        rdma_addr: Option<String>,
        rank: Option<u32>,
    },
    /// Worker → server, first on each connection: who is calling, how many keys of key lists
    /// this connection caches (both ends keep the same cache, see `key_list_cache`), and how
    /// many clocks it has completed (a server that joined the job counts them from there).
    Hello {
        node_id: u32,
        key_cache_keys: u64,
        clock: u32,
    },
    /// Server → scheduler: welcomed and serving.
    Ready,
    /// Scheduler → node: your identity, sent once the whole job has registered.
    Welcome {
        node_id: u32,
        rank: u32,
        num_servers: u32,
        num_workers: u32,
        routing: RoutingTable,
        /// Node ids of the workers (for servers: whose clocks count).
        workers: Vec<u32>,
        /// The clocks the receiver starts with completed: 0, or the clock of the checkpoint a
        /// restored job starts from; for a worker that joins a running job, where the servers
        /// count its clocks from.
        start_clock: u32,
    },
    /// Worker → scheduler: declare (or look up) a table.
    DeclareTable { spec: TableSpec },
    /// Scheduler → servers: create this table. Scheduler → worker: the table is ready.
    TableReady { id: TableId, spec: TableSpec },
    /// Server → scheduler: the table exists here.
    TableCreated { id: TableId },
    /// Worker → scheduler: wait for every live worker.
    Barrier { epoch: u64 },
    /// Scheduler → workers: every live worker reached the barrier.
    BarrierReleased { epoch: u64 },
    /// Scheduler → servers: the workers that count for consistency (dead ones removed), and
    /// the workers lost so far (kept by the servers for a recovering scheduler, which cannot
    /// tell a lost worker from a finished one otherwise).
    LiveWorkers { workers: Vec<u32>, lost: Vec<u32> },
    /// Worker → scheduler: this worker is done.
    Done,
    /// Scheduler → all: the job is over; exit.
    Shutdown { ok: bool, reason: String },
    /// Reply to a request that failed.
    Refused { reason: String },
    /// Server → scheduler: this server cannot hold the table (the reason says why); the
    /// server goes on serving.
    TableRefused { id: TableId, reason: String },
    /// Scheduler → servers: forget a table some server refused.
    DropTable { id: TableId },
    /// Node → scheduler, every heartbeat interval, from the node's heartbeat thread.
    Heartbeat,
    /// Scheduler → node: the answer to each `Heartbeat`.
    HeartbeatAck,
    /// Worker → scheduler: every live worker asks (collectively, after its pushes were
    /// acknowledged) for a checkpoint of every table into `dir`; `clock` is the worker's.
    Checkpoint { dir: String, clock: u32 },
    /// Scheduler → servers: write every table's range into `dir` (checkpoint files), as
    /// attempt `attempt` (a server lost while writing makes the scheduler ask again, under
    /// the routing without it, with a new attempt; the files' names carry it).
    WriteCheckpoint {
        dir: String,
        clock: u32,
        attempt: u32,
    },
    /// Server → scheduler: the files written for `attempt` (table id and manifest entry), or
    /// why not.
    CheckpointWritten {
        attempt: u32,
        result: Result<Vec<(u32, SavedFile)>, String>,
    },
    /// Scheduler → workers: the checkpoint is complete (its manifest written), or why not.
    CheckpointDone { result: Result<(), String> },
    /// Scheduler → servers: create this table from a checkpoint in `dir`, loading the keys of
    /// this server's range from whichever of `files` overlap it. Answered like `TableReady`.
    LoadTable {
        id: TableId,
        spec: TableSpec,
        dir: String,
        files: Vec<SavedFile>,
    },
    /// Scheduler → servers and workers: a newer routing table (a server died and its ranges'
    /// chains were shortened, their next servers promoted). Requests stamped with an older
    /// version are refused (`NotOwner`); workers resend them under this one.
    Routing { routing: RoutingTable },
    /// Server → scheduler: this server now routes by `version` (the scheduler publishes a
    /// routing that names a new learner to the learner first, and to everyone else once it
    /// has it, so that nobody forwards to a server that would not yet take it).
    RoutingAdopted { version: u32 },
    /// Learner → scheduler: it holds its whole copy of range `range` (taken under routing
    /// `version`), so it may count as one of the range's copies.
    RangeCopied { range: u32, version: u32 },
    /// Ctl → scheduler: move every range off server `server` (by rank), then stop it;
    /// answered with `Drained` once it holds nothing, or at once if it cannot be drained.
    CtlDrain { server: u32 },
    /// Scheduler → ctl: the drain asked for is done, or why it cannot be.
    Drained { result: Result<(), String> },
    /// Server → scheduler: it was asked to stop (SIGTERM): drain it first.
    DrainMe,
    /// Scheduler → servers: say what you hold and which clocks you counted (for a worker's
    /// admission and `ferrops ctl status`); answered with `Summary` and the same `id`.
    Summarize { id: u64 },
    /// Server → scheduler: the answer to `Summarize { id }`.
    Summary { id: u64, summary: ServerSummary },
    /// Scheduler → servers: worker `node_id` joins the running job; count its clocks from
    /// `start_clock` completed on.
    WorkerJoined { node_id: u32, start_clock: u32 },
    /// Ctl → scheduler: the job's status, answered with `Status`.
    StatusRequest,
    /// Scheduler → ctl: the answer to `StatusRequest`, a `JobStatus` as JSON text.
    Status { json: String },
    /// Ctl → scheduler: checkpoint every table into `dir` while every live worker waits at
    /// the job's next barrier; answered with `CheckpointDone`.
    CtlCheckpoint { dir: String },
    /// Node → scheduler, first on a connection dialed again after the scheduler was lost: who
    /// the node is and what it holds, so that a scheduler started with `--recover` rebuilds
    /// the job from its nodes (`scheduler/recover.rs`). Answered with a `Routing` once the
    /// scheduler runs again (a scheduler that does not recover refuses it).
    Rejoin(Box<Rejoin>),
}

/// What a node tells a recovering scheduler about itself (`Control::Rejoin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejoin {
    pub role: Role,
    pub node_id: u32,
    pub rank: u32,
    /// The job's size as the node was welcomed to it (servers counted in shards).
    pub num_servers: u32,
    pub num_workers: u32,
    /// A server's address for workers, and its RDMA listener's; `None` for a worker.
    pub addr: Option<String>,
    pub rdma_addr: Option<String>,
    /// The routing the node routes by (its version fences older ones).
    pub routing: RoutingTable,
    /// The tables it knows, by id.
    pub tables: Vec<(u32, TableSpec)>,
    /// A server: the ranges it holds a whole copy of (its learner copies included once whole).
    pub ranges: Vec<u32>,
    /// A server: the worker nodes that count for its clocks (those not done or lost), and
    /// those it was told were lost.
    pub live_workers: Vec<u32>,
    pub lost_workers: Vec<u32>,
    /// A worker: the clocks it has completed.
    pub clock: u32,
}

impl Rejoin {
    /// Most tables, ranges or workers one node may report: more is a malformed message.
    pub const MAX_ITEMS: usize = 1 << 16;

    /// Whether every list is within bounds (decoding bounds nothing by itself).
    pub fn validate(&self) -> Result<(), String> {
        let lists = [
            ("tables", self.tables.len()),
            ("ranges", self.ranges.len()),
            ("live workers", self.live_workers.len()),
            ("lost workers", self.lost_workers.len()),
            ("routing ranges", self.routing.ranges.len()),
            ("routing servers", self.routing.server_addrs.len()),
        ];
        for (what, n) in lists {
            if n > Self::MAX_ITEMS {
                return Err(format!(
                    "a rejoin with {n} {what} (at most {})",
                    Self::MAX_ITEMS
                ));
            }
        }
        Ok(())
    }
}

/// One step of a range copy, in the extra section of an `Opcode::Copy` frame from the server
/// that holds the range to the learner taking a copy of it (`server/range_copy.rs`). The steps
/// travel on the connection that carries the range's forwarded pushes, in the order the
/// source applied them, so the learner sees each row after every push it reflects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CopyStep {
    /// First: what the copy starts from, taken when the source adopted routing `version`:
    /// each table (id, spec, Adam's step count), the pushes applied per worker node (worker,
    /// floor, highest, the numbers applied at or above the floor), and the clocks each worker
    /// has completed.
    Begin {
        range: u32,
        version: u32,
        tables: Vec<(u32, TableSpec, u32)>,
        applied: Vec<(u32, u64, u64, Vec<u64>)>,
        clocks: Vec<(u32, u32)>,
    },
    /// The rows of table `table` for the frame's keys (values section: the rows as
    /// `TableStore::export_rows` lays them out).
    Rows { range: u32, table: u32 },
    /// Last: every row of the range has been sent.
    End { range: u32 },
}

impl CopyStep {
    /// Encodes for the extra section.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes an extra section; a malformed step is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<CopyStep, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl Control {
    /// The header and extra section of a control frame carrying this message (send them with
    /// `FrameParts::with_extra`).
    pub fn frame(&self) -> (Header, Vec<u8>) {
        (Header::new(Opcode::Control), self.encode())
    }

    /// Encodes for the extra section.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes an extra section; a malformed message is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Control, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let msg = Control::Register {
            role: Role::Server,
            addr: Some("127.0.0.1:1".into()),
            rdma_addr: Some("10.0.2.15:1".into()),
            rank: Some(3),
        };
        assert_eq!(Control::decode(&msg.encode()).unwrap(), msg);
        assert!(Control::decode(&[0xff, 0xff, 0xff]).is_err());
        let rejoin = Control::Rejoin(Box::new(Rejoin {
            role: Role::Server,
            node_id: 2,
            rank: 1,
            num_servers: 2,
            num_workers: 2,
            addr: Some("127.0.0.1:2".into()),
            rdma_addr: None,
            routing: RoutingTable::default(),
            tables: Vec::new(),
            ranges: vec![0, 1],
            live_workers: vec![1000],
            lost_workers: Vec::new(),
            clock: 0,
        }));
        assert_eq!(Control::decode(&rejoin.encode()).unwrap(), rejoin);
        let encoded = rejoin.encode();
        for cut in 0..encoded.len() {
            assert!(Control::decode(&encoded[..cut]).is_err());
        }
        assert!(Control::decode(&[]).is_err());
    }
}
