//! The worker API: declare tables, push and pull (blocking, asynchronous with tickets, and
//! zero-copy into caller buffers), advance the clock, and meet at barriers.
//!
//! A request is checked (keys sorted and unique, value count), sliced by key range with binary
//! search (keys are never copied) and sent as one frame per server, written straight from the
//! caller's slices. Progress is driven by the calling thread while it waits.

mod direct;
mod io;
mod pending;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ferrops_net::{flags, BufferPool, FrameParts, Header, Metrics, MetricsSnapshot, Opcode};
use zerocopy::IntoBytes;

pub use pending::{Completed, Ticket};

use crate::config::WorkerConfig;
use crate::connect::connect_scheduler;
use crate::control::{Control, Role};
use crate::filter::ReducerStats;
use crate::key_list::{check_and_sign, check_sorted_unique, check_value_count, KeyListError};
use crate::routing::RoutingTable;
use crate::table::{KeyLayout, TableId, TableSpec};
use crate::EngineError;
use ferrops_net::codec::keys::encode_keys;
use ferrops_net::codec::values::encode_values;
use ferrops_net::codec::{choose_key_codec, KeyCodec, ValueCodec};
use io::{ClientIo, Lent};
use pending::{Kind, PullInto};

/// Key lists at least this long carry a signature so the server can reuse their resolution.
pub const SIGNED_MIN_KEYS: usize = 256;
/// How long a worker waits for the scheduler to answer a declaration or welcome.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(600);

/// Who this worker is in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// 0-based worker rank.
    pub rank: u32,
    /// Node id (as servers see it).
    pub node_id: u32,
    pub num_workers: u32,
    pub num_servers: u32,
}

struct State {
    io: ClientIo,
    routing: RoutingTable,
    tables: HashMap<u32, TableSpec>,
    clock: u32,
    seq: u64,
    barrier_epoch: u64,
    finished: bool,
    reducers: ReducerStats,
}

/// A connection of one worker to the job. Methods take `&self` and may be called from several
/// threads; each call holds the worker's lock while it sends or waits.
pub struct Worker {
    info: WorkerInfo,
    state: Mutex<State>,
}

impl Worker {
    /// Registers with the scheduler, waits until the whole job is up, and connects to every
    /// server.
    pub fn connect(cfg: &WorkerConfig) -> Result<Worker, EngineError> {
        let cluster = &cfg.cluster;
        let metrics = Metrics::new();
        let pool = BufferPool::new();
        let scheduler = connect_scheduler(cluster, pool.clone(), metrics.clone())?;
        let mut io = ClientIo::new(scheduler, metrics)?;
        io.send_control(&Control::Register {
            role: Role::Worker,
            addr: None,
            rdma_addr: None,
        })?;
        let (info, routing) = io.await_control(
            |msg| match msg {
                Control::Welcome {
                    node_id,
                    rank,
                    num_servers,
                    num_workers,
                    routing,
                    ..
                } => Some((
                    WorkerInfo {
                        rank: *rank,
                        node_id: *node_id,
                        num_workers: *num_workers,
                        num_servers: *num_servers,
                    },
                    routing.clone(),
                )),
                _ => None,
            },
            CONTROL_TIMEOUT,
        )?;
        let hello = Control::Hello {
            node_id: info.node_id,
            key_cache_keys: cluster.key_cache_keys,
        };
        io.payload_crc = cluster.payload_checksum;
        io.key_packing = cluster.key_packing;
        let dialer = crate::transport::Dialer::new(cluster)?;
        for range in &routing.ranges {
            io.add_server(range, cluster, &dialer, pool.clone(), &hello)?;
        }
        tracing::debug!(
            "worker {} connected to {} servers",
            info.rank,
            io.servers.len()
        );
        Ok(Worker {
            info,
            state: Mutex::new(State {
                io,
                routing,
                tables: HashMap::new(),
                clock: 0,
                seq: 0,
                barrier_epoch: 0,
                finished: false,
                reducers: ReducerStats::default(),
            }),
        })
    }

