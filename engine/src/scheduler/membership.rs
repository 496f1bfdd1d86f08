//! Elastic membership of workers: who may join a running job, with which node id, from which
//! clock, and when the job is over.
//!
//! - **Node ids** never collide and are never reused: server rank r is node `1 + r` (the
//!   servers' chains name each other by it), worker rank r is node `WORKER_NODE_BASE + r`, and
//!   ranks only grow, so servers and workers can both be added and a joining worker never
//!   inherits a dead one's per-(range, worker) dedupe state on the servers.
//! - **Joining**: a worker that registers once the job has assembled gets the next worker rank
//!   (asking for another is refused) and is admitted one at a time, between barriers and
//!   outside collective checkpoints: the scheduler asks every server for the clocks it counted
//!   (a survey); the start clock is the slowest live worker's, as the most advanced server saw
//!   it; the worker is made live (it counts for barriers from here on) and every server is told
//!   to count its clocks from the start clock (`WorkerJoined`); once a second survey shows
//!   every server read that, the worker is welcomed with the current routing and the start
//!   clock, which its own clock starts at. So the others' bounded-delay pulls never wait for
//!   clocks before its start, and its own pulls need the others to have completed no more than
//!   they have. A worker that arrives while workers wait at a barrier is admitted once that
//!   barrier is released: the barrier does not wait for it, the next one does.
//! - **Leaving**: a worker that is done is retired (`retire_worker`): barriers, clocks and
//!   bounded delay stop counting it, and a barrier the others wait at is released if it was the
//!   last one missing. A worker that dies ends the job, as before (the liveness policy); one
//!   that dies while still being admitted is forgotten.
//! - **The end**: the job ends when every worker the job was started with has registered and
//!   no worker is live any more; a worker still waiting to be admitted then is told the job is
//!   over.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use ferrops_net::{Io, PeerId};

use super::{Node, Phase, Scheduler};
use crate::control::{reply_control, Control, Role};

pub(super) use crate::role::WORKER_NODE_BASE;

/// The node id of `role`'s rank `rank`.
pub(super) fn node_id(role: Role, rank: u32) -> u32 {
    match role {
        Role::Server => 1 + rank,
        _ => WORKER_NODE_BASE + rank,
    }
}

/// Workers that joined or wait to, and when each node was last heard from.
#[derive(Debug, Default)]
pub(super) struct Membership {
    /// Workers that registered after the job assembled (the next one's rank follows them).
    pub joined: u32,
    /// Workers a recovered scheduler never saw (done or lost before it started).
    pub gone_before: usize,
    /// Node ids of the workers lost (told to the servers with the live workers).
    pub lost: Vec<u32>,
    /// Registered late, waiting for their admission to start.
    queue: VecDeque<PeerId>,
    /// The worker being admitted.
    admitting: Option<PeerId>,
    pub last_heard: HashMap<PeerId, Instant>,
}

impl Scheduler {
    /// A frame from `peer` arrived: it is alive.
    pub(super) fn heard_from(&mut self, peer: PeerId) {
        let now = Instant::now();
        self.detector.heard(peer, now);
        if self.nodes.contains_key(&peer) {
            self.membership.last_heard.insert(peer, now);
        }
    }

    /// A node registers once the job has assembled: only a worker may, and it joins.
    pub(super) fn register_late(
        &mut self,
        peer: PeerId,
        role: Role,
        asked: Option<u32>,
        io: &mut Io<'_>,
    ) {
        if role != Role::Worker {
            let reason = format!(
                "registration is closed for a {role} (the job is already complete): only workers, \
                 and servers of a job with replication above 1 (spares), join a running job"
            );
            return reply_control(io, peer, &Control::Refused { reason });
        }
        let rank = self.num_workers as u32 + self.membership.joined;
        if let Some(asked) = asked.filter(|&a| a != rank) {
            let reason = format!(
                "worker rank {asked} is taken or was: a worker joining the running job gets the \
                 next rank, {rank} (leave FERROPS_RANK unset)"
            );
            return reply_control(io, peer, &Control::Refused { reason });
        }
        self.membership.joined += 1;
        let node = Node {
            role,
            node_id: node_id(role, rank),
            rank,
        };
        self.nodes.insert(peer, node);
        self.workers.push(peer);
        self.detector.watch(peer, Instant::now());
        tracing::info!("worker {rank} registered: it joins the running job");
        self.membership.queue.push_back(peer);
        self.admit_next_worker(io);
    }

