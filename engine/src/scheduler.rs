//! The scheduler role: admits servers and workers, hands out ranks and the routing table,
//! creates tables on every server, runs barriers, tracks which workers are live, and shuts the
//! job down when the workers are done.
//!
//! Beside it: `liveness` (heartbeat answers, what a node's death means, slots freed before the
//! start), `failover` (a dead server that replication covers: new chains, new routing),
//! `startup` (the deadline for the job to assemble), `checkpoint` (collective checkpoints
//! and restoring a job from one), `rereplicate` (chains brought back to R copies by
//! learners, spares joining the running job, routings published learners first),
//! `membership` (node ids, workers joining a running job, when the job is over), `survey`
//! (asking every server what it holds and counted) and `ctl` (what `ferrops ctl` asks:
//! status, a checkpoint at the next barrier) and `recover` (a scheduler started with
//! `--recover` rebuilding a job whose scheduler was lost from the nodes that rejoin it).

mod checkpoint;
mod ctl;
mod failover;
mod liveness;
mod membership;
mod rebalance;
mod recover;
mod rereplicate;
mod startup;
mod survey;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use ferrops_net::{CloseReason, EventLoop, Frame, Handler, Io, Metrics, Opcode, PeerId};

use crate::config::{LivenessConfig, SchedulerConfig};
use crate::control::{reply_control, Control, Role};
use crate::liveness::Detector;
use crate::routing::RoutingTable;
use crate::table::{TableId, TableSpec};
use crate::EngineError;

#[derive(Debug, Clone)]
struct Node {
    role: Role,
    node_id: u32,
    rank: u32,
}

#[derive(Debug)]
struct TableState {
    spec: TableSpec,
    created_on: usize,
    waiting: Vec<PeerId>,
    /// Why a server could not create it; declaring it again gets the same answer.
    refused: Option<String>,
    /// Created from the checkpoint the job restores (a server that cannot load it ends the job).
    restored: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Started with `--recover`: waiting for the lost scheduler's nodes to rejoin.
    Recovering,
    Registering,
    WelcomingServers,
    Running,
}

/// How the job ended, as seen by the scheduler.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    pub workers_done: usize,
    pub workers_lost: usize,
    /// Servers that died while replication kept the job going.
    pub servers_lost: usize,
    pub tables: usize,
}

struct Scheduler {
    /// Server deaths replication covered (`ferrops_failovers_total`).
    failovers: prometheus_client::metrics::counter::Counter,
    num_servers: usize,
    /// Copies of each range (the chain's length) and shards per server process.
    replication: usize,
    shards: usize,
    num_workers: usize,
    phase: Phase,
    servers: Vec<(PeerId, String)>,
    /// RDMA listener address of each server in `servers`, if it has one.
    server_rdma_addrs: Vec<Option<String>>,
    workers: Vec<PeerId>,
    nodes: HashMap<PeerId, Node>,
    /// Servers that answered their welcome with `Ready`.
    ready: BTreeSet<PeerId>,
    routing: RoutingTable,
    tables: Vec<TableState>,
    barrier: BTreeSet<PeerId>,
    barrier_epoch: u64,
    live_workers: BTreeSet<PeerId>,
    summary: JobSummary,
    stop: Option<Result<(), EngineError>>,
    liveness: LivenessConfig,
    /// Which registered nodes are silent or gone.
    detector: Detector<PeerId>,
    /// When the scheduler started listening: the start-up deadline counts from here.
    started: Instant,
    /// The checkpoint being taken, if any.
    checkpoint: Option<checkpoint::Collective>,
    /// Checkpoint write attempts made so far (the next one's number).
    checkpoint_attempts: u32,
    /// The checkpoint the job starts from, if any (read and checked before listening).
    restore: Option<checkpoint::Restore>,
    /// A routing sent to its learners only, and the learners that have not adopted it yet.
    awaiting: Option<(u32, BTreeSet<PeerId>)>,
    /// Ranges moving to another server (a join's share, a drain), and servers draining.
    moves: rebalance::Moves,
    /// Workers joining the running job; when nodes were last heard from.
    membership: membership::Membership,
    /// Questions to every server in progress.
    surveys: survey::Surveys,
    /// The checkpoint `ferrops ctl checkpoint` asked for, waiting for a barrier.
    ctl_checkpoint: Option<ctl::CtlCheckpoint>,
    /// What rejoining nodes reported, while recovering.
    recovering: Option<recover::Recovering>,
}