    /// This worker's rank and the job's size.
    pub fn info(&self) -> WorkerInfo {
        self.info
    }

    /// The routing table this worker sends requests by.
    pub fn routing(&self) -> RoutingTable {
        self.lock().routing.clone()
    }

    /// 0-based rank among the workers.
    pub fn rank(&self) -> usize {
        self.info.rank as usize
    }

    /// Number of workers in the job.
    pub fn num_workers(&self) -> usize {
        self.info.num_workers as usize
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Declares a table (or looks up one another worker declared with the same spec) and waits
    /// until every server has created it.
    pub fn declare_table(&self, spec: TableSpec) -> Result<TableId, EngineError> {
        spec.validate().map_err(EngineError::Config)?;
        let mut st = self.lock();
        st.io
            .send_control(&Control::DeclareTable { spec: spec.clone() })?;
        let name = spec.name.clone();
        let (id, spec) = st.io.await_control(
            |msg| match msg {
                Control::TableReady { id, spec } if spec.name == name => Some((*id, spec.clone())),
                _ => None,
            },
            CONTROL_TIMEOUT,
        )?;
        st.tables.insert(id.0, spec);
        Ok(id)
    }

    /// Pushes `values` (`keys × dim × inputs of the rule` floats, in key order) and waits until
    /// every server involved has applied them.
    pub fn push(&self, table: TableId, keys: &[u64], values: &[f32]) -> Result<(), EngineError> {
        // Blocking, so `values` outlives the push: over RDMA, bulk parts are written by the
        // device straight from it (registrations live until the acknowledgements arrived).
        retry_key_misses(|only| {
            let mut registrations = Vec::new();
            let t = self.push_inner(table, keys, None, values, Some(&mut registrations), only)?;
            let done = self.wait(t).map(|_| ());
            drop(registrations);
            done
        })
    }

    /// Sends a push and returns at once with a ticket; the caller's slices are not needed after
    /// this returns (they were written to the sockets).
    pub fn push_async(
        &self,
        table: TableId,
        keys: &[u64],
        values: &[f32],
    ) -> Result<Ticket, EngineError> {
        self.push_inner(table, keys, None, values, None, None)
    }

    /// Pushes values for the keys at the ascending indices `selected` of `keys` only, while the
    /// whole list travels (so a list the server holds still goes by its signature): what
    /// filters use, since their choice of keys changes every round but the list they choose
    /// from does not. `values` holds `selected × dim × inputs` floats.
    pub fn push_selected(
        &self,
        table: TableId,
        keys: &[u64],
        selected: &[u32],
        values: &[f32],
    ) -> Result<(), EngineError> {
        retry_key_misses(|only| {
            let t = self.push_inner(table, keys, Some(selected), values, None, only)?;
            self.wait(t).map(|_| ())
        })
    }

    /// Sends a push (with `only`, just its parts for those servers, under a new sequence
    /// number). With `in_place` (the caller keeps `values` unchanged until the push is
    /// acknowledged), raw values bound for an RDMA server in a bulk frame are registered, kept
    /// in `in_place`, and read by the device from where they are.
    fn push_inner(
        &self,
        table: TableId,
        keys: &[u64],
        selected: Option<&[u32]>,
        values: &[f32],
        mut in_place: Option<&mut Vec<direct::Registered>>,
        only: Option<&[u32]>,
    ) -> Result<Ticket, EngineError> {
        let mut st = self.lock();
        let spec = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?;
        let per_key = spec.push_floats_per_key();
        let (dim, inputs) = (spec.dim as usize, spec.rule.inputs());
        let (layout, codec) = (spec.layout, spec.codec());
        let (caching, packing) = (spec.key_caching, spec.key_packing);
        let carried = match selected {
            Some(sel) => check_selection(sel, keys.len())?,
            None => keys.len(),
        };
        check_value_count(carried, values.len(), per_key)?;
        check_layout(layout, keys)?;
        let parts = st.routing.slice_for(layout, keys);
        let signatures = sign_if_caching(caching, check_and_sign_parts(keys, &parts)?);
        st.seq += 1;
        let seq = st.seq;
        let ticket = st.io.outstanding.open(Kind::Push);
        let mut header = self.request_header(&st, Opcode::Push, table);
        header.seq = seq.into();
        let (mut key_buf, mut value_buf, mut planes) = (Vec::new(), Vec::new(), Vec::new());
        let mut mask = Vec::new();
        for ((range, idx), signature) in parts.into_iter().zip(signatures) {
            let server = st.routing.ranges[range].server;
            if only.is_some_and(|o| !o.contains(&server)) {
                continue; // already applied there
            }
            let part_keys = &keys[idx.clone()];
            let carried_here = match selected {
                Some(sel) => {
                    let here = part_selection(sel, idx.clone());
                    if here.is_empty() {
                        continue; // nothing for this server: neither side touches its key cache
                    }
                    mask = part_mask(&sel[here.clone()], idx.start, part_keys.len());
                    here
                }
                None => idx.clone(),
            };
            let part_values = part_inputs(values, carried, dim, inputs, carried_here, &mut planes);
            let request = st.io.outstanding.add_request(ticket, server, 0..0);
            let State { io, reducers, .. } = &mut *st;
            let mut frame = part_frame(
                header,
                request,
                part_keys,
                signature,
                (io, server, packing),
                &mut key_buf,
                reducers,
            )?;
            let vals = [encode_part_values(codec, part_values, &mut value_buf)?];
            reducers.record_values(codec, part_values.len() * 4, vals[0].len());
            frame.header.value_codec = codec.id();
            frame.values = &vals;
            if selected.is_some() {
                frame.header.flags |= flags::VALUES_MASKED;
                frame.extra = &mask;
            }
            let from_caller = values.as_bytes().as_ptr_range();
            let in_caller = from_caller.contains(&vals[0].as_ptr()) && codec == ValueCodec::Raw;
            if let (Some(keep), true) = (in_place.as_deref_mut(), in_caller) {
                let link = &io.servers[server as usize];
                // SAFETY: the part's values are a slice of the caller's `values`, which the
                // blocking push keeps borrowed, unchanged, until the acknowledgements arrived,
                // after which it drops the registrations.
                let reg = unsafe {
                    direct::register(link, part_values.as_ptr().cast_mut(), part_values.len())
                }?;
                if let Some(reg) = reg {
                    io.send_values_registered(server, &mut frame, &reg)?;
                    keep.push(reg);
                    continue;
                }
            }
            io.send(Some(server), &mut frame, &mut None)?;
        }
        Ok(Ticket(ticket))
    }

    /// Pulls the values of `keys` (`keys × dim` floats, in key order).
    pub fn pull(&self, table: TableId, keys: &[u64]) -> Result<Vec<f32>, EngineError> {
        retry_key_misses(|_| {
            let t = self.pull_async(table, keys)?;
            self.wait_pull(t)
        })
    }

    /// Pulls into the caller's buffer, which must hold exactly `keys × dim` floats; the values
    /// are read from the sockets straight into it (no intermediate copy).
    pub fn pull_into(
        &self,
        table: TableId,
        keys: &[u64],
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        retry_key_misses(|_| self.pull_lent(table, keys, out, None))
    }

    /// Pulls only the rows that changed on the servers since this worker's last
    /// `pull_changed_into` of them (by more than `θ·max(|value|, ε)` in some coordinate; a row
    /// never received counts as changed) and writes them into `out`, leaving the other rows as
    /// they are. So `out` must hold what the previous call left there (reuse the buffer); the
    /// servers keep a copy of what this worker holds, per table.
    pub fn pull_changed_into(
        &self,
        table: TableId,
        keys: &[u64],
        out: &mut [f32],
        theta: f32,
    ) -> Result<(), EngineError> {
        retry_key_misses(|_| self.pull_lent(table, keys, out, Some(theta)))
    }

    /// A blocking pull whose replies are read into the caller's `out` while it waits
    /// (changed rows only when `changed_theta` is given).
    fn pull_lent(
        &self,
        table: TableId,
        keys: &[u64],
        out: &mut [f32],
        changed_theta: Option<f32>,
    ) -> Result<(), EngineError> {
        let mut st = self.lock();
        let into = PullInto::Borrowed;
        // Over RDMA, plain pulls of raw values name `out` to the servers, which write the
        // values straight into it (registrations live until this call returns).
        let raw = st
            .tables
            .get(&table.0)
            .is_some_and(|t| t.codec() == ferrops_net::codec::ValueCodec::Raw);
        let out_len = out.len();
        let direct = (changed_theta.is_none() && raw).then_some(&mut *out);
        let (ticket, _registrations) =
            self.send_pull(&mut st, table, keys, out_len, into, changed_theta, direct)?;
        let mut lent = Some(Lent {
            ticket,
            values: out,
        });
        st.io.drive_until(
            |io| io.outstanding.is_done(ticket) != Some(false),
            &mut lent,
            None,
        )?;
        st.io.outstanding.take(ticket).map(|_| ())
    }

    /// Sends a pull and returns a ticket; [`Worker::wait_pull`] gives the values.
    pub fn pull_async(&self, table: TableId, keys: &[u64]) -> Result<Ticket, EngineError> {
        self.pull_async_into(table, keys, Vec::new())
    }

    /// Like [`Worker::pull_async`], reusing `buf` (resized to `keys × dim`) for the values, so a
    /// loop that hands its buffer back each time allocates nothing.
    pub fn pull_async_into(
        &self,
        table: TableId,
        keys: &[u64],
        mut buf: Vec<f32>,
    ) -> Result<Ticket, EngineError> {
        let mut st = self.lock();
        let dim = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?
            .dim as usize;
        buf.resize(keys.len() * dim, 0.0);
        let len = buf.len();
        self.send_pull(&mut st, table, keys, len, PullInto::Owned(buf), None, None)
            .map(|(ticket, _)| Ticket(ticket))
    }

    /// Sends the parts of a pull. With `direct` (the caller's destination, which must outlive
    /// the returned registrations), parts big enough and bound for an RDMA server name their
    /// slice of it in the request, and the server writes the values there.
    #[allow(clippy::too_many_arguments)]
    fn send_pull(
        &self,
        st: &mut State,
        table: TableId,
        keys: &[u64],
        out_len: usize,
        into: PullInto,
        changed_theta: Option<f32>,
        direct: Option<&mut [f32]>,
    ) -> Result<(u64, Vec<direct::Registered>), EngineError> {
        let mut registrations = Vec::new();
        let direct_base = direct.map(|d| d.as_mut_ptr());
        let spec = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?;
        let (dim, layout) = (spec.dim as usize, spec.layout);
        let (caching, packing) = (spec.key_caching, spec.key_packing);
        check_value_count(keys.len(), out_len, dim)?;
        check_layout(layout, keys)?;
        let parts = st.routing.slice_for(layout, keys);
        let signatures = sign_if_caching(caching, check_and_sign_parts(keys, &parts)?);
        let ticket = st.io.outstanding.open(Kind::Pull(into));
        let header = self.request_header(st, Opcode::Pull, table);
        let mut key_buf = Vec::new();
        for ((range, idx), signature) in parts.into_iter().zip(signatures) {
            let server = st.routing.ranges[range].server;
            let request =
                st.io
                    .outstanding
                    .add_request(ticket, server, idx.start * dim..idx.end * dim);
            let State { io, reducers, .. } = &mut *st;
            let mut frame = part_frame(
                header,
                request,
                &keys[idx.clone()],
                signature,
                (io, server, packing),
                &mut key_buf,
                reducers,
            )?;
            let theta_bytes = changed_theta.map(f32::to_le_bytes);
            if let Some(bytes) = theta_bytes.as_ref() {
                frame.header.flags |= flags::PULL_CHANGED;
                frame.extra = bytes;
            }
            let mut remote = [0u8; 16];
            if let Some(base) = direct_base {
                let link = &io.servers[server as usize];
                let floats = (idx.end - idx.start) * dim;
                // SAFETY: `base` points to the caller's destination of `out_len` floats, which
                // outlives the registrations this function returns and is not read until the
                // pull completed; the part's slice lies inside it (`check_value_count` above).
                let reg = unsafe { direct::register(link, base.add(idx.start * dim), floats) }?;
                if let Some(reg) = reg {
                    remote = reg.remote_bytes();
                    frame.header.flags |= flags::VALUES_TO_REMOTE;
                    registrations.push(reg);
                }
            }
            if frame.header.flags & flags::VALUES_TO_REMOTE != 0 {
                frame.extra = &remote;
            }
            st.io.send(Some(server), &mut frame, &mut None)?;
        }
        Ok((ticket, registrations))
    }

    fn request_header(&self, st: &State, op: Opcode, table: TableId) -> Header {
        let mut h = Header::new(op);
        h.table = table.0.into();
        h.sender = self.info.node_id.into();
        h.clock = st.clock.into();
        h.routing_version = st.routing.version.into();
        h
    }

    /// Waits for a ticket.
    pub fn wait(&self, ticket: Ticket) -> Result<Completed, EngineError> {
        let mut st = self.lock();
        let id = ticket.0;
        st.io.drive_until(
            |io| io.outstanding.is_done(id) != Some(false),
            &mut None,
            None,
        )?;
        st.io.outstanding.take(id)
    }

    /// Waits for a pull ticket and returns its values.
    pub fn wait_pull(&self, ticket: Ticket) -> Result<Vec<f32>, EngineError> {
        match self.wait(ticket)? {
            Completed::Pulled(v) => Ok(v),
            Completed::Pushed => Ok(Vec::new()),
        }
    }

    /// Makes progress without blocking and says whether the ticket is finished.
    pub fn is_done(&self, ticket: &Ticket) -> Result<bool, EngineError> {
        let mut st = self.lock();
        st.io.progress(Some(Duration::ZERO), &mut None)?;
        st.io
            .outstanding
            .is_done(ticket.0)
            .ok_or(EngineError::UnknownTicket(ticket.0))
    }

    /// Finishes the current clock: every server learns that this worker's pushes up to now are
    /// complete, which may release pulls other workers are waiting on.
    pub fn clock(&self) -> Result<u32, EngineError> {
        let mut st = self.lock();
        st.clock += 1;
        let mut h = Header::new(Opcode::Clock);
        h.sender = self.info.node_id.into();
        h.clock = st.clock.into();
        h.routing_version = st.routing.version.into();
        for server in 0..st.io.servers.len() as u32 {
            st.io
                .send(Some(server), &mut FrameParts::header_only(h), &mut None)?;
        }
        Ok(st.clock)
    }

    /// The clock this worker is in (the number of clocks it has finished).
    pub fn current_clock(&self) -> u32 {
        self.lock().clock
    }

    /// Waits until every live worker reaches a barrier.
    pub fn barrier(&self) -> Result<(), EngineError> {
        let mut st = self.lock();
        st.barrier_epoch += 1;
        let epoch = st.barrier_epoch;
        st.io.send_control(&Control::Barrier { epoch })?;
        st.io.await_control(
            |msg| matches!(msg, Control::BarrierReleased { .. }).then_some(()),
            Duration::from_secs(u64::MAX / 4),
        )
    }

    /// What key caching, key packing and value codecs saved on this worker's requests.
    pub fn reducer_stats(&self) -> ReducerStats {
        let st = self.lock();
        let mut stats = st.reducers.clone();
        stats.changed_since.merge(&st.io.changed_since);
        stats
    }

    /// Byte counters of this worker.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.lock().io.metrics.snapshot()
    }

