//! A server that lost the scheduler: it goes on serving pushes and pulls by the routing it
//! has (what needs the scheduler — new tables, routings, checkpoints — waits), redials it on
//! its ticks (`crate::reconnect`, the backoff keeps the loop serving in between), and once one
//! answers restarts its heartbeats and tells it what it holds (`Control::Rejoin`): a scheduler
//! started with `--recover` rebuilds the job from these reports.

use std::time::Instant;

use ferrops_net::{BufferPool, CloseReason, Io, Metrics, PeerId};

use super::Server;
use crate::config::ClusterConfig;
use crate::control::{reply_control, Control, Rejoin, Role};
use crate::liveness::Heartbeat;
use crate::reconnect::Outage;
use crate::EngineError;

/// No connection: where the scheduler's is kept while it is lost (so that nothing meant for
/// the scheduler reaches a connection that took its slot).
const NO_SCHEDULER: PeerId = PeerId::MAX;

/// What a server needs to find the scheduler again.
pub(super) struct Rejoining {
    pub cluster: ClusterConfig,
    pub pool: BufferPool,
    pub metrics: Metrics,
    /// The addresses it registered with (for workers, and its RDMA listener's).
    pub addr: String,
    pub rdma_addr: Option<String>,
    /// Heartbeats on the current scheduler connection.
    pub heartbeat: Option<Heartbeat>,
    /// The job's size as the welcome gave it (servers in shards, workers).
    pub job_size: (u32, u32),
    /// The workers the scheduler said were lost (`LiveWorkers`).
    pub lost_workers: Vec<u32>,
    pub outage: Option<Outage>,
}

impl Server {
    /// The scheduler's connection closed: once welcomed, the server goes on and redials it;
    /// before, it stops as it always did.
    pub(super) fn scheduler_lost(&mut self, reason: &CloseReason) {
        self.scheduler = NO_SCHEDULER;
        self.rejoin.heartbeat = None;
        if self.rank.is_none() {
            tracing::error!("scheduler connection closed: {reason:?}");
            self.stop = Some(Err(EngineError::SchedulerLost));
            return;
        }
        tracing::warn!(
            "scheduler connection closed ({reason:?}); serving on with routing version {} and \
             redialing it",
            self.routing.version
        );
        self.rejoin.outage = Some(Outage::new(self.rejoin.cluster.liveness.scheduler_outage));
    }

    /// Dials the scheduler if the backoff allows; once connected, rejoins.
    pub(super) fn redial_scheduler(&mut self, io: &mut Io<'_>) {
        let r = &mut self.rejoin;
        let Some(outage) = r.outage.as_mut() else {
            return;
        };
        let dialed = outage.redial(&r.cluster, Role::Server, &r.pool, &r.metrics);
        let down_for = outage.down_for();
        let (mut peer, identity) = match dialed {
            Ok(Some(conn)) => conn,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("{e}");
                self.stop = Some(Err(e));
                return;
            }
        };
        let liveness = r.cluster.liveness;
        let started = peer
            .share_writes(liveness.heartbeat_timeout)
            .map_err(EngineError::from)
            .and_then(|writer| {
                Heartbeat::start(
                    writer,
                    liveness.heartbeat_interval,
                    r.cluster.payload_checksum,
                )
            });
        let heartbeat = match started {
            Ok(h) => h,
            Err(e) => return tracing::warn!("cannot rejoin the scheduler yet: {e}"),
        };
        let scheduler = match io.adopt(peer, identity) {
            Ok(p) => p,
            Err(e) => return tracing::warn!("cannot rejoin the scheduler yet: {e}"),
        };
        r.heartbeat = Some(heartbeat);
        r.outage = None;
        self.scheduler = scheduler;
        self.scheduler_silence.heard(Instant::now());
        tracing::info!(
            "reconnected to the scheduler after {}; rejoining with routing version {}",
            crate::liveness::secs(down_for),
            self.routing.version
        );
        let rejoin = Control::Rejoin(Box::new(self.rejoin_report()));
        reply_control(io, scheduler, &rejoin);
    }

    /// What this server tells a recovering scheduler: who it is, the routing it has, its
    /// tables, the ranges it holds whole, the workers its clocks count.
    fn rejoin_report(&self) -> Rejoin {
        let rank = self.rank.unwrap_or(u32::MAX);
        let mut tables: Vec<(u32, crate::table::TableSpec)> = Vec::new();
        for (&(id, _), store) in &self.tables {
            if !tables.iter().any(|(t, _)| *t == id) {
                tables.push((id, store.spec().clone()));
            }
        }
        let ranges = self
            .routing
            .held_by(rank)
            .filter(|&i| {
                self.routing.ranges[i].learner != Some(rank)
                    || self.copies_done.contains(&(i as u32))
            })
            .map(|i| i as u32)
            .collect();
        Rejoin {
            role: Role::Server,
            node_id: self.node_id.unwrap_or(u32::MAX),
            rank,
            num_servers: self.rejoin.job_size.0,
            num_workers: self.rejoin.job_size.1,
            addr: Some(self.rejoin.addr.clone()),
            rdma_addr: self.rejoin.rdma_addr.clone(),
            routing: self.routing.clone(),
            tables,
            ranges,
            live_workers: self.clocks.live_workers(),
            lost_workers: self.rejoin.lost_workers.clone(),
            clock: 0,
        }
    }
}