/// Runs the scheduler; `announce` is called once with the address it listens on.
pub fn run_scheduler(
    cfg: &SchedulerConfig,
    announce: impl FnOnce(SocketAddr),
) -> Result<JobSummary, EngineError> {
    let sized = cfg.cluster.num_servers > 0 && cfg.cluster.num_workers > 0;
    if cfg.recover.is_none() && !sized {
        return Err(EngineError::Config(format!(
            "a job needs at least one server and one worker (got {} and {})",
            cfg.cluster.num_servers, cfg.cluster.num_workers
        )));
    }
    if sized {
        cfg.cluster
            .validate_replication()
            .map_err(EngineError::Config)?;
    }
    let liveness = cfg.cluster.liveness;
    liveness.validate().map_err(EngineError::Config)?;
    // A corrupt checkpoint is refused, naming the file, before anything listens.
    let restore = match &cfg.restore {
        Some(dir) => Some(checkpoint::Restore {
            manifest: crate::checkpoint::verify(dir)?,
            dir: dir.clone(),
        }),
        None => None,
    };
    cfg.cluster.warn_if_insecure(Role::Scheduler);
    let creds = cfg.cluster.credentials(Role::Scheduler, Some(0));
    let budget = ferrops_net::Budget::new(cfg.cluster.budgets);
    let (bind, limits) = (Some(cfg.bind), cfg.cluster.limits);
    let net = Metrics::new();
    let mut ev = EventLoop::with_budget(bind, limits, net.clone(), creds, budget)?;
    ev.set_handshake_timeout(cfg.cluster.handshake_timeout);
    ev.set_tick(crate::liveness::tick(&liveness));
    // Membership, clocks and barriers are not worth a core: the scheduler sleeps at once.
    ev.set_busy_poll(std::time::Duration::ZERO);
    ev.set_payload_crc(cfg.cluster.payload_checksum);
    // Connections only: the scheduler sees no pushes or pulls.
    let metrics = crate::metrics::NodeMetrics::new(Role::Scheduler);
    metrics.track_net(&net);
    let _endpoint = metrics.serve_if(cfg.cluster.metrics_addr)?;
    let addr = ev
        .local_addr()
        .ok_or_else(|| EngineError::Config("scheduler has no listen address".into()))?;
    tracing::info!(
        "scheduler listening on {addr}, waiting for {} servers ({} shards each) and {} workers",
        cfg.cluster.num_servers,
        cfg.cluster.server_shards.max(1),
        cfg.cluster.num_workers
    );
    if let Some(wait) = cfg.recover {
        let wait = crate::liveness::secs(wait);
        tracing::info!("recovering the job: waiting up to {wait} for its nodes to rejoin");
    }
    announce(addr);
    let now = Instant::now();
    let mut s = Scheduler {
        num_servers: cfg.cluster.total_shards(),
        replication: cfg.cluster.replication,
        shards: cfg.cluster.server_shards.max(1),
        num_workers: cfg.cluster.num_workers,
        phase: match cfg.recover {
            Some(_) => Phase::Recovering,
            None => Phase::Registering,
        },
        servers: Vec::new(),
        server_rdma_addrs: Vec::new(),
        workers: Vec::new(),
        nodes: HashMap::new(),
        ready: BTreeSet::new(),
        routing: RoutingTable::default(),
        tables: Vec::new(),
        barrier: BTreeSet::new(),
        barrier_epoch: 0,
        live_workers: BTreeSet::new(),
        summary: JobSummary::default(),
        stop: None,
        liveness,
        detector: Detector::new(&liveness, now),
        started: now,
        checkpoint: None,
        checkpoint_attempts: 0,
        restore,
        awaiting: None,
        moves: rebalance::Moves::default(),
        failovers: metrics.families().failovers.clone(),
        membership: membership::Membership::default(),
        surveys: survey::Surveys::default(),
        ctl_checkpoint: None,
        recovering: cfg.recover.map(recover::Recovering::new),
    };
    ev.run(&mut s)?;
    s.summary.tables = s.tables.len();
    match s.stop.take() {
        Some(Err(e)) => Err(e),
        _ => Ok(s.summary),
    }
}