    /// How many of this worker's server connections are RDMA (the rest are TCP).
    pub fn rdma_connections(&self) -> usize {
        self.lock()
            .io
            .servers
            .iter()
            .filter(|l| l.is_rdma())
            .count()
    }

    /// Waits for every outstanding request, then tells the scheduler this worker is done.
    pub fn finish(self) -> Result<(), EngineError> {
        self.finish_inner()
    }

    fn finish_inner(&self) -> Result<(), EngineError> {
        let mut st = self.lock();
        if st.finished {
            return Ok(());
        }
        st.finished = true;
        st.io
            .drive_until(|io| io.outstanding.is_empty(), &mut None, None)?;
        st.io.send_control(&Control::Done)
    }
}

impl Drop for Worker {
    /// A worker dropped without `finish` (and not while panicking) finishes, like ps-lite's
    /// `Finalize`; a panicking worker does not, so the scheduler counts it as lost.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if let Err(e) = self.finish_inner() {
                tracing::debug!("worker {} could not finish cleanly: {e}", self.info.rank);
            }
        }
    }
}

/// A dense table's keys must lie in `0..keys` (sortedness is checked with the signature).
fn check_layout(layout: KeyLayout, keys: &[u64]) -> Result<(), EngineError> {
    if let (KeyLayout::Dense { keys: n }, Some(&last)) = (layout, keys.last()) {
        if last >= n {
            let first = keys.first().copied().unwrap_or(last);
            return Err(KeyListError::OutOfRange {
                first,
                last,
                begin: 0,
                end: n,
            }
            .into());
        }
    }
    Ok(())
}

