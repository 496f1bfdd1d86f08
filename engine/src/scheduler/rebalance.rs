//! Moving ranges between servers while the job runs, on top of re-replication's copy: a server
//! that joins takes ranges from the most loaded servers, and a server being drained hands
//! every range it holds to another. Either way the receiving server first takes a copy as the
//! range's learner; when the copy is whole it takes the place of the server it replaces in the
//! chain (its head's place too), so the chain keeps R copies throughout and the switch is one
//! routing version. A drained server that holds nothing is told to stop (`Shutdown` with ok:
//! it exits 0) and whoever asked is answered.
//!
//! Ranges move whole: there are as many ranges as the servers the job started with (shards
//! included), so a job that grows beyond that has servers holding copies but heading none.

use std::collections::BTreeMap;

use ferrops_net::{CloseReason, Io, PeerId};

use super::rereplicate::add_learner;
use super::Scheduler;
use crate::control::{reply_control, Control};
use crate::routing::RoutingTable;

/// Ranges on their way to another server, and the servers being drained.
#[derive(Debug, Default)]
pub(super) struct Moves {
    /// Per range: the server it replaces when its learner's copy is whole.
    replacing: BTreeMap<u32, u32>,
    /// Servers being drained, with the connection that asked (`ferrops ctl`, or the server
    /// itself) to answer.
    draining: BTreeMap<u32, Option<PeerId>>,
}

impl Moves {
    /// Whether server `rank` is being drained.
    pub(super) fn draining(&self, rank: u32) -> bool {
        self.draining.contains_key(&rank)
    }
}

impl Scheduler {
    /// Plans moves in `routing`: every range a draining server holds gets a learner that will
    /// replace it, and servers holding fewer ranges than their share take ranges from those
    /// holding most. Whether any move was planned.
    pub(super) fn plan_moves(&mut self, routing: &mut RoutingTable) -> bool {
        if self.replication < 2 {
            return false;
        }
        let mut planned = false;
        let drains: Vec<u32> = self.moves.draining.keys().copied().collect();
        for from in drains {
            for i in routing.held_by(from).collect::<Vec<_>>() {
                planned |= self.plan_move(routing, i, from, None);
            }
        }
        while let Some((i, from, to)) = self.unbalanced(routing) {
            if !self.plan_move(routing, i, from, Some(to)) {
                break;
            }
            planned = true;
        }
        planned
    }

    /// Range `i` moves off server `from` (to `to`, or the best learner): a learner unless the
    /// range already has one.
    fn plan_move(
        &mut self,
        routing: &mut RoutingTable,
        i: usize,
        from: u32,
        to: Option<u32>,
    ) -> bool {
        if routing.ranges[i].learner.is_some() {
            return false;
        }
        let Some(to) = to.or_else(|| self.best_learner(routing, i)) else {
            tracing::warn!("range {i} cannot leave server {from}: no server can take a copy");
            return false;
        };
        tracing::info!("range {i} moves from server {from} to server {to}");
        add_learner(routing, i, to);
        self.moves.replacing.insert(i as u32, from);
        true
    }

    /// A range to move for balance: from the server holding most ranges to the live one
    /// holding fewest, when they differ by more than one and the range's chain takes it.
    fn unbalanced(&self, routing: &RoutingTable) -> Option<(usize, u32, u32)> {
        let live: Vec<u32> = self
            .servers
            .iter()
            .filter(|(peer, _)| self.ready.contains(peer))
            .filter_map(|(peer, _)| Some(self.nodes.get(peer)?.rank))
            .filter(|&rank| !self.moves.draining(rank))
            .collect();
        let load = |rank: u32| routing.held_by(rank).count();
        let to = *live.iter().min_by_key(|&&r| (load(r), r))?;
        let from = *live.iter().max_by_key(|&&r| (load(r), u32::MAX - r))?;
        if load(from) <= load(to) + 1 {
            return None;
        }
        routing
            .held_by(from)
            .find(|&i| {
                let range = &routing.ranges[i];
                range.learner.is_none()
                    && !range.chain.contains(&to)
                    && !self.same_process_as_chain(to, &range.chain)
            })
            .map(|i| (i, from, to))
    }

