//! Re-replication: bringing every range's chain back to R copies while the job runs. A range
//! with fewer copies than R gets a learner — a live server outside its chain (another host
//! first, then the one holding the fewest ranges; a spare started against the running job
//! with `ferrops server` is one) — appended to its chain; the server before it sends it the
//! range while pushes continue (`server/range_copy.rs`), and when the learner reports the
//! copy whole (`RangeCopied`) the mark is taken off and it counts as a copy.
//!
//! A routing that names learners is published to them first, and to everyone else once each
//! learner has adopted it (`RoutingAdopted`): nobody forwards to a learner that would refuse
//! the push for not knowing its role yet.

use std::collections::BTreeSet;

use ferrops_net::{Io, PeerId};

use super::Scheduler;
use crate::control::{reply_control, Control, Role};
use crate::routing::RoutingTable;

impl Scheduler {
    /// Gives each range short of R copies (and without a learner) a learner, in `routing`;
    /// whether any was given.
    pub(super) fn plan_copies(&self, routing: &mut RoutingTable) -> bool {
        if self.replication < 2 {
            return false;
        }
        let mut planned = false;
        for i in 0..routing.ranges.len() {
            let range = &routing.ranges[i];
            if range.learner.is_some() || range.copies().count() >= self.replication {
                continue;
            }
            let Some(learner) = self.best_learner(routing, i) else {
                continue;
            };
            tracing::info!(
                "range {i} has {} of {} copies: server {learner} takes a copy",
                range.copies().count(),
                self.replication
            );
            add_learner(routing, i, learner);
            planned = true;
        }
        planned
    }

    /// The live server best placed to take a copy of range `i`: outside its chain and its
    /// processes, not draining, on another host if one is, holding the fewest ranges.
    pub(super) fn best_learner(&self, routing: &RoutingTable, i: usize) -> Option<u32> {
        let range = &routing.ranges[i];
        let host = |rank: u32| {
            let addr = &routing.server_addrs[rank as usize];
            addr.rsplit_once(':')
                .map_or(addr.as_str(), |(h, _)| h)
                .to_string()
        };
        let chain_hosts: BTreeSet<String> = range.chain.iter().map(|&r| host(r)).collect();
        self.servers
            .iter()
            .filter(|(peer, _)| self.ready.contains(peer))
            .filter_map(|(peer, _)| Some(self.nodes.get(peer)?.rank))
            .filter(|rank| !range.chain.contains(rank) && !self.moves.draining(*rank))
            .filter(|&rank| !self.same_process_as_chain(rank, &range.chain))
            .min_by_key(|&rank| {
                (
                    chain_hosts.contains(&host(rank)),
                    routing.held_by(rank).count(),
                    rank,
                )
            })
    }

    /// Whether server `rank` is a shard of the same process as a server of `chain` (the
    /// servers that registered together are numbered process by process, `shards` at a time).
    pub(super) fn same_process_as_chain(&self, rank: u32, chain: &[u32]) -> bool {
        let shards = self.shards.max(1) as u32;
        let first = self.num_servers as u32;
        let process = |r: u32| if r < first { r / shards } else { u32::MAX - r };
        chain.iter().any(|&r| process(r) == process(rank))
    }

    /// Makes `routing` the job's and tells everyone: its learners first, the others once every
    /// learner has adopted it.
    pub(super) fn publish(&mut self, routing: RoutingTable, io: &mut Io<'_>) {
        self.routing = routing;
        let msg = Control::Routing {
            routing: self.routing.clone(),
        };
        let learners: BTreeSet<PeerId> = self
            .routing
            .ranges
            .iter()
            .filter_map(|r| r.learner)
            .filter_map(|rank| self.server_peer(rank))
            .collect();
        if learners.is_empty() {
            self.awaiting = None;
            self.broadcast(&msg, io);
            return self.checkpoint_under_new_routing(io);
        }
        for &peer in &learners {
            reply_control(io, peer, &msg);
        }
        self.awaiting = Some((self.routing.version, learners));
    }

    /// Sends `msg` to every node.
    fn broadcast(&self, msg: &Control, io: &mut Io<'_>) {
        let peers: Vec<PeerId> = self.nodes.keys().copied().collect();
        for p in peers {
            reply_control(io, p, msg);
        }
    }

