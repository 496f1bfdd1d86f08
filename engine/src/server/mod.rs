//! The server role: holds its key ranges of every table, applies pushes, answers pulls when the
//! table's consistency model allows, and parks the pulls that must wait.
//!
//! Everything runs on the event loop's thread (run-to-completion): a push is applied by the
//! kernels straight from the receive buffer, and a pull is answered with slices of storage
//! written by `writev`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrops_net::{
    flags, CloseReason, EventLoop, Frame, FrameParts, Handler, Header, Io, Metrics,
    MetricsSnapshot, Opcode, PeerId, Status,
};

use crate::clock::{ClockTracker, Parked};
use crate::config::ServerConfig;
use crate::connect::connect_scheduler;
use crate::control::{reply_control, send_control, Control, Role};
use crate::filter::ChangedSince;
use crate::key_list_cache::KeyListCache;
use crate::memory::accounting::format_bytes;
use crate::routing::RoutingTable;
use crate::store::{Resolved, StoreError, StoreOptions, TableMemory, TableStore};
use crate::table::KeyLayout;
use crate::EngineError;
use ferrops_net::codec::keys::decode_keys;
use ferrops_net::codec::values::{decode_values, encode_values};
use ferrops_net::codec::{KeyCodec, ValueCodec};

/// Slot runs above this count are gathered into one buffer instead of one iovec each.
const MAX_RUNS_PER_REPLY: usize = 64;
/// Bytes of resolved key lists each table may cache.
const RESOLUTION_CACHE_BYTES: usize = 1 << 30;

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct ServerReport {
    pub pushes: u64,
    pub duplicate_pushes: u64,
    pub pulls: u64,
    pub parked_pulls: u64,
    pub rejected_requests: u64,
    pub net: MetricsSnapshot,
    /// Memory held by each table, by name.
    pub tables: Vec<(String, TableMemory)>,
    /// The process's resident set when the server stopped (0 if unknown).
    pub resident_bytes: u64,
}

/// A running server's state; driven by [`run_server`].
pub struct Server {
    scheduler: PeerId,
    key_cache_cap_keys: Option<u64>,
    node_id: Option<u32>,
    rank: Option<u32>,
    routing: RoutingTable,
    tables: HashMap<u32, TableStore>,
    clocks: ClockTracker,
    parked: Parked<Request>,
    key_caches: HashMap<PeerId, KeyListCache<CachedList>>,
    /// What each worker holds of each table, for changed-only pulls.
    changed: HashMap<(PeerId, u32), ChangedSince>,
    store_options: StoreOptions,
    last_seq: HashMap<u32, u64>,
    gather: Vec<f32>,
    /// Reused buffers for decoding pushed values and encoding pulled ones.
    decoded: Vec<f32>,
    encoded: Vec<u8>,
    stop: Option<Result<(), EngineError>>,
    report: ServerReport,
}

