//! The server role: holds its key ranges of every table, applies pushes, answers pulls when the
//! table's consistency model allows, and parks the pulls that must wait.
//!
//! Everything runs on the event loop's thread (run-to-completion): a push is applied by the
//! kernels straight from the receive buffer, and a pull is answered with slices of storage
//! written by `writev`. Message handling (this module's [`Handler`], which routes each frame)
//! is kept apart from what a request does to the tables:
//!
//! - `shard`: the threads, one event loop (shard) each, from start to report;
//! - `admission`: registering with the scheduler, its messages, worker connections;
//! - `request`: a push's or pull's keys, their owner and their slots;
//! - `push` and `pull`: applying a push; answering (or parking) a pull;
//! - `chain`: replication — the connections to the other servers of this server's chains,
//!   forwarding an applied push down its range's chain and its acknowledgement back up;
//! - `aggregate`: replication after aggregation — a head's batches of pushes, sent down the
//!   chain as the rows they touched with their sequence numbers;
//! - `dedupe`: which pushes of each worker each range has applied (exactly once);
//! - `range_copy` and `range_intake`: bringing a new server of a chain (a learner) a copy of
//!   the range while pushes continue — the sending and the taking side;
//! - `rejoin`: serving on without the scheduler, redialing it and reporting what it holds;
//! - `report`: what the server did and holds, when it stops;
//! - `summary`: what it tells the scheduler when asked (clocks counted, tables held).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ferrops_net::{CloseReason, Frame, Handler, Header, Io, Opcode, PeerId, Status};

use crate::clock::{ClockTracker, Parked};
use crate::config::ServerConfig;
use crate::control::Control;
use crate::filter::ChangedSince;
use crate::key_list_cache::KeyListCache;
use crate::liveness::{Silence, StallGuard};
use crate::routing::RoutingTable;
use crate::store::{SharedKeys, StoreError, StoreOptions, TableStore};
use crate::EngineError;

mod admission;
mod aggregate;
mod chain;
mod checkpoint;
mod dedupe;
mod meter;
#[allow(unsafe_code)] // RDMA-writes pull values from the table's segment
mod pull;
mod push;
mod range_copy;
mod range_intake;
mod rejoin;
mod report;
mod request;
mod shard;
mod summary;

pub use aggregate::AGGREGATION_WINDOW;
pub use report::{RangeContents, ServerReport};
pub use shard::run_server;

use meter::{Admitted, Measured, ServerMeters};
use request::Request;

/// Bytes of resolved key lists each table may cache at most: an eighth of the machine's
/// memory, 1 GiB at least (within it, a table caches no more than its own size, see
/// `StoreOptions::cache_bytes`).
fn resolution_cache_bytes() -> usize {
    let physical = crate::memory::accounting::physical_memory_bytes().unwrap_or(0);
    usize::try_from(physical / 8)
        .unwrap_or(usize::MAX)
        .max(1 << 30)
}