impl Scheduler {
    fn worker_ids(&self, peers: impl Iterator<Item = PeerId>) -> Vec<u32> {
        peers
            .filter_map(|p| self.nodes.get(&p).map(|n| n.node_id))
            .collect()
    }

    /// The rank a registering `role` gets: the one it asks for, or the lowest free one.
    fn rank_for(&self, role: Role, asked: Option<u32>) -> Result<u32, String> {
        let count = match role {
            Role::Server => self.num_servers,
            Role::Worker => self.num_workers,
            Role::Scheduler | Role::Ctl => {
                return Err(format!("a {role} cannot register with a scheduler"))
            }
        };
        let taken = |rank: u32| {
            self.nodes
                .values()
                .any(|n| n.role == role && n.rank == rank)
        };
        let name = role.name();
        match asked {
            Some(rank) if rank as usize >= count => Err(format!(
                "there is no {name} {rank}: the job has {count} {name}s"
            )),
            Some(rank) if taken(rank) => Err(format!("{name} {rank} has already registered")),
            Some(rank) => Ok(rank),
            None => (0..count as u32)
                .find(|&rank| !taken(rank))
                .ok_or_else(|| format!("the job already has all its {count} {name}s")),
        }
    }

    fn register(
        &mut self,
        peer: PeerId,
        role: Role,
        addr: Option<String>,
        rdma_addr: Option<String>,
        asked: Option<u32>,
        io: &mut Io<'_>,
    ) {
        let proved = io
            .identity(peer)
            .and_then(|id| Role::from_wire_index(id.role));
        if proved != Some(role) {
            let reason = format!(
                "this connection authenticated as {}, it cannot register as a {role}",
                proved.map_or("nothing", Role::name)
            );
            tracing::warn!("refusing registration of peer {peer}: {reason}");
            reply_control(io, peer, &Control::Refused { reason });
            return;
        }
        if self.nodes.contains_key(&peer) {
            let reason = "this connection has already registered".to_string();
            reply_control(io, peer, &Control::Refused { reason });
            return;
        }
        if let (Role::Server, Some(addr), Phase::Running) = (role, &addr, &self.phase) {
            if self.replication > 1 {
                return self.admit_spare(peer, addr.clone(), rdma_addr, asked, io);
            }
        }
        if self.phase != Phase::Registering {
            return self.register_late(peer, role, asked, io);
        }
        if role == Role::Server && addr.is_none() {
            let reason = "a server must give its address".to_string();
            reply_control(io, peer, &Control::Refused { reason });
            return;
        }
        let rank = match self.rank_for(role, asked) {
            Ok(rank) => rank,
            Err(reason) => {
                reply_control(io, peer, &Control::Refused { reason });
                return;
            }
        };
        let node_id = membership::node_id(role, rank);
        self.nodes.insert(
            peer,
            Node {
                role,
                node_id,
                rank,
            },
        );
        match (role, addr) {
            (Role::Server, Some(addr)) => {
                match &rdma_addr {
                    Some(rdma) => {
                        tracing::info!("server {rank} registered at {addr} (RDMA {rdma})")
                    }
                    None => tracing::info!("server {rank} registered at {addr}"),
                }
                self.servers.push((peer, addr));
                self.server_rdma_addrs.push(rdma_addr);
            }
            _ => {
                tracing::info!("worker {rank} registered");
                self.workers.push(peer);
                self.live_workers.insert(peer);
            }
        }
        self.detector.watch(peer, Instant::now());
        if self.servers.len() == self.num_servers && self.workers.len() == self.num_workers {
            self.welcome_servers(io);
        }
    }