/// Checks that the whole list is sorted and unique (each server's part, and the boundaries
/// between parts) and signs each part long enough to be worth caching (0: unsigned), reading
/// every key once. Nothing is sent before this succeeds.
fn check_and_sign_parts(
    keys: &[u64],
    parts: &[(usize, Range<usize>)],
) -> Result<Vec<u64>, EngineError> {
    let signed = keys.len() >= SIGNED_MIN_KEYS;
    let mut signatures = Vec::with_capacity(parts.len());
    for (_, idx) in parts {
        let part = &keys[idx.clone()];
        if idx.start > 0 && keys[idx.start - 1] >= keys[idx.start] {
            check_sorted_unique(&keys[idx.start - 1..=idx.start])
                .map_err(|e| e.shifted(idx.start - 1))?;
        }
        let signature = if signed {
            check_and_sign(part).map_err(|e| e.shifted(idx.start))?
        } else {
            check_sorted_unique(part).map_err(|e| e.shifted(idx.start))?;
            0
        };
        signatures.push(signature);
    }
    Ok(signatures)
}

/// The frame of one server's share of a request. A signed list the key cache of the
/// connection to `server` says that server holds travels as its signature alone; other lists
/// are delta + bit packed into `key_buf` when that pays (and both the connection and the
/// table, `table_packing`, allow it), raw otherwise.
fn part_frame<'a>(
    mut header: Header,
    request: u64,
    keys: &'a [u64],
    signature: u64,
    (io, server, table_packing): (&mut ClientIo, u32, bool),
    key_buf: &'a mut Vec<u8>,
    stats: &mut ReducerStats,
) -> Result<FrameParts<'a>, EngineError> {
    let packing = io.key_packing && table_packing;
    let cache = &mut io.key_caches[server as usize];
    header.request_id = request.into();
    header.key_count = (keys.len() as u32).into();
    header.key_signature = signature.into();
    if signature != 0 && !keys.is_empty() {
        let id = (header.table.get(), signature);
        if cache.access(id, keys.len() as u64, || ()).is_some() {
            header.flags |= flags::KEYS_BY_SIGNATURE;
            stats.key_cached.record(keys.len() * 8, 0);
            return Ok(FrameParts::header_only(header));
        }
    }
    let codec = if packing {
        choose_key_codec(keys)
    } else {
        KeyCodec::Raw
    };
    let wire_keys: &[u8] = if codec == KeyCodec::Raw {
        keys.as_bytes()
    } else {
        key_buf.clear();
        encode_keys(codec, keys, key_buf).map_err(codec_error)?;
        header.key_codec = codec.id();
        key_buf
    };
    stats.record_keys(codec, keys.len() * 8, wire_keys.len());
    Ok(FrameParts {
        header,
        keys: wire_keys,
        values: &[],
        extra: &[],
    })
}