/// A running server's state; driven by [`run_server`].
pub struct Server {
    scheduler: PeerId,
    key_cache_cap_keys: Option<u64>,
    node_id: Option<u32>,
    rank: Option<u32>,
    routing: RoutingTable,
    /// The tables' stores, by (table id, range index): one per range this server holds, as
    /// its chain's head or as a replica.
    tables: BTreeMap<(u32, u32), TableStore>,
    clocks: ClockTracker,
    parked: Parked<Request>,
    /// The worker node each admitted connection authenticated as, with its metric handles.
    workers: HashMap<PeerId, Admitted>,
    meters: ServerMeters,
    /// The job's size as configured here, (server shards, workers); 0 where unset (then the
    /// scheduler's is taken; when set, it must match the job's).
    configured_size: (usize, usize),
    /// Each worker connection's key-list cache (the lists it may name by signature).
    key_caches: HashMap<PeerId, KeyListCache<SharedKeys>>,
    /// What each worker holds of each table, for changed-only pulls.
    changed: HashMap<(PeerId, u32), ChangedSince>,
    store_options: StoreOptions,
    /// The pushes applied, by (range index, worker node): a resend is dropped, on the head and
    /// on every replica alike.
    applied: dedupe::AppliedPushes,
    /// Connections to the other servers of this server's chains, by rank, and back.
    server_peers: HashMap<u32, PeerId>,
    server_ranks: HashMap<PeerId, u32>,
    /// Per server connection, the key lists the peer holds of those this server forwarded
    /// (the peer's end is its `key_caches` entry for this connection; both hold
    /// `chain_cache_keys` keys and see the same signed lists in the same order).
    out_caches: HashMap<u32, KeyListCache<()>>,
    chain_cache_keys: u64,
    /// Pushes forwarded down a chain and not yet acknowledged, by the id they were sent with.
    forwards: HashMap<u64, chain::Upstream>,
    next_forward: u64,
    /// Copies of ranges this server is sending to their learners, and those it sent whole to
    /// learners the routing does not count yet.
    copies_out: Vec<range_copy::Outgoing>,
    copies_sent: std::collections::BTreeSet<(u32, u32)>,
    /// Frames of other servers sent under a routing this one has not adopted yet.
    held_frames: Vec<(PeerId, u32, Frame)>,
    /// Ranges this server is taking a copy of, with the routing version the copy began under.
    copies_in: BTreeMap<u32, range_intake::Intake>,
    /// How long dialing another server of a chain may take.
    dial_timeout: Duration,
    /// When a chain neighbour whose connection closed may be dialed again.
    next_redial: Instant,
    /// Replication after aggregation (`ReplicationMode::Aggregated`): the batches of pushes
    /// not yet sent down their chains, by (table, range), and those sent, by request id.
    aggregated: bool,
    batches: BTreeMap<(u32, u32), aggregate::Batch>,
    batches_out: HashMap<u64, aggregate::BatchInFlight>,
    gather: Vec<f32>,
    /// Reused buffers for decoding pushed values and encoding pulled ones.
    decoded: Vec<f32>,
    encoded: Vec<u8>,
    stop: Option<Result<(), EngineError>>,
    report: ServerReport,
    /// How long the scheduler has said nothing (its heartbeat answers included).
    scheduler_silence: Silence,
    /// Whether the loop has been reading lately enough to judge that silence.
    stall: StallGuard,
    /// Set when this server is asked to leave (`ServerConfig::leave`), and whether it has
    /// asked the scheduler to drain it.
    leave: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    leaving: bool,
    /// Ranges this server took a whole copy of as a learner (reported again on a rejoin).
    copies_done: std::collections::BTreeSet<u32>,
    /// How to find the scheduler again when it is lost, and the outage in progress.
    rejoin: rejoin::Rejoining,
}

impl Server {
    /// A shard's server before the scheduler has welcomed it.
    fn new(
        cfg: &ServerConfig,
        scheduler: PeerId,
        meters: ServerMeters,
        rejoin: rejoin::Rejoining,
    ) -> Server {
        let liveness = &cfg.cluster.liveness;
        let now = Instant::now();
        Server {
            meters,
            configured_size: (cfg.cluster.total_shards(), cfg.cluster.num_workers),
            key_cache_cap_keys: cfg.key_cache_cap_keys,
            scheduler,
            node_id: None,
            rank: None,
            routing: RoutingTable::default(),
            tables: BTreeMap::new(),
            clocks: ClockTracker::default(),
            parked: Parked::default(),
            workers: HashMap::new(),
            key_caches: HashMap::new(),
            changed: HashMap::new(),
            store_options: StoreOptions {
                segment: cfg.memory,
                capacity_bytes: cfg.table_capacity_bytes,
                cache_bytes: resolution_cache_bytes(),
            },
            applied: dedupe::AppliedPushes::default(),
            server_peers: HashMap::new(),
            server_ranks: HashMap::new(),
            out_caches: HashMap::new(),
            chain_cache_keys: cfg.cluster.key_cache_keys,
            forwards: HashMap::new(),
            next_forward: 1,
            copies_out: Vec::new(),
            copies_sent: std::collections::BTreeSet::new(),
            held_frames: Vec::new(),
            copies_in: BTreeMap::new(),
            dial_timeout: cfg.cluster.connect_timeout,
            next_redial: now,
            aggregated: cfg.cluster.replication_mode == crate::config::ReplicationMode::Aggregated,
            batches: BTreeMap::new(),
            batches_out: HashMap::new(),
            gather: Vec::new(),
            decoded: Vec::new(),
            encoded: Vec::new(),
            stop: None,
            report: ServerReport::default(),
            scheduler_silence: Silence::new(liveness.heartbeat_timeout, now),
            stall: StallGuard::new(liveness.heartbeat_interval, now),
            leave: cfg.leave.clone(),
            leaving: false,
            copies_done: std::collections::BTreeSet::new(),
            rejoin,
        }
    }