/// Runs a server until the scheduler shuts the job down (Ok) or is lost (Err): one shard per
/// `cfg.cluster.server_shards`, each a run-to-completion event loop on its own thread with its
/// own listener, key range and tables (nothing shared, so no locks and no queue hop between the
/// thread that reads a frame and the one that owns its keys), pinned to the configured NUMA
/// node. With a fixed listen port, shard i listens on port + i.
pub fn run_server(cfg: &ServerConfig) -> Result<ServerReport, EngineError> {
    let mut cfg = cfg.clone();
    if cfg.memory.numa_node.is_none() {
        cfg.memory.numa_node = nic_node(cfg.bind.ip());
    }
    let cfg = &cfg;
    let shards = cfg.cluster.server_shards.max(1);
    if shards == 1 {
        pin_to_node(cfg.memory.numa_node)?;
        return run_shard(cfg);
    }
    let handles: Vec<_> = (0..shards)
        .map(|i| {
            let mut shard = cfg.clone();
            if shard.bind.port() != 0 {
                shard.bind.set_port(shard.bind.port() + i as u16);
            }
            std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    pin_to_node(shard.memory.numa_node)?;
                    run_shard(&shard)
                })
                .map_err(|e| EngineError::Config(format!("cannot start shard {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut total = ServerReport::default();
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => total.merge(r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(EngineError::Config("a shard thread panicked".into()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// The NUMA node nearest the NIC that carries `ip`, when the machine has more than one node
/// and the address names one NIC (not a wildcard or loopback).
fn nic_node(ip: std::net::IpAddr) -> Option<usize> {
    let nic = crate::netdev::interface_of(ip)?;
    match crate::memory::node_of_netdev(&nic) {
        Ok(Some(node)) => {
            tracing::info!("serving on {nic}: memory and shards go to its NUMA node {node}");
            Some(node)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot tell the NUMA node of {nic}: {e}");
            None
        }
    }
}

fn pin_to_node(node: Option<usize>) -> Result<(), EngineError> {
    match node {
        Some(n) => crate::memory::pin_current_thread_to_node(n)
            .map_err(|e| EngineError::Config(format!("cannot pin to NUMA node {n}: {e}"))),
        None => Ok(()),
    }
}

impl ServerReport {
    /// Adds another shard's report to this one.
    pub fn merge(&mut self, other: ServerReport) {
        self.pushes += other.pushes;
        self.duplicate_pushes += other.duplicate_pushes;
        self.pulls += other.pulls;
        self.parked_pulls += other.parked_pulls;
        self.rejected_requests += other.rejected_requests;
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
        self.resident_bytes = self.resident_bytes.max(other.resident_bytes);
    }
}

/// Runs one shard: an event loop serving its own key range.
fn run_shard(cfg: &ServerConfig) -> Result<ServerReport, EngineError> {
    let metrics = Metrics::new();
    let mut ev = EventLoop::new(Some(cfg.bind), cfg.cluster.limits, metrics.clone())?;
    ev.set_payload_crc(cfg.cluster.payload_checksum);
    let peer = connect_scheduler(&cfg.cluster, ev.pool().clone(), metrics.clone())?;
    let scheduler = ev.adopt(peer)?;
    let listen = ev
        .local_addr()
        .ok_or_else(|| EngineError::Config("no listen address".into()))?;
    let advertised = advertised_addr(listen, ev.local_addr_of(scheduler));
    let rdma_addr = crate::transport::listen_rdma(&mut ev, &cfg.cluster, cfg.bind, listen)?;
    send_control(
        &mut ev,
        scheduler,
        &Control::Register {
            role: Role::Server,
            addr: Some(advertised.to_string()),
            rdma_addr: rdma_addr.map(|a| a.to_string()),
        },
    )?;
    match rdma_addr {
        Some(rdma) => tracing::info!("server listening on {advertised} and RDMA {rdma}"),
        None => tracing::info!("server listening on {advertised}"),
    }
    let mut server = Server {
        key_cache_cap_keys: cfg.key_cache_cap_keys,
        scheduler,
        node_id: None,
        rank: None,
        routing: RoutingTable::default(),
        tables: HashMap::new(),
        clocks: ClockTracker::default(),
        parked: Parked::default(),
        key_caches: HashMap::new(),
        changed: HashMap::new(),
        store_options: StoreOptions {
            segment: cfg.memory,
            capacity_bytes: cfg.table_capacity_bytes,
            cache_bytes: RESOLUTION_CACHE_BYTES,
        },
        last_seq: HashMap::new(),
        gather: Vec::new(),
        decoded: Vec::new(),
        encoded: Vec::new(),
        stop: None,
        report: ServerReport::default(),
    };
    let ran = ev.run(&mut server);
    // Connections first: RDMA ones hold registrations of the tables' segments.
    drop(ev);
    ran?;
    server.report.net = metrics.snapshot();
    server.report.tables = server
        .tables
        .values()
        .map(|t| (t.spec().name.clone(), t.memory()))
        .collect();
    server.report.resident_bytes = crate::memory::accounting::resident_set_bytes().unwrap_or(0);
    for (name, m) in &server.report.tables {
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
    tracing::info!(
        "resident set {}",
        format_bytes(server.report.resident_bytes)
    );
    tracing::info!(
        "server {} done: {} pushes, {} pulls ({} parked), {} rejected",
        server.rank.map_or("?".into(), |r| r.to_string()),
        server.report.pushes,
        server.report.pulls,
        server.report.parked_pulls,
        server.report.rejected_requests
    );
    match server.stop.take() {
        Some(Err(e)) => Err(e),
        _ => Ok(server.report),
    }
}

/// The address workers should dial: the listen address, or, when it is a wildcard, the local
/// address of our connection to the scheduler with the listen port.
fn advertised_addr(listen: SocketAddr, towards_scheduler: Option<SocketAddr>) -> SocketAddr {
    match towards_scheduler {
        Some(local) if listen.ip().is_unspecified() => SocketAddr::new(local.ip(), listen.port()),
        _ => listen,
    }
}

/// Sends a pull reply with raw values: over RDMA, when the request named a registered buffer
/// of the worker (`VALUES_TO_REMOTE`), the values are written straight into it (read by the
/// device straight from `region`, the table's segment, when they are slices of it); otherwise
/// they travel in the frame. A named buffer too small for the reply is refused.
fn send_raw_pull_reply(
    io: &mut Io<'_>,
    peer: PeerId,
    request: &Frame,
    frame: &mut FrameParts<'_>,
    region: Option<&[u8]>,
) -> Result<Result<(), ferrops_net::NetError>, Refusal> {
    #[cfg(feature = "rdma")]
    if request.header.flags & flags::VALUES_TO_REMOTE != 0 && io.is_rdma(peer) {
        let Some(dest) = ferrops_net::rdma::RemoteBuf::from_bytes(request.extra()) else {
            return Err(Refusal::new(
                Status::BadFrame,
                "a direct pull must name its buffer in 16 bytes of extra",
            ));
        };
        let len: usize = frame.values.iter().map(|v| v.len()).sum();
        if len > dest.len as usize {
            return Err(Refusal::new(
                Status::BadValues,
                format!(
                    "the reply has {len} bytes of values; the named buffer holds {}",
                    dest.len
                ),
            ));
        }
        return Ok(match region {
            // SAFETY: the region is a table's values segment: tables are never dropped while
            // the shard runs, and the shard drops its connections before its tables.
            Some(region) => unsafe { io.send_values_from_region_to(peer, frame, dest, region) },
            None => io.send_values_to(peer, frame, dest),
        });
    }
    #[cfg(not(feature = "rdma"))]
    let _ = (request, region);
    Ok(io.send(peer, frame))
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

impl Server {
    fn on_control(&mut self, frame: &Frame, io: &mut Io<'_>) {
        let msg = match Control::decode(frame.extra()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("undecodable control message from the scheduler: {e}");
                return;
            }
        };
        match msg {
            Control::Welcome {
                node_id,
                rank,
                routing,
                workers,
                ..
            } => {
                self.clocks.set_live(&workers);
                self.node_id = Some(node_id);
                self.rank = Some(rank);
                for r in routing.owned_by(rank) {
                    tracing::info!("server {rank} owns keys [{:#x}, {:#x}]", r.begin, r.last);
                }
                self.routing = routing;
                reply_control(io, self.scheduler, &Control::Ready);
            }
            Control::TableReady { id, spec } => {
                tracing::info!(
                    "table {} `{}`: dim {}, {:?}, {:?}",
                    id.0,
                    spec.name,
                    spec.dim,
                    spec.rule,
                    spec.consistency
                );
                if !self.tables.contains_key(&id.0) {
                    let created = match (
                        spec.layout,
                        self.rank.and_then(|r| self.routing.index_of(r)),
                    ) {
                        (KeyLayout::Dense { keys }, Some(i)) => {
                            let (begin, end) = self.routing.dense_bounds(i, keys);
                            TableStore::dense(spec, &self.store_options, begin, end)
                        }
                        _ => TableStore::new(spec, &self.store_options),
                    };
                    match created {
                        Ok(store) => {
                            self.tables.insert(id.0, store);
                        }
                        Err(e) => {
                            // Without its table this server cannot serve the job: say why and stop.
                            tracing::error!("cannot create table {}: {e}", id.0);
                            self.stop = Some(Err(EngineError::Config(format!(
                                "cannot create table {}: {e}",
                                id.0
                            ))));
                            return;
                        }
                    }
                }
                reply_control(io, self.scheduler, &Control::TableCreated { id });
            }
            Control::LiveWorkers { workers } => {
                self.clocks.set_live(&workers);
                self.release_parked(io);
            }
            Control::Shutdown { ok, reason } => {
                tracing::info!("shutdown requested ({reason})");
                self.stop = Some(if ok {
                    Ok(())
                } else {
                    Err(EngineError::Shutdown(reason))
                });
            }
            other => tracing::warn!("unexpected control message {other:?}"),
        }
    }

    fn on_request(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        match frame.opcode() {
            op @ (Opcode::Push | Opcode::Pull) => {
                let request = match self.admit(peer, frame) {
                    Ok(r) => r,
                    Err((header, refusal)) => return self.refuse(io, peer, &header, &refusal),
                };
                let header = request.frame.header;
                let result = if op == Opcode::Push {
                    self.push(&request, io)
                } else {
                    self.pull_or_park(request, io)
                };
                if let Err(refusal) = result {
                    self.refuse(io, peer, &header, &refusal);
                }
            }
            Opcode::Clock => {
                let (worker, completed) = (frame.header.sender.get(), frame.header.clock.get());
                if self.clocks.record(worker, completed) {
                    self.release_parked(io);
                }
            }
            Opcode::Control => match Control::decode(frame.extra()) {
                Ok(Control::Hello {
                    node_id,
                    key_cache_keys,
                }) => {
                    tracing::debug!(
                        "worker node {node_id} on peer {peer}, key cache {key_cache_keys} keys"
                    );
                    let keys = self
                        .key_cache_cap_keys
                        .map_or(key_cache_keys, |cap| cap.min(key_cache_keys));
                    self.key_caches.insert(peer, KeyListCache::new(keys));
                }
                other => {
                    let msg = format!("servers do not accept {other:?} from workers");
                    self.refuse(
                        io,
                        peer,
                        &frame.header,
                        &Refusal::new(Status::BadRequest, msg),
                    );
                }
            },
            op => {
                let msg = format!("servers do not accept {op:?} frames");
                self.refuse(
                    io,
                    peer,
                    &frame.header,
                    &Refusal::new(Status::BadRequest, msg),
                );
            }
        }
    }

    /// Finds a request's keys: in the frame, or, for a request that names them by signature, in
    /// this connection's key cache. Every signed request updates the cache exactly as the worker
    /// did when it sent it, whatever happens to the request afterwards.
    fn admit(&mut self, peer: PeerId, frame: Frame) -> Result<Request, (Header, Refusal)> {
        let h = frame.header;
        let id = (h.table.get(), h.key_signature.get());
        let count = u64::from(h.key_count.get());
        let cache = self.key_caches.get_mut(&peer);
        if h.flags & flags::KEYS_BY_SIGNATURE != 0 {
            let Some(cached) = cache.and_then(|c| c.hit(id, count)) else {
                let msg = format!(
                    "key list {:#018x} ({count} keys) is not cached on this connection",
                    id.1
                );
                return Err((h, Refusal::new(Status::KeysUnknown, msg)));
            };
            let (keys, resolved) = (Some(cached.keys.clone()), cached.resolved.clone());
            return Ok(Request {
                peer,
                frame,
                keys,
                resolved,
            });
        }
        // Compressed keys are decoded once, here (at most `key_count` of them).
        let decoded = match KeyCodec::from_id(h.key_codec) {
            Ok(KeyCodec::Raw) => None,
            Ok(codec) => Some(Arc::new(
                decode_keys(codec, frame.keys_bytes(), count as usize)
                    .map_err(|e| (h, Refusal::new(Status::BadKeys, e.to_string())))?,
            )),
            Err(e) => return Err((h, Refusal::new(Status::BadKeys, e.to_string()))),
        };
        if let (Some(cache), true) = (cache, id.1 != 0) {
            let keys = match &decoded {
                Some(k) => k.clone(),
                None => Arc::new(
                    frame
                        .keys()
                        .map_err(|e| (h, Refusal::new(Status::BadKeys, e.to_string())))?
                        .to_vec(),
                ),
            };
            cache.access(id, count, || CachedList {
                keys: keys.clone(),
                resolved: None,
            });
            return Ok(Request {
                peer,
                frame,
                keys: Some(keys),
                resolved: None,
            });
        }
        Ok(Request {
            peer,
            frame,
            keys: decoded,
            resolved: None,
        })
    }

    fn refuse(&mut self, io: &mut Io<'_>, peer: PeerId, header: &Header, refusal: &Refusal) {
        self.report.rejected_requests += 1;
        tracing::debug!(
            "refusing request {} from peer {peer}: {}",
            header.request_id,
            refusal.message
        );
        io.send_error(peer, Some(header), refusal.status, &refusal.message);
    }

    /// Checks the routing version and that every key is in the range this server (shard) owns
    /// for a table of `layout`.
    fn check_owner(&self, keys: &[u64], header: &Header, layout: KeyLayout) -> Result<(), Refusal> {
        let version = header.routing_version.get();
        if version != self.routing.version {
            return Err(Refusal::new(
                Status::NotOwner,
                format!(
                    "routed with version {version}, server has {}",
                    self.routing.version
                ),
            ));
        }
        let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
            return Ok(());
        };
        let rank = self.rank.unwrap_or(u32::MAX);
        let owned = match (layout, self.routing.index_of(rank)) {
            (_, None) => false,
            (KeyLayout::Sparse, Some(i)) => {
                let r = &self.routing.ranges[i];
                r.contains(first) && r.contains(last)
            }
            (KeyLayout::Dense { keys: n }, Some(i)) => {
                let (begin, end) = self.routing.dense_bounds(i, n);
                begin <= first && last < end
            }
        };
        if !owned || first > last {
            return Err(Refusal::new(
                Status::NotOwner,
                format!("keys [{first:#x}, {last:#x}] are not all owned by server {rank}"),
            ));
        }
        Ok(())
    }

    /// The request's table, keys (ownership checked) and their slots, resolving them once per
    /// cached list.
    fn resolve<'r>(
        &mut self,
        request: &'r Request,
    ) -> Result<(&mut TableStore, &'r [u64], Arc<Resolved>), Refusal> {
        let keys = request.keys()?;
        let h = request.frame.header;
        let id = h.table.get();
        let layout = self
            .tables
            .get(&id)
            .ok_or_else(|| {
                Refusal::new(Status::UnknownTable, format!("table {id} is not declared"))
            })?
            .spec()
            .layout;
        self.check_owner(keys, &h, layout)?;
        let store = self.tables.get_mut(&id).ok_or_else(|| {
            Refusal::new(Status::UnknownTable, format!("table {id} is not declared"))
        })?;
        let resolved = match &request.resolved {
            Some(r) => r.clone(),
            None => {
                let r = store.resolve(h.key_signature.get(), keys)?;
                let cached = self
                    .key_caches
                    .get_mut(&request.peer)
                    .and_then(|c| c.peek_mut((id, h.key_signature.get())));
                if let Some(entry) = cached {
                    entry.resolved = Some(r.clone());
                }
                r
            }
        };
        Ok((store, keys, resolved))
    }

    fn push(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        let h = request.frame.header;
        let worker = h.sender.get();
        let seq = h.seq.get();
        let duplicate = seq != 0 && self.last_seq.get(&worker).is_some_and(|&last| seq <= last);
        if duplicate {
            self.report.duplicate_pushes += 1;
        } else {
            let mut decoded = std::mem::take(&mut self.decoded);
            let (store, keys, resolved) = self.resolve(request)?;
            let per_key = store.spec().push_floats_per_key();
            let masked = request.frame.header.flags & flags::VALUES_MASKED != 0;
            let applied =
                selected_slots(masked, request.frame.extra(), &resolved.slots).and_then(|subset| {
                    let carried = subset.as_ref().map_or(keys.len(), Vec::len);
                    let values = push_values(&request.frame, carried * per_key, &mut decoded)?;
                    crate::key_list::check_value_count(carried, values.len(), per_key)
                        .map_err(|e| Refusal::new(Status::BadValues, e.to_string()))?;
                    match subset {
                        Some(slots) => store.apply(&slots, values),
                        None => store.apply_resolved(&resolved, values),
                    }
                    .map_err(Refusal::from)
                });
            self.decoded = decoded;
            applied?;
            if seq != 0 {
                self.last_seq.insert(worker, seq);
            }
            self.report.pushes += 1;
        }
        let mut ack = Header::new(Opcode::PushAck);
        ack.request_id = h.request_id;
        ack.table = h.table;
        ack.seq = h.seq;
        if let Err(e) = io.send(request.peer, &mut FrameParts::header_only(ack)) {
            io.close(request.peer, CloseReason::Error(e.to_string()));
        }
        Ok(())
    }

    fn pull_or_park(&mut self, request: Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        let h = request.frame.header;
        let table = self.tables.get(&h.table.get()).ok_or_else(|| {
            let msg = format!("table {} is not declared", h.table.get());
            Refusal::new(Status::UnknownTable, msg)
        })?;
        let required = table.spec().consistency.required_completed(h.clock.get());
        if self.clocks.min_completed() < required {
            self.report.parked_pulls += 1;
            self.parked.park(required, request);
            return Ok(());
        }
        self.answer_pull(&request, io)
    }

    fn answer_pull(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        if request.frame.header.flags & flags::PULL_CHANGED != 0 {
            return self.answer_changed_pull(request, io);
        }
        let h = request.frame.header;
        let peer = request.peer;
        let mut gather = std::mem::take(&mut self.gather);
        let (store, keys, resolved) = self.resolve(request)?;
        let mut reply = Header::new(Opcode::PullReply);
        reply.request_id = h.request_id;
        reply.table = h.table;
        reply.clock = h.clock;
        reply.key_count = (keys.len() as u32).into();
        let codec = store.spec().codec();
        let sent = if codec != ValueCodec::Raw {
            // Encoded replies are built in a buffer: gather, then encode.
            store.gather(&resolved.slots, &mut gather);
            let mut encoded = std::mem::take(&mut self.encoded);
            encoded.clear();
            let result = match encode_values(codec, &gather, &mut encoded) {
                Ok(_) => {
                    reply.value_codec = codec.id();
                    let bytes = [encoded.as_slice()];
                    io.send(
                        peer,
                        &mut FrameParts {
                            header: reply,
                            keys: &[],
                            values: &bytes,
                            extra: &[],
                        },
                    )
                }
                Err(e) => {
                    self.encoded = encoded;
                    self.gather = gather;
                    return Err(Refusal::new(
                        Status::BadValues,
                        format!("cannot encode: {e}"),
                    ));
                }
            };
            self.encoded = encoded;
            result
        } else if resolved.runs.len() <= MAX_RUNS_PER_REPLY {
            let slices: Vec<&[u8]> = resolved
                .runs
                .iter()
                .map(|&(s, n)| store.run_bytes(s, n))
                .collect();
            let mut frame = FrameParts {
                header: reply,
                keys: &[],
                values: &slices,
                extra: &[],
            };
            let region = store.values_region();
            send_raw_pull_reply(io, peer, &request.frame, &mut frame, Some(region))?
        } else {
            store.gather(&resolved.slots, &mut gather);
            io.metrics().values_copied(gather.len() * 4);
            let bytes = [zerocopy::IntoBytes::as_bytes(gather.as_slice())];
            let mut frame = FrameParts {
                header: reply,
                keys: &[],
                values: &bytes,
                extra: &[],
            };
            send_raw_pull_reply(io, peer, &request.frame, &mut frame, None)?
        };
        self.gather = gather;
        if let Err(e) = sent {
            io.close(peer, CloseReason::Error(e.to_string()));
        }
        self.report.pulls += 1;
        Ok(())
    }

    /// Answers a pull with only the rows that changed since this worker's last such pull of
    /// them: a bitmap of the keys in the extra section, their rows in the values section.
    fn answer_changed_pull(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        let h = request.frame.header;
        let theta = <[u8; 4]>::try_from(request.frame.extra())
            .map(f32::from_le_bytes)
            .map_err(|_| {
                Refusal::new(
                    Status::BadRequest,
                    "a changed-only pull carries θ as 4 bytes",
                )
            })?;
        let mut gather = std::mem::take(&mut self.gather);
        let (store, keys, resolved) = self.resolve(request)?;
        let (dim, codec) = (store.spec().dim as usize, store.spec().codec());
        store.gather(&resolved.slots, &mut gather);
        let tracker = match self.changed.entry((request.peer, h.table.get())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                ChangedSince::new(dim, theta, 1e-6)
                    .map_err(|e| Refusal::new(Status::BadRequest, e.to_string()))?,
            ),
        };
        let rows = tracker
            .select(keys, &gather)
            .map_err(|e| Refusal::new(Status::BadValues, e.to_string()))?;
        let mut mask = vec![0u8; keys.len().div_ceil(8)];
        let mut values = Vec::with_capacity(rows.len() * dim);
        for &r in &rows {
            let r = r as usize;
            mask[r / 8] |= 1 << (r % 8);
            values.extend_from_slice(&gather[r * dim..(r + 1) * dim]);
        }
        self.gather = gather;
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        encode_values(codec, &values, &mut encoded)
            .map_err(|e| Refusal::new(Status::BadValues, format!("cannot encode: {e}")))?;
        let mut reply = Header::new(Opcode::PullReply);
        reply.request_id = h.request_id;
        reply.table = h.table;
        reply.clock = h.clock;
        reply.key_count = (keys.len() as u32).into();
        reply.value_codec = codec.id();
        reply.flags |= flags::VALUES_MASKED;
        let bytes = [encoded.as_slice()];
        let mut frame = FrameParts {
            header: reply,
            keys: &[],
            values: &bytes,
            extra: &mask,
        };
        if let Err(e) = io.send(request.peer, &mut frame) {
            io.close(request.peer, CloseReason::Error(e.to_string()));
        }
        self.encoded = encoded;
        self.report.pulls += 1;
        Ok(())
    }

    fn release_parked(&mut self, io: &mut Io<'_>) {
        for request in self.parked.release(self.clocks.min_completed()) {
            if let Err(r) = self.answer_pull(&request, io) {
                let header = request.frame.header;
                self.refuse(io, request.peer, &header, &r);
            }
        }
    }
}

/// For a push that carries values for some of its keys only, the slots of those keys, read from
/// the bitmap in the extra section; `None` for an ordinary push.
fn selected_slots(masked: bool, mask: &[u8], slots: &[u32]) -> Result<Option<Vec<u32>>, Refusal> {
    if !masked {
        return Ok(None);
    }
    if mask.len() != slots.len().div_ceil(8) {
        let msg = format!(
            "value mask of {} bytes for {} keys",
            mask.len(),
            slots.len()
        );
        return Err(Refusal::new(Status::BadValues, msg));
    }
    let chosen = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| mask[i / 8] & (1 << (i % 8)) != 0)
        .map(|(_, &s)| s)
        .collect();
    Ok(Some(chosen))
}

/// A push's values as f32: read in place for raw values, decoded into `scratch` otherwise
/// (exactly `expected` of them, or a refusal).
fn push_values<'f>(
    frame: &'f Frame,
    expected: usize,
    scratch: &'f mut Vec<f32>,
) -> Result<&'f [f32], Refusal> {
    let bad = |e: String| Refusal::new(Status::BadValues, e);
    match ValueCodec::from_id(frame.header.value_codec).map_err(|e| bad(e.to_string()))? {
        ValueCodec::Raw => frame.values_f32().map_err(|e| bad(e.to_string())),
        codec => {
            scratch.clear();
            scratch.resize(expected, 0.0);
            decode_values(codec, frame.values_bytes(), scratch).map_err(|e| bad(e.to_string()))?;
            Ok(scratch)
        }
    }
}

/// A push or pull admitted for processing, with its keys from the frame or the key cache.
struct Request {
    peer: PeerId,
    frame: Frame,
    keys: Option<Arc<Vec<u64>>>,
    resolved: Option<Arc<Resolved>>,
}

impl Request {
    fn keys(&self) -> Result<&[u64], Refusal> {
        match &self.keys {
            Some(k) => Ok(k),
            None => self
                .frame
                .keys()
                .map_err(|e| Refusal::new(Status::BadKeys, e.to_string())),
        }
    }
}

/// A key list a worker connection cached here, and its slots once resolved.
struct CachedList {
    keys: Arc<Vec<u64>>,
    resolved: Option<Arc<Resolved>>,
}

impl Handler for Server {
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        if peer == self.scheduler {
            if frame.opcode() == Opcode::Control {
                self.on_control(&frame, io);
            }
            return;
        }
        self.on_request(peer, frame, io);
    }

    fn on_close(&mut self, peer: PeerId, reason: &CloseReason, _io: &mut Io<'_>) {
        self.parked.forget(|r| r.peer == peer);
        self.key_caches.remove(&peer);
        self.changed.retain(|(p, _), _| *p != peer);
        if peer == self.scheduler && self.stop.is_none() {
            tracing::error!("scheduler connection closed: {reason:?}");
            self.stop = Some(Err(EngineError::SchedulerLost));
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.is_some()
    }
}
