//! Recovery: a scheduler started with `--recover` (on the lost one's address, with the same
//! secret) rebuilds the job from its nodes instead of assembling a new one.
//!
//! Nodes that lost their scheduler go on serving, pushing and pulling by the routing they
//! have, and redial its address; once this scheduler answers, each tells it who it is and what
//! it holds (`Control::Rejoin`). For `recover_wait`, or until every server of the newest
//! routing and every worker the servers still count have rejoined, the scheduler collects:
//!
//! - the routing with the highest version any node reports (servers report their own chains,
//!   so the newest one wins), its learners promoted where the learner reports its copy whole;
//! - the tables (by id), the members with their node ids and ranks (so new ids never collide
//!   with rejoined ones), the job's size;
//! - which workers the servers still count (the others were done before the outage).
//!
//! Everything else a node sends meanwhile (a barrier sent again, `Done`, a declaration, `ferrops
//! ctl`) waits and is handled once the job runs. Then servers of the routing that did not come
//! back are taken out of their chains as dead (as `failover` does), ranges short of R copies
//! get learners, and a routing with a version above every reported one is published, so that a
//! node that missed something is fenced and refreshed. Workers the servers count that did not
//! come back count as lost (the job goes on and fails at its end, as for any dead worker).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ferrops_net::{CloseReason, Io, PeerId};

use super::{membership, Node, Phase, Scheduler, TableState};
use crate::control::{reply_control, Control, Rejoin, Role};
use crate::routing::RoutingTable;
use crate::table::TableSpec;

/// Most messages kept for when the job runs again (a node waits on each of its own).
const MAX_DEFERRED: usize = 1 << 16;

/// What the rejoining nodes reported so far.
#[derive(Debug)]
pub(super) struct Recovering {
    deadline: Instant,
    routing: Option<RoutingTable>,
    tables: BTreeMap<u32, TableSpec>,
    /// Per server rank: the ranges it holds whole.
    whole: BTreeMap<u32, BTreeSet<u32>>,
    /// Worker node ids some server still counts, and those some server was told were lost.
    counted: BTreeSet<u32>,
    lost: BTreeSet<u32>,
    /// The job's size, as the nodes were welcomed to it.
    size: (u32, u32),
    /// Messages that wait for the job to run again.
    deferred: Vec<(PeerId, Control)>,
}

impl Recovering {
    pub(super) fn new(wait: Duration) -> Recovering {
        Recovering {
            deadline: Instant::now() + wait,
            routing: None,
            tables: BTreeMap::new(),
            whole: BTreeMap::new(),
            counted: BTreeSet::new(),
            lost: BTreeSet::new(),
            size: (0, 0),
            deferred: Vec::new(),
        }
    }
}

impl Scheduler {
    /// A message while recovering: a rejoin is taken, a heartbeat answered, the rest waits.
    /// Returns the message back when the job runs (it is handled as usual).
    pub(super) fn while_recovering(
        &mut self,
        peer: PeerId,
        msg: Control,
        io: &mut Io<'_>,
    ) -> Option<Control> {
        let recovering = self.phase == Phase::Recovering;
        if !recovering && !matches!(msg, Control::Rejoin(_)) {
            return Some(msg);
        }
        match (msg, recovering) {
            (Control::Rejoin(r), true) => self.rejoin(peer, *r, io),
            (Control::Rejoin(r), false) => {
                let reason = format!(
                    "{} {} rejoined a scheduler that is not recovering (not started with \
                     --recover, or its recovery wait is over): it was taken for dead",
                    r.role, r.rank
                );
                tracing::warn!("{reason}");
                reply_control(io, peer, &Control::Shutdown { ok: false, reason });
                io.close(peer, CloseReason::Local);
            }
            (Control::Heartbeat, true) => {
                if self.nodes.contains_key(&peer) {
                    reply_control(io, peer, &Control::HeartbeatAck);
                }
            }
            (msg, true) => match self.recovering.as_mut() {
                Some(r) if r.deferred.len() < MAX_DEFERRED => r.deferred.push((peer, msg)),
                _ => {
                    let reason = "the scheduler is recovering the job: ask again".to_string();
                    reply_control(io, peer, &Control::Refused { reason });
                }
            },
            (msg, false) => return Some(msg),
        }
        None
    }