    /// Learner `rank` of range `range` holds a whole copy: if it was moving the range, it
    /// takes the place of the server it replaces.
    pub(super) fn finish_move(&mut self, routing: &mut RoutingTable, range: u32, rank: u32) {
        let Some(from) = self.moves.replacing.remove(&range) else {
            return;
        };
        let r = &mut routing.ranges[range as usize];
        let Some(at) = r.chain.iter().position(|&s| s == from) else {
            return; // the server it replaces is gone already: it stays as a copy
        };
        r.chain.retain(|&s| s != rank);
        r.chain[at] = rank;
        let head = r.chain[0];
        if r.server != head {
            r.server = head;
            r.addr = routing.server_addrs[head as usize].clone();
            r.rdma_addr = None;
        }
        tracing::info!(
            "range {range} moved from server {from} to server {rank} (chain {:?})",
            r.chain
        );
    }

    /// Stops the drained servers that `routing` leaves holding nothing: they exit 0, and the
    /// `ferrops ctl` that asked is answered.
    pub(super) fn release_drained(&mut self, routing: &RoutingTable, io: &mut Io<'_>) {
        let done: Vec<u32> = self
            .moves
            .draining
            .keys()
            .copied()
            .filter(|&rank| routing.held_by(rank).next().is_none())
            .collect();
        for rank in done {
            let asked = self.moves.draining.remove(&rank).flatten();
            if let Some(peer) = self.server_peer(rank) {
                tracing::info!("server {rank} is drained: it holds no range; stopping it");
                let bye = Control::Shutdown {
                    ok: true,
                    reason: format!("server {rank} was drained"),
                };
                reply_control(io, peer, &bye);
                self.forget_server(peer, io);
                io.close(peer, CloseReason::Local);
            }
            if let Some(ctl) = asked.filter(|&p| self.nodes.get(&p).is_none_or(|n| n.rank != rank))
            {
                reply_control(io, ctl, &Control::Drained { result: Ok(()) });
            }
        }
    }

    /// Drains server `rank` (asked by `ctl` or by the server itself, on SIGTERM): refused,
    /// saying why, when it is not a live server, replication is 1, or a range it holds has no
    /// other server to take it.
    pub(super) fn drain(&mut self, rank: u32, ctl: Option<PeerId>, io: &mut Io<'_>) {
        if let Err(reason) = self.check_drain(rank) {
            tracing::warn!("not draining server {rank}: {reason}");
            if let Some(ctl) = ctl {
                reply_control(
                    io,
                    ctl,
                    &Control::Drained {
                        result: Err(reason),
                    },
                );
            }
            return;
        }
        tracing::info!("draining server {rank}");
        self.moves.draining.insert(rank, ctl);
        let mut routing = self.routing.clone();
        if self.plan_moves(&mut routing) {
            routing.version += 1;
            self.publish(routing, io);
        } else {
            let routing = self.routing.clone();
            self.release_drained(&routing, io);
        }
    }

    fn check_drain(&self, rank: u32) -> Result<(), String> {
        if self.server_peer(rank).is_none() {
            return Err(format!("there is no live server {rank}"));
        }
        if self.replication < 2 {
            return Err("a job with replication 1 cannot move ranges while it runs".into());
        }
        if self.moves.draining(rank) {
            return Err(format!("server {rank} is being drained already"));
        }
        for i in self.routing.held_by(rank) {
            if self.best_learner(&self.routing, i).is_none() {
                return Err(format!(
                    "no other server can take a copy of range {i} (chain {:?}): start a spare \
                     server first",
                    self.routing.ranges[i].chain
                ));
            }
        }
        Ok(())
    }

    /// After a failover: moves whose learner was dropped are planned again.
    pub(super) fn moves_after_failover(&mut self, routing: &mut RoutingTable, io: &mut Io<'_>) {
        self.moves
            .replacing
            .retain(|&i, _| routing.ranges[i as usize].learner.is_some());
        self.plan_moves(routing);
        self.release_drained(routing, io);
    }

    /// Forgets a server that left the job — dead, or drained — so that its connection closing
    /// is no death and no survey waits for its answer.
    pub(super) fn forget_server(&mut self, peer: PeerId, io: &mut Io<'_>) {
        self.detector.forget(peer);
        self.nodes.remove(&peer);
        self.ready.remove(&peer);
        if let Some(i) = self.servers.iter().position(|(p, _)| *p == peer) {
            self.servers.remove(i);
            self.server_rdma_addrs.remove(i);
        }
        self.survey_server_gone(peer, io);
    }
}
