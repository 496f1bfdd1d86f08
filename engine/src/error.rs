//! Errors of the engine's roles and of the worker API.

use ferrops_net::{NetError, Status};

use crate::key_list::KeyListError;

/// Why a role stopped or a worker call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Keys(#[from] KeyListError),
    #[error("cannot reach the scheduler at {addr} within {secs} s: {reason}")]
    SchedulerUnreachable {
        addr: String,
        secs: u64,
        reason: String,
    },
    #[error("lost the connection to the scheduler")]
    SchedulerLost,
    #[error(
        "the scheduler has not answered heartbeats for {} (timeout {}): it is stopped, hung or \
         cut off; giving up",
        crate::liveness::secs(*silent_for),
        crate::liveness::secs(*timeout)
    )]
    SchedulerSilent {
        silent_for: std::time::Duration,
        timeout: std::time::Duration,
    },
    #[error(
        "the scheduler has been unreachable for {} (scheduler_outage_ms, \
         FERROPS_SCHEDULER_OUTAGE_MS, allows {}): no scheduler came back; giving up",
        crate::liveness::secs(*down_for),
        crate::liveness::secs(*allowed)
    )]
    SchedulerOutage {
        down_for: std::time::Duration,
        allowed: std::time::Duration,
    },
    #[error("lost the connection to server {0}")]
    ServerLost(u32),
    #[error("the scheduler refused: {0}")]
    Refused(String),
    #[error("server {server} answered {status:?}: {message}")]
    Remote {
        server: u32,
        status: Status,
        message: String,
    },
    #[error(
        "servers {servers:?} no longer held the request's key list (their key cache differs \
         from this worker's); the worker forgot it, so sending the request again sends the keys"
    )]
    KeyListMissed { servers: Vec<u32> },
    #[error("the job was shut down: {0}")]
    Shutdown(String),
    #[error("protocol violation by {peer}: {detail}")]
    Protocol { peer: String, detail: String },
    #[error("unknown ticket {0}")]
    UnknownTicket(u64),
    #[error("table {0} was not declared by this worker")]
    UnknownTable(u32),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}