    /// Starts admitting the next waiting worker unless the job is not running yet, another
    /// is being admitted, workers wait at a barrier (also while `ferrops ctl checkpoint` holds
    /// one), or workers are taking a checkpoint.
    pub(super) fn admit_next_worker(&mut self, io: &mut Io<'_>) {
        let busy = self.phase != Phase::Running
            || self.stop.is_some()
            || self.membership.admitting.is_some()
            || !self.barrier.is_empty()
            || self.checkpoint.is_some();
        if busy {
            return;
        }
        while let Some(peer) = self.membership.queue.pop_front() {
            if self.nodes.contains_key(&peer) {
                self.membership.admitting = Some(peer);
                return self.start_survey(super::survey::Purpose::Join { peer }, io);
            }
        }
    }

    /// The servers' clocks are known: `peer` starts at the slowest live worker's clock.
    pub(super) fn join_surveyed(
        &mut self,
        peer: PeerId,
        clocks: &std::collections::BTreeMap<u32, u32>,
        io: &mut Io<'_>,
    ) {
        let Some(node) = self.nodes.get(&peer).cloned() else {
            self.membership.admitting = None;
            return self.admit_next_worker(io);
        };
        let start = self.slowest_live_clock(clocks);
        self.live_workers.insert(peer);
        let joined = Control::WorkerJoined {
            node_id: node.node_id,
            start_clock: start,
        };
        for (server, _) in self.servers.clone() {
            reply_control(io, server, &joined);
        }
        let confirm = super::survey::Purpose::ConfirmJoin { peer, start };
        self.start_survey(confirm, io);
    }

    /// Every server counts `peer`'s clocks from `start`: it is welcomed.
    pub(super) fn welcome_joined(&mut self, peer: PeerId, start: u32, io: &mut Io<'_>) {
        self.membership.admitting = None;
        if let Some(node) = self.nodes.get(&peer).cloned() {
            tracing::info!(
                "worker {} joins at clock {start} ({} live workers)",
                node.rank,
                self.live_workers.len()
            );
            let welcome = Control::Welcome {
                node_id: node.node_id,
                rank: node.rank,
                num_servers: self.num_servers as u32,
                num_workers: self.live_workers.len() as u32,
                routing: self.routing.clone(),
                workers: Vec::new(),
                start_clock: start,
            };
            reply_control(io, peer, &welcome);
        }
        self.admit_next_worker(io);
    }

    /// Forgets `peer` if it is a worker still waiting to be admitted (it left before it was
    /// part of the job; a silent one's connection is closed); true if it was.
    pub(super) fn forget_unadmitted(&mut self, peer: PeerId, io: &mut Io<'_>) -> bool {
        let queued = self.membership.queue.contains(&peer);
        let admitting =
            self.membership.admitting == Some(peer) && !self.live_workers.contains(&peer);
        if !(queued || admitting) {
            return false;
        }
        tracing::warn!("{} left before it was admitted", self.name_of(peer));
        io.close(peer, ferrops_net::CloseReason::Local);
        self.membership.queue.retain(|&p| p != peer);
        self.workers.retain(|&p| p != peer);
        self.nodes.remove(&peer);
        true
    }

    /// A worker is done: it stops counting for barriers and consistency.
    pub(super) fn retire_worker(&mut self, peer: PeerId, io: &mut Io<'_>) {
        if !self.live_workers.remove(&peer) {
            return;
        }
        self.barrier.remove(&peer);
        let workers = self.worker_ids(self.live_workers.iter().copied());
        if self.phase == Phase::Running {
            for (server, _) in self.servers.clone() {
                reply_control(
                    io,
                    server,
                    &Control::LiveWorkers {
                        workers: workers.clone(),
                        lost: self.membership.lost.clone(),
                    },
                );
            }
        }
        self.maybe_release_barrier(io);
        self.maybe_write_checkpoint(io);
        if self.no_worker_left() {
            let ok = self.summary.workers_lost == 0;
            let reason = format!(
                "{} workers done, {} lost",
                self.summary.workers_done, self.summary.workers_lost
            );
            self.shutdown(ok, reason, io);
        }
    }

    /// Whether the job is over: every worker it was started with registered, none is live.
    pub(super) fn no_worker_left(&self) -> bool {
        self.live_workers.is_empty()
            && self.workers.len() + self.membership.gone_before >= self.num_workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_worker_node_ids_never_meet() {
        assert_eq!(node_id(Role::Server, 0), 1);
        assert_eq!(node_id(Role::Worker, 0), WORKER_NODE_BASE);
        // However many of each join, a server's id stays below every worker's.
        assert!(node_id(Role::Server, WORKER_NODE_BASE - 2) < node_id(Role::Worker, 0));
    }
}
