//! The worker API: declare tables, push and pull (blocking, asynchronous with tickets, and
//! zero-copy into caller buffers), advance the clock, and meet at barriers.
//!
//! A request is checked (keys sorted and unique, value count), sliced by key range with binary
//! search (keys are never copied) and sent as one frame per server, written straight from the
//! caller's slices ([`plan`] does this for [`push`] and [`pull`] alike). Progress is driven by
//! the calling thread while it waits: the connections, the poller and the wait are
//! `ferrops_net::ClientDriver`'s ([`io`]); what arrives is handled by [`inbound`], and the
//! requests still waiting for answers are kept in [`pending`].

mod checkpoint;
#[allow(unsafe_code)] // registers a caller's slice for the peer's direct access
mod direct;
mod failover;
pub(crate) mod fuzzing;
mod inbound;
pub(crate) mod io;
mod meter;
mod new_servers;
mod pending;
mod plan;
#[allow(unsafe_code)] // lends slices of the caller's buffer to registrations
mod pull;
#[allow(unsafe_code)] // lends the caller's values to registrations
mod push;
mod rejoin;
mod sequence;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ferrops_net::{
    BufferPool, FrameParts, Header, Metrics, MetricsSnapshot, Opcode, ScrapeEndpoint,
};

use pending::Resend;
pub use pending::{Completed, Ticket};

use crate::config::WorkerConfig;
use crate::connect::connect_scheduler;
use crate::control::{Control, Role};
use crate::filter::ReducerStats;
use crate::liveness::Heartbeat;
use crate::metrics::NodeMetrics;
use crate::routing::RoutingTable;
use crate::table::{TableId, TableSpec};
use crate::EngineError;
use ferrops_net::client::ServerAddrs;
use io::ClientIo;
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
    /// How to reach a server that joins the job later.
    dialing: new_servers::Dialing,
    tables: HashMap<u32, TableSpec>,
    clock: u32,
    barrier_epoch: u64,
    finished: bool,
    reducers: ReducerStats,
}

/// A connection of one worker to the job. Methods take `&self` and may be called from several
/// threads; each call holds the worker's lock while it sends or waits.
pub struct Worker {
    info: WorkerInfo,
    state: Mutex<State>,
    metrics: NodeMetrics,
    /// Serves `metrics` while the worker lives (when `metrics_addr` is set).
    endpoint: Option<ScrapeEndpoint>,
}

impl Worker {
    /// Registers with the scheduler, waits until the whole job is up, and connects to every
    /// server.
    pub fn connect(cfg: &WorkerConfig) -> Result<Worker, EngineError> {
        let cluster = &cfg.cluster;
        cluster.warn_if_insecure(Role::Worker);
        let metrics = Metrics::new();
        let node_metrics = NodeMetrics::new(Role::Worker);
        node_metrics.track_net(&metrics);
        let endpoint = node_metrics.serve_if(cluster.metrics_addr)?;
        let pool = BufferPool::new();
        let liveness = &cluster.liveness;
        let (mut scheduler, _) =
            connect_scheduler(cluster, Role::Worker, pool.clone(), metrics.clone())?;
        let to_scheduler = scheduler.share_writes(liveness.heartbeat_timeout)?;
        let mut io = ClientIo::new(
            scheduler,
            metrics,
            cluster.busy_poll,
            liveness.heartbeat_timeout,
        )?;
        io.inbound.outstanding.meters = meter::WorkerMeters::new(node_metrics.families().clone());
        io.send_control(&Control::Register {
            role: Role::Worker,
            addr: None,
            rdma_addr: None,
            rank: cluster.rank,
        })?;
        let heartbeat = Heartbeat::start(
            to_scheduler,
            liveness.heartbeat_interval,
            cluster.payload_checksum,
        )?;
        let (info, routing, start_clock) = io.await_control(
            |msg| match msg {
                Control::Welcome {
                    node_id,
                    rank,
                    num_servers,
                    num_workers,
                    routing,
                    start_clock,
                    ..
                } => Some((
                    WorkerInfo {
                        rank: *rank,
                        node_id: *node_id,
                        num_workers: *num_workers,
                        num_servers: *num_servers,
                    },
                    routing.clone(),
                    *start_clock,
                )),
                _ => None,
            },
            CONTROL_TIMEOUT,
        )?;
        let hello = Control::Hello {
            node_id: info.node_id,
            key_cache_keys: cluster.key_cache_keys,
            clock: start_clock,
        };
        io.payload_crc = cluster.payload_checksum;
        io.key_packing = cluster.key_packing;
        let dialer = crate::transport::dialer(cluster)?;
        let options = crate::transport::dial_options(cluster, info.node_id);
        for range in &routing.ranges {
            let to = ServerAddrs {
                server: range.server,
                tcp: &range.addr,
                rdma: range.rdma_addr.as_deref(),
            };
            io.add_server(to, &options, &dialer, pool.clone(), &hello)?;
        }
        let dialing = new_servers::Dialing {
            dialer,
            options,
            pool: pool.clone(),
            hello,
        };
        io.inbound.replicated = routing.ranges.iter().any(|r| r.chain.len() > 1);
        // Welcomed: from here on a lost scheduler is redialed, not the end of the job.
        io.rejoin = Some(rejoin::Rejoining {
            cluster: cluster.clone(),
            pool: pool.clone(),
            heartbeat: Some(heartbeat),
            me: crate::control::Rejoin {
                role: Role::Worker,
                node_id: info.node_id,
                rank: info.rank,
                num_servers: info.num_servers,
                num_workers: info.num_workers,
                addr: None,
                rdma_addr: None,
                routing: routing.clone(),
                tables: Vec::new(),
                ranges: Vec::new(),
                live_workers: Vec::new(),
                lost_workers: Vec::new(),
                clock: start_clock,
            },
            outage: None,
        });
        io.inbound.survives_scheduler = true;
        tracing::debug!(
            "worker {} connected to {} servers",
            info.rank,
            io.num_servers()
        );
        Ok(Worker {
            info,
            state: Mutex::new(State {
                io,
                routing,
                dialing,
                tables: HashMap::new(),
                // 0 from the start, a restored checkpoint's clock, or, for a worker that
                // joins a running job, where the servers count its clocks from.
                clock: start_clock,
                barrier_epoch: 0,
                finished: false,
                reducers: ReducerStats::default(),
            }),
            metrics: node_metrics,
            endpoint,
        })
    }