    /// Routes a worker's frame: pushes and pulls once admitted, clocks, its `Hello`. Every
    /// frame must come from the worker the connection authenticated as.
    fn on_request(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        let Some(node) = self.workers.get(&peer).map(|a| a.node) else {
            return; // refused when it connected, and closed
        };
        let op = frame.opcode();
        if matches!(op, Opcode::Push | Opcode::Pull | Opcode::Clock)
            && !self.sender_is(node, frame.header.sender.get(), op, peer, &frame.header, io)
        {
            return;
        }
        if op == Opcode::Push && frame.header.flags & ferrops_net::flags::FORWARDED != 0 {
            let msg = "a worker cannot send a forwarded push: only the server before this one \
                       in the range's replication chain can";
            let refusal = Refusal::new(Status::Unauthorized, msg);
            return self.refuse(io, peer, &frame.header, &refusal);
        }
        match op {
            op @ (Opcode::Push | Opcode::Pull) => {
                let h = &frame.header;
                let measured = Measured {
                    started: Instant::now(),
                    op,
                    table: h.table.get(),
                    keys: h.key_count.get(),
                    value_bytes: h.values_len.get(),
                };
                let request = match self.admit(peer, frame, None) {
                    Ok(r) => r,
                    Err((header, refusal)) => return self.refuse(io, peer, &header, &refusal),
                };
                let header = request.frame.header;
                let result = if op == Opcode::Push {
                    self.push(&request, io)
                } else {
                    self.pull_or_park(request, io)
                };
                match result {
                    Ok(()) => self.measure(peer, &measured),
                    Err(refusal) => self.refuse(io, peer, &header, &refusal),
                }
            }
            Opcode::Clock => {
                let (worker, completed) = (frame.header.sender.get(), frame.header.clock.get());
                match self.clocks.record(worker, completed) {
                    Ok(live) => {
                        self.forward_clock(worker, completed, io);
                        if live {
                            self.release_parked(io);
                        }
                    }
                    Err(jump) => {
                        self.report.rejected_requests += 1;
                        tracing::warn!("ignoring a clock of peer {peer}: {jump}");
                    }
                }
            }
            Opcode::Control => match Control::decode(frame.extra()) {
                Ok(Control::Hello {
                    node_id,
                    key_cache_keys,
                    clock,
                }) => {
                    if self.sender_is(node, node_id, op, peer, &frame.header, io) {
                        self.accept_worker(peer, node_id, key_cache_keys);
                        if self.clocks.merge(node_id, clock) {
                            self.release_parked(io);
                        }
                    }
                }
                other => {
                    let msg = format!("servers do not accept {other:?} from workers");
                    self.refuse_bad_request(io, peer, &frame.header, msg);
                }
            },
            op => {
                let msg = format!("servers do not accept {op:?} frames");
                self.refuse_bad_request(io, peer, &frame.header, msg);
            }
        }
    }