/// Runs a blocking request; if some servers no longer held its key list (the worker has then
/// forgotten it too), runs it once more for those servers (`Some(servers)`), now with the keys.
/// Pulls simply run again whole (`only` is ignored); pushes go only where they were not
/// applied, under a new sequence number.
fn retry_key_misses<T>(
    mut request: impl FnMut(Option<&[u32]>) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    match request(None) {
        Err(EngineError::KeyListMissed { servers }) => {
            tracing::debug!("servers {servers:?} missed a cached key list; sending the keys");
            request(Some(&servers))
        }
        other => other,
    }
}

/// A table without key caching sends every list whole: no part carries a signature (the
/// server caches only signed lists).
fn sign_if_caching(caching: bool, mut signatures: Vec<u64>) -> Vec<u64> {
    if !caching {
        signatures.iter_mut().for_each(|s| *s = 0);
    }
    signatures
}

/// Checks a selection is strictly ascending indices below `keys`; returns its length.
fn check_selection(selected: &[u32], keys: usize) -> Result<usize, EngineError> {
    let ascending = selected.windows(2).all(|w| w[0] < w[1]);
    let in_range = selected.last().is_none_or(|&last| (last as usize) < keys);
    if !(ascending && in_range) {
        return Err(EngineError::Config(format!(
            "a selection must be strictly ascending indices below {keys}"
        )));
    }
    Ok(selected.len())
}