    /// Where this worker serves its metrics (`metrics_addr`, with the port picked for 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.endpoint.as_ref().map(ScrapeEndpoint::local_addr)
    }

    /// This worker's metric families (what its endpoint serves, when it has one).
    pub fn node_metrics(&self) -> &NodeMetrics {
        &self.metrics
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

    /// Number of workers in the job when this one was welcomed (for a worker that joined a
    /// running job: the live workers then, itself included).
    pub fn num_workers(&self) -> usize {
        self.info.num_workers as usize
    }

    /// The worker's state, routing by the newest routing the scheduler sent (after a failover;
    /// two loads otherwise).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        st.adopt_routing();
        st
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
        if let Some(r) = st.io.rejoin.as_mut() {
            r.me.tables.retain(|(t, _)| *t != id.0);
            r.me.tables.push((id.0, spec.clone()));
        }
        st.tables.insert(id.0, spec);
        Ok(id)
    }

    fn request_header(&self, st: &State, op: Opcode, table: TableId) -> Header {
        let mut h = Header::new(op);
        h.table = table.0.into();
        h.sender = self.info.node_id.into();
        h.clock = st.clock.into();
        h.routing_version = st.routing.version.into();
        h
    }

    /// Waits for a ticket. With replication, a request that a server's failure cut short is
    /// sent again under the new routing (see `failover`) and waited for instead.
    pub fn wait(&self, ticket: Ticket) -> Result<Completed, EngineError> {
        let resend = {
            let mut st = self.lock();
            let pending = st.io.inbound.outstanding.tickets.get_mut(&ticket.0);
            pending.and_then(|p| p.resend.take())
        };
        let seq = match &resend {
            Some((_, Resend::Push { seq, .. })) => Some(*seq),
            _ => None,
        };
        let done = match (self.wait_once(ticket.0), resend) {
            (Err(e), Some(resend)) => self.resend_after(e, resend),
            (done, _) => done,
        };
        if let Some(seq) = seq {
            self.finish_seq(seq);
        }
        done
    }

    /// Waits for ticket `id` as it is.
    fn wait_once(&self, id: u64) -> Result<Completed, EngineError> {
        let mut st = self.lock();
        st.io.drive_until(
            |inbound| inbound.outstanding.is_done(id) != Some(false),
            &mut None,
            None,
        )?;
        st.io.inbound.outstanding.take(id)
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
            .inbound
            .outstanding
            .is_done(ticket.0)
            .ok_or(EngineError::UnknownTicket(ticket.0))
    }

    /// Finishes the current clock: every server learns that this worker's pushes up to now are
    /// complete, which may release pulls other workers are waiting on.
    pub fn clock(&self) -> Result<u32, EngineError> {
        let mut st = self.lock();
        st.clock += 1;
        let clock = st.clock;
        if let Some(r) = st.io.rejoin.as_mut() {
            r.me.clock = clock;
        }
        let mut h = Header::new(Opcode::Clock);
        h.sender = self.info.node_id.into();
        h.clock = st.clock.into();
        h.routing_version = st.routing.version.into();
        for server in 0..st.io.num_servers() as u32 {
            match st
                .io
                .send(server, &mut FrameParts::header_only(h), &mut None)
            {
                // Out of the job: the servers left hold its ranges and hear this clock.
                Err(EngineError::ServerLost(_)) if st.io.inbound.replicated => {}
                other => other?,
            }
        }
        Ok(st.clock)
    }

    /// The clock this worker is in (the number of clocks it has finished; a job restored from
    /// a checkpoint starts at the clock the checkpoint was taken at).
    pub fn current_clock(&self) -> u32 {
        self.lock().clock
    }

    /// Waits until this worker's pushes are acknowledged, then until every live worker reaches
    /// a barrier. So while every live worker waits at one, no push is in flight: the tables are
    /// at a consistent point (where `ferrops ctl checkpoint` writes them).
    pub fn barrier(&self) -> Result<(), EngineError> {
        let mut st = self.lock();
        st.io.drive_until(
            |inbound| !inbound.outstanding.pushes_in_flight(),
            &mut None,
            None,
        )?;
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
        stats.changed_since.merge(&st.io.inbound.changed_since);
        stats
    }

    /// Byte counters of this worker.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.lock().io.inbound.metrics.snapshot()
    }

    /// How many of this worker's server connections are RDMA.
    pub fn rdma_connections(&self) -> usize {
        self.lock().io.rdma_servers()
    }

    /// How many of this worker's server connections are shared memory.
    pub fn shm_connections(&self) -> usize {
        self.lock().io.shm_servers()
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
            .drive_until(|inbound| inbound.outstanding.is_empty(), &mut None, None)?;
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

/// Runs a blocking request; if some servers no longer held its key list (the worker has then
/// forgotten it too), runs it once more for those servers (`Some(servers)`), now with the keys.
/// Pulls simply run again whole (`only` is ignored); pushes go only where they were not
/// applied, under the push's own sequence number (a server that had applied it drops it).
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