    /// Whether a worker's frame names (`claimed`) the node its connection authenticated as;
    /// if not, the frame is refused and the connection closed.
    fn sender_is(
        &mut self,
        node: u32,
        claimed: u32,
        op: Opcode,
        peer: PeerId,
        header: &Header,
        io: &mut Io<'_>,
    ) -> bool {
        if claimed == node {
            return true;
        }
        let msg = format!(
            "a {op:?} frame claims to come from node {claimed}, but this connection \
             authenticated as worker node {node}"
        );
        tracing::warn!("closing peer {peer}: {msg}");
        self.refuse(io, peer, header, &Refusal::new(Status::Unauthorized, msg));
        io.close(peer, CloseReason::Error("spoofed sender".into()));
        false
    }

    /// Refuses a frame the server does not take from workers, saying why.
    fn refuse_bad_request(&mut self, io: &mut Io<'_>, peer: PeerId, header: &Header, msg: String) {
        self.refuse(io, peer, header, &Refusal::new(Status::BadRequest, msg));
    }

    /// Refuses a request: the peer is told why; its connection stays.
    fn refuse(&mut self, io: &mut Io<'_>, peer: PeerId, header: &Header, refusal: &Refusal) {
        self.report.rejected_requests += 1;
        tracing::debug!(
            "refusing request {} from peer {peer}: {}",
            header.request_id,
            refusal.message
        );
        io.send_error(peer, Some(header), refusal.status, &refusal.message);
    }
}

/// A request-level refusal: the peer is told, the connection stays.
struct Refusal {
    status: Status,
    message: String,
}

impl Refusal {
    fn new(status: Status, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        let status = match e {
            StoreError::Keys(crate::key_list::KeyListError::NotSortedUnique { .. }) => {
                Status::BadKeys
            }
            StoreError::Memory(_) | StoreError::Full(_) => Status::OutOfMemory,
            _ => Status::BadValues,
        };
        Refusal::new(status, e.to_string())
    }
}

impl Handler for Server {
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        if peer == self.scheduler {
            self.scheduler_silence.heard(Instant::now());
            if frame.opcode() == Opcode::Control {
                self.on_control(&frame, io);
            }
            return;
        }
        if let Some(&rank) = self.server_ranks.get(&peer) {
            return self.on_server_frame(peer, rank, frame, io);
        }
        self.on_request(peer, frame, io);
    }

    fn on_accept(&mut self, peer: PeerId, addr: std::net::SocketAddr, io: &mut Io<'_>) {
        if let Err(msg) = self.admit_connection(peer, io.identity(peer)) {
            tracing::warn!("refusing connection from {addr}: {msg}");
            io.send_error(peer, None, Status::Unauthorized, &msg);
            io.close(peer, CloseReason::Error(msg));
        }
    }

    fn on_close(&mut self, peer: PeerId, reason: &CloseReason, io: &mut Io<'_>) {
        if let Some(rank) = self.drop_chain_peer(peer) {
            if self.stop.is_none() {
                tracing::warn!("connection to server {rank} of a chain closed: {reason:?}");
            }
            self.lost_server(rank, io);
        }
        self.workers.remove(&peer);
        self.held_frames.retain(|(p, _, _)| *p != peer);
        self.parked.forget(|r| r.peer == peer);
        self.key_caches.remove(&peer);
        self.changed.retain(|(p, _), _| *p != peer);
        if peer == self.scheduler && self.stop.is_none() {
            self.scheduler_lost(reason);
        }
    }

    fn on_tick(&mut self, io: &mut Io<'_>) {
        self.refresh_meters();
        self.leave_if_asked(io);
        let now = Instant::now();
        if !self.stall.fresh(now) || self.stop.is_some() {
            return;
        }
        self.redial_chain_peers(now, io);
        if self.rejoin.outage.is_some() {
            return self.redial_scheduler(io);
        }
        if let Some(silent_for) = self.scheduler_silence.exceeded(now) {
            let e = EngineError::SchedulerSilent {
                silent_for,
                timeout: self.scheduler_silence.timeout(),
            };
            tracing::error!("{e}");
            self.stop = Some(Err(e));
        }
    }

    fn background(&mut self, io: &mut Io<'_>) -> bool {
        self.send_aged_batches(io);
        !self.copies_out.is_empty() && self.continue_copies(io)
    }

    fn should_stop(&self) -> bool {
        self.stop.is_some()
    }
}
