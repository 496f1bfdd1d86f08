//! What the scheduler does when the detector (`crate::liveness::Detector`) reports a dead node:
//! the one place the policy lives, so that failover can replace it.
//!
//! - Before the job starts (still registering), a node that leaves or goes silent frees its
//!   slot: the nodes that registered after it move up a rank, and a replacement takes the free
//!   one. A silent one's connection is closed, so it cannot come back as a ghost.
//! - Once the job has started, the death of a server that replication covers (R > 1) is
//!   survived (`failover`); a worker's death is a leave — the others go on without it, and the
//!   job fails once they are done; the death of any other node that was not done ends the job,
//!   naming the node by role and rank; every node is told why (`Shutdown`), and exits non-zero.

use ferrops_net::{CloseReason, Io, PeerId};

use super::{Phase, Scheduler};
use crate::control::Role;
use crate::liveness::Death;

impl Scheduler {
    pub(super) fn on_death(&mut self, death: Death<PeerId>, io: &mut Io<'_>) {
        let Some(node) = self.nodes.get(&death.node).cloned() else {
            return;
        };
        if self.forget_unadmitted(death.node, io) {
            return;
        }
        let name = self.name_of(death.node);
        if self.phase == Phase::Recovering {
            tracing::warn!("{name} rejoined and left again ({})", death.cause);
            io.close(death.node, CloseReason::Local);
            self.ready.remove(&death.node);
            self.free_slot(death.node);
            return;
        }
        if self.phase == Phase::Registering {
            tracing::warn!(
                "{name} left before the job started ({}); its slot is free for another",
                death.cause
            );
            io.close(death.node, CloseReason::Local);
            self.free_slot(death.node);
            return;
        }
        if self.can_fail_over(death.node) {
            tracing::warn!("{name} is dead: {}", death.cause);
            return self.fail_over(death.node, &name, io);
        }
        if node.role == Role::Worker {
            self.summary.workers_lost += 1;
            if self.phase == Phase::Running {
                return self.lose_worker(death.node, &name, &death.cause.to_string(), io);
            }
        }
        let why = format!("{name} is dead: {}", death.cause);
        tracing::error!("{why}");
        self.shutdown(false, why, io);
    }

    /// A worker died while the job runs: it leaves — barriers, clocks and bounded delay stop
    /// counting it, so the others go on — and the job, once every other worker is done, ends
    /// failing (`N workers done, 1 lost`): what the dead one had still to push is missing.
    fn lose_worker(&mut self, peer: PeerId, name: &str, cause: &str, io: &mut Io<'_>) {
        tracing::warn!(
            "{name} is dead: {cause}; the job goes on without it (it no longer counts for \
             barriers and clocks), and fails when the others are done"
        );
        io.close(peer, CloseReason::Local);
        self.detector.forget(peer);
        if let Some(node) = self.nodes.get(&peer) {
            self.membership.lost.push(node.node_id);
        }
        self.retire_worker(peer, io);
        self.nodes.remove(&peer);
    }

    /// The scheduler's name for a registered node: `server 1 at 10.0.0.2:7000`, `worker 3`.
    pub(super) fn name_of(&self, peer: PeerId) -> String {
        let Some(node) = self.nodes.get(&peer) else {
            return format!("connection {peer}");
        };
        let addr = self
            .servers
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, addr)| format!(" at {addr}"));
        format!("{} {}{}", node.role, node.rank, addr.unwrap_or_default())
    }

    /// Forgets a node that registered but left before the job started: its rank is free again
    /// (the next node of its role to register without asking for a rank takes the lowest free
    /// one, a node that asks for it gets it).
    fn free_slot(&mut self, peer: PeerId) {
        if let Some(i) = self.servers.iter().position(|(p, _)| *p == peer) {
            self.servers.remove(i);
            self.server_rdma_addrs.remove(i);
        }
        self.workers.retain(|&p| p != peer);
        self.live_workers.remove(&peer);
        self.nodes.remove(&peer);
    }
}
