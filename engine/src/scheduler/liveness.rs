//! What the scheduler does when the detector (`crate::liveness::Detector`) reports a dead node:
//! the one place the policy lives, so that failover can replace it.
//!
//! The death of any node that was not done ends the job, naming the node by role and rank;
//! every node is told why (`Shutdown`), and exits non-zero.

use ferrops_net::{Io, PeerId};

use super::Scheduler;
use crate::control::Role;
use crate::liveness::Death;

impl Scheduler {
    pub(super) fn on_death(&mut self, death: Death<PeerId>, io: &mut Io<'_>) {
        let Some(node) = self.nodes.get(&death.node).cloned() else {
            return;
        };
        let name = self.name_of(death.node);
        if node.role == Role::Worker {
            self.summary.workers_lost += 1;
        }
        let why = format!("{name} is dead: {}", death.cause);
        tracing::error!("{why}");
        self.shutdown(false, why, io);
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
}