    /// Puts the servers (with their RDMA addresses) and the workers in rank order: they
    /// registered in any order, the routing table gives range i to server rank i.
    fn order_by_rank(&mut self) {
        let rank = |peer: &PeerId| self.nodes[peer].rank;
        let mut servers: Vec<_> = self
            .servers
            .drain(..)
            .zip(self.server_rdma_addrs.drain(..))
            .collect();
        servers.sort_by_key(|((peer, _), _)| rank(peer));
        (self.servers, self.server_rdma_addrs) = servers.into_iter().unzip();
        let mut workers = std::mem::take(&mut self.workers);
        workers.sort_by_key(rank);
        self.workers = workers;
    }

    fn welcome_servers(&mut self, io: &mut Io<'_>) {
        self.order_by_rank();
        let addrs: Vec<String> = self.servers.iter().map(|(_, a)| a.clone()).collect();
        self.routing = RoutingTable::chained(1, &addrs, self.replication, self.shards)
            .with_rdma_addrs(&self.server_rdma_addrs);
        if self.replication > 1 {
            for (i, r) in self.routing.ranges.iter().enumerate() {
                tracing::info!("range {i}: chain {:?} (head first)", r.chain);
            }
        }
        let workers = self.worker_ids(self.workers.iter().copied());
        for (peer, _) in self.servers.clone() {
            let node = self.nodes[&peer].clone();
            let welcome = self.welcome(&node, workers.clone());
            reply_control(io, peer, &welcome);
        }
        self.phase = Phase::WelcomingServers;
        self.restore_tables(io);
    }

    fn welcome(&self, node: &Node, workers: Vec<u32>) -> Control {
        Control::Welcome {
            node_id: node.node_id,
            rank: node.rank,
            num_servers: self.num_servers as u32,
            num_workers: self.num_workers as u32,
            routing: self.routing.clone(),
            workers,
            start_clock: self.restore.as_ref().map_or(0, |r| r.manifest.clock),
        }
    }

    fn server_ready(&mut self, peer: PeerId, io: &mut Io<'_>) {
        self.ready.insert(peer);
        if self.phase == Phase::Running {
            return self.spare_ready(io);
        }
        if self.ready.len() < self.num_servers || self.phase != Phase::WelcomingServers {
            return;
        }
        self.phase = Phase::Running;
        tracing::info!(
            "all {} servers ready; releasing {} workers",
            self.num_servers,
            self.num_workers
        );
        for peer in self.workers.clone() {
            let node = self.nodes[&peer].clone();
            let welcome = self.welcome(&node, Vec::new());
            reply_control(io, peer, &welcome);
        }
        self.admit_next_worker(io);
    }

    fn declare_table(&mut self, peer: PeerId, spec: TableSpec, io: &mut Io<'_>) {
        if let Err(reason) = spec.validate() {
            reply_control(io, peer, &Control::Refused { reason });
            return;
        }
        if let Some(id) = self.tables.iter().position(|t| t.spec.name == spec.name) {
            let table = &mut self.tables[id];
            if let Some(reason) = &table.refused {
                let reason = reason.clone();
                reply_control(io, peer, &Control::Refused { reason });
            } else if table.spec != spec {
                let reason = format!(
                    "table `{}` was declared as {:?}, not {:?}",
                    spec.name, table.spec, spec
                );
                reply_control(io, peer, &Control::Refused { reason });
            } else if table.created_on >= self.servers.len() {
                let ready = Control::TableReady {
                    id: TableId(id as u32),
                    spec,
                };
                reply_control(io, peer, &ready);
            } else {
                table.waiting.push(peer);
            }
            return;
        }
        let id = TableId(self.tables.len() as u32);
        for (server, _) in self.servers.clone() {
            reply_control(
                io,
                server,
                &Control::TableReady {
                    id,
                    spec: spec.clone(),
                },
            );
        }
        self.tables.push(TableState {
            spec,
            created_on: 0,
            waiting: vec![peer],
            refused: None,
            restored: false,
        });
    }