    /// A server adopted routing `version`; once every learner has, everyone else gets it.
    pub(super) fn routing_adopted(&mut self, peer: PeerId, version: u32, io: &mut Io<'_>) {
        let Some((awaited, learners)) = &mut self.awaiting else {
            return;
        };
        if *awaited != version {
            return;
        }
        learners.remove(&peer);
        if learners.is_empty() {
            self.awaiting = None;
            let msg = Control::Routing {
                routing: self.routing.clone(),
            };
            self.broadcast(&msg, io);
            self.checkpoint_under_new_routing(io);
        }
    }

    /// Learner `peer` holds a whole copy of range `range`: it counts as a copy from now on.
    pub(super) fn range_copied(&mut self, peer: PeerId, range: u32, io: &mut Io<'_>) {
        let Some(rank) = self.nodes.get(&peer).map(|n| n.rank) else {
            return;
        };
        let mut routing = self.routing.clone();
        let Some(r) = routing.ranges.get_mut(range as usize) else {
            return;
        };
        if r.learner != Some(rank) {
            return; // a copy this routing no longer wants
        }
        r.learner = None;
        tracing::info!(
            "range {range}: server {rank} holds a copy (chain {:?})",
            r.chain
        );
        self.finish_move(&mut routing, range, rank);
        self.plan_copies(&mut routing);
        self.plan_moves(&mut routing);
        routing.version += 1;
        self.release_drained(&routing, io);
        self.publish(routing, io);
    }

    /// A server registering once the job runs (a spare): it gets the next rank, the job's
    /// tables, and ranges short of copies.
    pub(super) fn admit_spare(
        &mut self,
        peer: PeerId,
        addr: String,
        rdma_addr: Option<String>,
        asked: Option<u32>,
        io: &mut Io<'_>,
    ) {
        let rank = self.routing.server_addrs.len() as u32;
        if asked.is_some_and(|a| a != rank) {
            let reason = format!(
                "the job is running: a server joining it gets rank {rank}, it cannot ask for \
                 rank {}",
                asked.unwrap_or_default()
            );
            return reply_control(io, peer, &Control::Refused { reason });
        }
        tracing::info!("server {rank} joined the running job at {addr}");
        self.nodes.insert(
            peer,
            super::Node {
                role: Role::Server,
                node_id: super::membership::node_id(Role::Server, rank),
                rank,
            },
        );
        self.servers.push((peer, addr.clone()));
        self.server_rdma_addrs.push(rdma_addr);
        self.detector.watch(peer, std::time::Instant::now());
        let mut routing = self.routing.clone();
        routing.server_addrs.push(addr);
        routing.version += 1;
        self.routing = routing.clone();
        let workers = self.worker_ids(self.live_workers.iter().copied());
        let node = self.nodes[&peer].clone();
        reply_control(io, peer, &self.welcome(&node, workers));
        for (id, table) in self.tables.iter().enumerate() {
            if table.refused.is_none() {
                let ready = Control::TableReady {
                    id: crate::table::TableId(id as u32),
                    spec: table.spec.clone(),
                };
                reply_control(io, peer, &ready);
            }
        }
        self.publish(routing, io);
    }

    /// The spare became ready: ranges short of copies may take it.
    pub(super) fn spare_ready(&mut self, io: &mut Io<'_>) {
        let mut routing = self.routing.clone();
        let copies = self.plan_copies(&mut routing);
        if self.plan_moves(&mut routing) || copies {
            routing.version += 1;
            self.publish(routing, io);
        }
    }

    /// The connection of server `rank`, if it is live.
    pub(super) fn server_peer(&self, rank: u32) -> Option<PeerId> {
        self.servers
            .iter()
            .map(|(p, _)| *p)
            .find(|p| self.nodes.get(p).is_some_and(|n| n.rank == rank))
    }
}

/// Appends `learner` to range `i`'s chain as its learner.
pub(super) fn add_learner(routing: &mut RoutingTable, i: usize, learner: u32) {
    let range = &mut routing.ranges[i];
    range.chain.push(learner);
    range.learner = Some(learner);
}