    /// Node `peer` rejoins with what it holds.
    fn rejoin(&mut self, peer: PeerId, r: Rejoin, io: &mut Io<'_>) {
        let proved = io
            .identity(peer)
            .and_then(|id| Role::from_wire_index(id.role));
        let taken = self
            .nodes
            .values()
            .any(|n| n.role == r.role && n.rank == r.rank);
        let refusal = if proved != Some(r.role) {
            Some(format!(
                "this connection did not authenticate as a {}",
                r.role
            ))
        } else if !matches!(r.role, Role::Server | Role::Worker) {
            Some(format!("a {} cannot rejoin", r.role))
        } else if r.role == Role::Server && r.addr.is_none() {
            Some("a server must give its address".to_string())
        } else if self.nodes.contains_key(&peer) || taken {
            Some(format!("{} {} has already rejoined", r.role, r.rank))
        } else if r.node_id != membership::node_id(r.role, r.rank) {
            Some(format!(
                "node id {} is not {} {}'s",
                r.node_id, r.role, r.rank
            ))
        } else {
            r.validate().err()
        };
        if let Some(reason) = refusal {
            tracing::warn!("refusing a rejoin: {reason}");
            return reply_control(io, peer, &Control::Refused { reason });
        }
        let Some(rec) = self.recovering.as_mut() else {
            return;
        };
        if rec
            .routing
            .as_ref()
            .is_none_or(|t| t.version < r.routing.version)
        {
            rec.routing = Some(r.routing.clone());
        }
        for (id, spec) in r.tables {
            rec.tables.entry(id).or_insert(spec);
        }
        rec.size = (rec.size.0.max(r.num_servers), rec.size.1.max(r.num_workers));
        self.nodes.insert(
            peer,
            Node {
                role: r.role,
                node_id: r.node_id,
                rank: r.rank,
            },
        );
        if r.role == Role::Server {
            rec.whole.insert(r.rank, r.ranges.into_iter().collect());
            rec.counted.extend(r.live_workers);
            rec.lost.extend(r.lost_workers);
            let addr = r.addr.unwrap_or_default();
            tracing::info!(
                "server {} rejoined at {addr} (routing version {})",
                r.rank,
                r.routing.version
            );
            self.servers.push((peer, addr));
            self.server_rdma_addrs.push(r.rdma_addr);
            self.ready.insert(peer);
        } else {
            tracing::info!("worker {} rejoined at clock {}", r.rank, r.clock);
            self.workers.push(peer);
            self.live_workers.insert(peer);
        }
        self.detector.watch(peer, Instant::now());
        if self.everyone_rejoined() {
            self.finish_recovery(io);
        }
    }

    /// Whether every server of the newest routing and every worker the servers count is back.
    fn everyone_rejoined(&self) -> bool {
        let Some(rec) = &self.recovering else {
            return false;
        };
        let Some(routing) = &rec.routing else {
            return false;
        };
        let ranks: BTreeSet<u32> = routing
            .ranges
            .iter()
            .flat_map(|r| r.chain.clone())
            .collect();
        let back = |role: Role, ids: &BTreeSet<u32>| {
            ids.iter().all(|&id| {
                self.nodes
                    .values()
                    .any(|n| n.role == role && n.node_id == id)
            })
        };
        let server_ids = ranks
            .iter()
            .map(|&r| membership::node_id(Role::Server, r))
            .collect();
        back(Role::Server, &server_ids) && back(Role::Worker, &rec.counted)
    }

    /// On each tick: the wait is over once `recover_wait` has passed.
    pub(super) fn check_recovery(&mut self, io: &mut Io<'_>) {
        if self
            .recovering
            .as_ref()
            .is_some_and(|r| self.phase == Phase::Recovering && Instant::now() >= r.deadline)
        {
            self.finish_recovery(io);
        }
    }