    /// A server cannot hold a table: whoever declared it is told why, and the servers that
    /// created it drop it. The job goes on.
    fn table_refused(&mut self, id: TableId, reason: String, io: &mut Io<'_>) {
        let Some(table) = self.tables.get_mut(id.0 as usize) else {
            return;
        };
        if table.refused.is_some() {
            return;
        }
        let reason = format!("table `{}` cannot be created: {reason}", table.spec.name);
        if table.restored {
            return self.shutdown(
                false,
                format!("restoring the checkpoint failed: {reason}"),
                io,
            );
        }
        tracing::warn!("{reason}");
        table.refused = Some(reason.clone());
        for peer in std::mem::take(&mut table.waiting) {
            reply_control(
                io,
                peer,
                &Control::Refused {
                    reason: reason.clone(),
                },
            );
        }
        for (server, _) in self.servers.clone() {
            reply_control(io, server, &Control::DropTable { id });
        }
    }

    fn table_created(&mut self, id: TableId, io: &mut Io<'_>) {
        let Some(table) = self.tables.get_mut(id.0 as usize) else {
            return;
        };
        table.created_on += 1;
        if table.created_on == self.servers.len() && table.refused.is_none() {
            let ready = Control::TableReady {
                id,
                spec: table.spec.clone(),
            };
            for peer in std::mem::take(&mut table.waiting) {
                reply_control(io, peer, &ready);
            }
        }
    }

    fn enter_barrier(&mut self, peer: PeerId, epoch: u64, io: &mut Io<'_>) {
        self.barrier_epoch = epoch;
        self.barrier.insert(peer);
        tracing::debug!(
            "{} waits at the barrier ({} of {} live workers)",
            self.name_of(peer),
            self.barrier.len(),
            self.live_workers.len()
        );
        self.maybe_release_barrier(io);
    }

    fn maybe_release_barrier(&mut self, io: &mut Io<'_>) {
        if self.barrier.is_empty() || !self.live_workers.is_subset(&self.barrier) {
            return;
        }
        if self.hold_barrier_for_ctl(io) {
            return;
        }
        let epoch = self.barrier_epoch;
        for peer in std::mem::take(&mut self.barrier) {
            if self.live_workers.contains(&peer) {
                reply_control(io, peer, &Control::BarrierReleased { epoch });
            }
        }
        self.admit_next_worker(io);
    }

    pub(super) fn shutdown(&mut self, ok: bool, reason: String, io: &mut Io<'_>) {
        tracing::info!("shutting the job down: {reason}");
        self.ctl_checkpoint_abandoned(&reason, io);
        let msg = Control::Shutdown {
            ok,
            reason: reason.clone(),
        };
        let peers: Vec<PeerId> = self.nodes.keys().copied().collect();
        for peer in peers {
            reply_control(io, peer, &msg);
            io.close(peer, CloseReason::Local);
        }
        self.stop = Some(if ok {
            Ok(())
        } else {
            Err(EngineError::Shutdown(reason))
        });
    }

