//! A worker that lost the scheduler: it goes on pushing and pulling by the routing it has, and
//! while it waits (in any call) redials the scheduler (`crate::reconnect`); once one answers it
//! restarts its heartbeats, tells it who it is (`Control::Rejoin`) and sends again the request
//! it was waiting on an answer to (a barrier, a table's declaration, a checkpoint). Calls that
//! need the scheduler (a barrier, `finish`'s `Done`) wait for it; nothing is lost.

use std::time::Instant;

use ferrops_net::BufferPool;

use super::io::ClientIo;
use crate::config::ClusterConfig;
use crate::control::{Control, Rejoin};
use crate::liveness::Heartbeat;
use crate::reconnect::Outage;
use crate::{EngineError, Role};

/// What a welcomed worker needs to find the scheduler again.
pub(crate) struct Rejoining {
    pub cluster: ClusterConfig,
    pub pool: BufferPool,
    /// Heartbeats on the current scheduler connection.
    pub heartbeat: Option<Heartbeat>,
    /// What this worker tells a recovering scheduler (kept up to date: clock, tables).
    pub me: Rejoin,
    pub outage: Option<Outage>,
}

impl ClientIo {
    /// The scheduler is lost: redials it when the backoff allows; once connected, rejoins.
    /// Fails when the outage has lasted longer than `scheduler_outage_ms`.
    pub(super) fn reconnect(&mut self) -> Result<(), EngineError> {
        let Some(r) = self.rejoin.as_mut() else {
            return Err(EngineError::SchedulerLost);
        };
        r.heartbeat = None;
        let allowed = r.cluster.liveness.scheduler_outage;
        let outage = r.outage.get_or_insert_with(|| Outage::new(allowed));
        let metrics = self.inbound.metrics.clone();
        let Some((mut peer, _)) = outage.redial(&r.cluster, Role::Worker, &r.pool, &metrics)?
        else {
            return Ok(());
        };
        let down_for = outage.down_for();
        let liveness = r.cluster.liveness;
        let writer = peer.share_writes(liveness.heartbeat_timeout)?;
        let crc = r.cluster.payload_checksum;
        let mut me = r.me.clone();
        if let Some(routing) = &self.inbound.latest_routing {
            if routing.version > me.routing.version {
                me.routing = routing.clone();
            }
        }
        self.replace_scheduler(peer)?;
        let heartbeat = Heartbeat::start(writer, liveness.heartbeat_interval, crc)?;
        if let Some(r) = self.rejoin.as_mut() {
            r.heartbeat = Some(heartbeat);
            r.outage = None;
        }
        self.inbound.scheduler_down = false;
        self.inbound.recovering = true;
        self.inbound.scheduler_silence.heard(Instant::now());
        tracing::info!(
            "reconnected to the scheduler after {}; rejoining",
            crate::liveness::secs(down_for)
        );
        self.send_control_now(&Control::Rejoin(Box::new(me)))?;
        if let Some(request) = self.awaiting.clone() {
            self.send_control_now(&request)?;
        }
        Ok(())
    }
}