    /// Rebuilds the job from the reports and runs it again.
    fn finish_recovery(&mut self, io: &mut Io<'_>) {
        let Some(rec) = self.recovering.take() else {
            return;
        };
        let Some(mut routing) = rec.routing else {
            let why = "no server rejoined the job within the recovery wait".to_string();
            tracing::error!("{why}");
            self.phase = Phase::Running;
            return self.shutdown(false, why, io);
        };
        if rec.size.0 > 0 {
            self.num_servers = rec.size.0 as usize;
        }
        if rec.size.1 > 0 {
            self.num_workers = rec.size.1 as usize;
        }
        // The job's replication is its chains' length (whatever this scheduler was given).
        let longest = routing.ranges.iter().map(|r| r.chain.len()).max();
        self.replication = self.replication.max(longest.unwrap_or(1));
        // Learners whose copy is whole count as copies.
        for (i, range) in routing.ranges.iter_mut().enumerate() {
            if let Some(l) = range.learner {
                if rec.whole.get(&l).is_some_and(|w| w.contains(&(i as u32))) {
                    tracing::info!("range {i}: server {l} holds a copy");
                    range.learner = None;
                }
            }
        }
        self.routing = routing.clone();
        let back: BTreeSet<u32> = self
            .nodes
            .values()
            .filter(|n| n.role == Role::Server)
            .map(|n| n.rank)
            .collect();
        let missing: BTreeSet<u32> = routing
            .ranges
            .iter()
            .flat_map(|r| r.chain.clone())
            .filter(|r| !back.contains(r))
            .collect();
        for rank in missing {
            let name = format!("server {rank}");
            tracing::warn!("{name} did not rejoin: it is taken for dead");
            if let Err(why) = self.take_out_of_chains(&mut routing, rank, &name) {
                tracing::error!("{why}");
                self.phase = Phase::Running;
                return self.shutdown(false, why, io);
            }
            self.summary.servers_lost += 1;
            self.failovers.inc();
        }
        self.rebuild_tables(rec.tables);
        self.count_absent_workers(&rec.counted, &rec.lost);
        self.phase = Phase::Running;
        self.plan_copies(&mut routing);
        routing.version += 1;
        tracing::info!(
            "recovered the job: {} servers, {} live workers, {} tables; routing version {} \
             (chains {:?})",
            self.servers.len(),
            self.live_workers.len(),
            self.tables.len(),
            routing.version,
            routing.ranges.iter().map(|r| &r.chain).collect::<Vec<_>>()
        );
        let workers = self.worker_ids(self.live_workers.iter().copied());
        for (server, _) in self.servers.clone() {
            let live = Control::LiveWorkers {
                workers: workers.clone(),
                lost: self.membership.lost.clone(),
            };
            reply_control(io, server, &live);
        }
        self.publish(routing, io);
        for (peer, msg) in rec.deferred {
            if self.stop.is_some() {
                return;
            }
            self.handle(peer, msg, io);
        }
        if self.stop.is_none() && self.no_worker_left() {
            let reason = format!(
                "{} workers done, {} lost",
                self.summary.workers_done, self.summary.workers_lost
            );
            let ok = self.summary.workers_lost == 0;
            self.shutdown(ok, reason, io);
        }
    }

    /// The tables by id, as the nodes reported them (an id nobody reported was refused and
    /// dropped: it stays refused).
    fn rebuild_tables(&mut self, reported: BTreeMap<u32, TableSpec>) {
        let Some(last) = reported.keys().next_back().copied() else {
            return;
        };
        let Some(any) = reported.values().next().cloned() else {
            return;
        };
        self.tables = (0..=last)
            .map(|id| {
                let spec = reported.get(&id).cloned();
                TableState {
                    refused: spec
                        .is_none()
                        .then(|| format!("table {id} was refused before the recovery")),
                    spec: spec.unwrap_or_else(|| any.clone()),
                    created_on: self.servers.len(),
                    waiting: Vec::new(),
                    restored: false,
                }
            })
            .collect();
    }

    /// Workers that did not rejoin: those the servers still count are lost (as a dead worker
    /// is: the job fails at its end), as are those the servers were told were lost; the others
    /// were done before the outage. Rejoined workers' ranks are taken, so a worker joining
    /// later gets a new one.
    fn count_absent_workers(&mut self, counted: &BTreeSet<u32>, lost_before: &BTreeSet<u32>) {
        let back: BTreeSet<u32> = self
            .worker_ids(self.workers.iter().copied())
            .into_iter()
            .collect();
        for id in counted.difference(&back) {
            tracing::warn!(
                "worker {} did not rejoin: it is lost (the job goes on, and fails at its end)",
                id - membership::WORKER_NODE_BASE
            );
        }
        let gone: BTreeSet<u32> = counted.union(lost_before).copied().collect();
        let lost_ids: Vec<u32> = gone.difference(&back).copied().collect();
        let lost = lost_ids.len();
        self.membership.lost = lost_ids;
        let known = back.union(&gone).count();
        let done = self.num_workers.saturating_sub(known);
        self.summary.workers_lost += lost;
        self.summary.workers_done += done;
        self.membership.gone_before = lost + done;
        let highest = back
            .iter()
            .chain(&gone)
            .map(|id| id - membership::WORKER_NODE_BASE + 1)
            .max()
            .unwrap_or(0);
        self.membership.joined = highest.saturating_sub(self.num_workers as u32);
    }
}