    /// Handles one decoded message from `peer`.
    fn handle(&mut self, peer: PeerId, msg: Control, io: &mut Io<'_>) {
        let role = self.nodes.get(&peer).map(|n| n.role);
        match (msg, role) {
            // Only registered nodes are watched, and answered.
            (Control::Heartbeat, Some(_)) => reply_control(io, peer, &Control::HeartbeatAck),
            (Control::Heartbeat, None) => {}
            (
                Control::Register {
                    role,
                    addr,
                    rdma_addr,
                    rank,
                },
                _,
            ) => self.register(peer, role, addr, rdma_addr, rank, io),
            (Control::Ready, Some(Role::Server)) => self.server_ready(peer, io),
            (Control::TableCreated { id }, Some(Role::Server)) => self.table_created(id, io),
            (Control::RoutingAdopted { version }, Some(Role::Server)) => {
                self.routing_adopted(peer, version, io)
            }
            (Control::RangeCopied { range, .. }, Some(Role::Server)) => {
                self.range_copied(peer, range, io)
            }
            (Control::DrainMe, Some(Role::Server)) => {
                let rank = self.nodes[&peer].rank;
                self.drain(rank, Some(peer), io)
            }
            (Control::TableRefused { id, reason }, Some(Role::Server)) => {
                self.table_refused(id, reason, io)
            }
            (Control::DeclareTable { spec }, Some(Role::Worker)) => {
                self.declare_table(peer, spec, io)
            }
            (Control::Barrier { epoch }, Some(Role::Worker)) => self.enter_barrier(peer, epoch, io),
            (Control::Checkpoint { dir, clock }, Some(Role::Worker)) => {
                self.checkpoint_asked(peer, dir, clock, io)
            }
            (Control::CheckpointWritten { attempt, result }, Some(Role::Server)) => {
                self.checkpoint_written(attempt, result, io)
            }
            (Control::Summary { id, summary }, Some(Role::Server)) => {
                self.summary_received(peer, id, summary, io)
            }
            (
                msg @ (Control::StatusRequest
                | Control::CtlCheckpoint { .. }
                | Control::CtlDrain { .. }),
                None,
            ) => self.ctl_request(peer, msg, io),
            (Control::Done, Some(Role::Worker)) => {
                self.summary.workers_done += 1;
                // A worker that is done may linger or stop: it is no longer watched.
                self.detector.forget(peer);
                self.retire_worker(peer, io);
            }
            (other, role) => {
                let reason = format!("{other:?} is not expected from a {role:?}");
                reply_control(io, peer, &Control::Refused { reason });
            }
        }
    }
}

impl Handler for Scheduler {
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        if frame.opcode() != Opcode::Control {
            let msg = "the scheduler only accepts control frames";
            io.send_error(
                peer,
                Some(&frame.header),
                ferrops_net::Status::BadRequest,
                msg,
            );
            return;
        }
        let msg = match Control::decode(frame.extra()) {
            Ok(m) => m,
            Err(e) => {
                let text = format!("undecodable control message: {e}");
                io.send_error(
                    peer,
                    Some(&frame.header),
                    ferrops_net::Status::BadFrame,
                    &text,
                );
                io.close(peer, CloseReason::Error(text));
                return;
            }
        };
        self.heard_from(peer);
        if let Some(msg) = self.while_recovering(peer, msg, io) {
            self.handle(peer, msg, io);
        }
    }

    fn on_close(&mut self, peer: PeerId, reason: &CloseReason, io: &mut Io<'_>) {
        if self.stop.is_some() {
            return;
        }
        let how = match reason {
            CloseReason::PeerClosed => "closed".to_string(),
            CloseReason::Local => "was closed by the scheduler".to_string(),
            CloseReason::Error(e) => format!("failed: {e}"),
        };
        match self.detector.disconnected(peer, how) {
            Some(death) => self.on_death(death, io),
            // Not watched: never registered, or a worker that was done.
            None => {
                self.nodes.remove(&peer);
            }
        }
    }

    /// Ends the start-up that missed its deadline, and acts on nodes that went silent.
    fn on_tick(&mut self, io: &mut Io<'_>) {
        if self.stop.is_some() {
            return;
        }
        self.check_recovery(io);
        self.check_startup(io);
        for death in self.detector.look(Instant::now()) {
            if self.stop.is_some() {
                return;
            }
            self.on_death(death, io);
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.is_some()
    }
}
