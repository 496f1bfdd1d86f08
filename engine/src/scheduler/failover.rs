//! Failover: what the scheduler does when a server that replication covers dies while the job
//! runs. The server is removed from every chain, the next server of each chain it headed is
//! promoted, and the new routing (version + 1) is published to every server and worker; a
//! range that has lost every copy ends the job, naming it.

use ferrops_net::{CloseReason, Io, PeerId};

use super::Scheduler;

impl Scheduler {
    /// Whether the death of server `peer` can be survived: replication is on and the job runs.
    pub(super) fn can_fail_over(&self, peer: PeerId) -> bool {
        self.replication > 1
            && self.phase == super::Phase::Running
            && self.servers.iter().any(|(p, _)| *p == peer)
    }

    /// Takes dead server `peer` (named `name`) out of the job; ends the job if a range lost its
    /// last copy.
    pub(super) fn fail_over(&mut self, peer: PeerId, name: &str, io: &mut Io<'_>) {
        let Some(rank) = self.nodes.get(&peer).map(|n| n.rank) else {
            return;
        };
        // Fenced: a stopped server that wakes up finds its connection closed and is in no
        // chain of the new routing, so nothing it says is taken any more.
        io.close(peer, CloseReason::Local);
        self.forget_server(peer, io);
        let mut routing = self.routing.clone();
        routing.version += 1;
        if let Err(why) = self.take_out_of_chains(&mut routing, rank, name) {
            tracing::error!("{why}");
            return self.shutdown(false, why, io);
        }
        self.plan_copies(&mut routing);
        self.moves_after_failover(&mut routing, io);
        tracing::warn!(
            "{name} is dead; the job goes on with routing version {} (chains {:?})",
            routing.version,
            routing.ranges.iter().map(|r| &r.chain).collect::<Vec<_>>()
        );
        self.summary.servers_lost += 1;
        self.failovers.inc();
        self.publish(routing, io);
    }

    /// Takes server `rank` (named `name`) out of every chain of `routing`, promoting the next
    /// server of each chain it headed; an error names a range that lost its last copy.
    pub(super) fn take_out_of_chains(
        &self,
        routing: &mut crate::routing::RoutingTable,
        rank: u32,
        name: &str,
    ) -> Result<(), String> {
        for (i, range) in routing.ranges.iter_mut().enumerate() {
            let held = range.chain.contains(&rank);
            range.chain.retain(|&r| r != rank);
            if let Some(learner) = range.learner {
                // A learner's copy comes from the server before it: a chain that changed
                // starts its copy again.
                if held {
                    range.chain.retain(|&r| r != learner);
                    range.learner = None;
                }
            }
            let Some(&head) = range.chain.first() else {
                return Err(format!(
                    "{name} is dead and range {i} (keys [{:#x}, {:#x}]) has lost every copy",
                    range.begin, range.last
                ));
            };
            if range.server != head {
                tracing::warn!("range {i}: server {head} takes over from {name}");
                range.server = head;
                range.addr = routing.server_addrs[head as usize].clone();
                range.rdma_addr = self.rdma_addr_of(head);
            }
        }
        Ok(())
    }

    /// The RDMA address server `rank` registered, if any.
    fn rdma_addr_of(&self, rank: u32) -> Option<String> {
        self.routing
            .ranges
            .iter()
            .find(|r| r.server == rank)
            .and_then(|r| r.rdma_addr.clone())
    }
}