/// Which entries of `selected` fall in the key index range `idx`.
fn part_selection(selected: &[u32], idx: Range<usize>) -> Range<usize> {
    let lo = selected.partition_point(|&i| (i as usize) < idx.start);
    let hi = selected.partition_point(|&i| (i as usize) < idx.end);
    lo..hi
}

/// The bitmap of a part's selected keys (indices relative to the part's first key).
fn part_mask(selected: &[u32], first: usize, keys: usize) -> Vec<u8> {
    let mut mask = vec![0u8; keys.div_ceil(8)];
    for &i in selected {
        let bit = i as usize - first;
        mask[bit / 8] |= 1 << (bit % 8);
    }
    mask
}

/// One server's share of a push's inputs. A single input array is sliced in place; a rule
/// with several planar arrays (gradient then curvature, each `keys × dim` long) gets each
/// array's share, in order, gathered into `planes`.
fn part_inputs<'a>(
    values: &'a [f32],
    keys: usize,
    dim: usize,
    inputs: usize,
    idx: Range<usize>,
    planes: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (start, end) = (idx.start * dim, idx.end * dim);
    if inputs == 1 {
        return &values[start..end];
    }
    planes.clear();
    for j in 0..inputs {
        planes.extend_from_slice(&values[j * keys * dim + start..j * keys * dim + end]);
    }
    planes
}

/// A push's values as they travel: the caller's bytes for raw f32, else encoded into `buf`.
fn encode_part_values<'a>(
    codec: ValueCodec,
    values: &'a [f32],
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], EngineError> {
    if codec == ValueCodec::Raw {
        return Ok(values.as_bytes());
    }
    buf.clear();
    encode_values(codec, values, buf).map_err(codec_error)?;
    Ok(buf)
}

fn codec_error(e: ferrops_net::codec::CodecError) -> EngineError {
    EngineError::Config(format!("cannot encode: {e}"))
}
