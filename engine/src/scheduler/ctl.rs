//! What `ferrops ctl` asks the scheduler: connections that authenticated as `Role::Ctl`, which
//! never register and are no part of the job.
//!
//! - `StatusRequest`: the scheduler asks every server for its summary (a survey) and answers
//!   with the members, ranges, tables and worker clocks (`Status`).
//! - `CtlCheckpoint { dir }`: the scheduler waits for the job's next barrier. Once every live
//!   worker waits at it, no push is in flight (a worker enters a barrier only once its pushes
//!   are acknowledged) and none comes until the barrier is released, so the tables are at one
//!   consistent point: the barrier is held, the servers write every table (the collective
//!   checkpoint's `WriteCheckpoint`, at the slowest live worker's clock), the scheduler writes
//!   the manifest, answers `CheckpointDone` and releases the barrier. A job that ends first
//!   answers with why it could not.

use std::collections::BTreeMap;
use std::time::Instant;

use ferrops_net::{Io, PeerId};

use super::checkpoint::Collective;
use super::survey::Purpose;
use super::Scheduler;
use crate::control::status::{
    JobStatus, Member, RangeStatus, ServerStatus, TableStatus, WorkerStatus,
};
use crate::control::{reply_control, Control, Role, ServerSummary};

/// A checkpoint `ferrops ctl checkpoint` asked for.
#[derive(Debug)]
pub(super) struct CtlCheckpoint {
    ctl: PeerId,
    dir: String,
    /// Whether every live worker waits at a barrier, held until the checkpoint is written.
    holding: bool,
}

impl Scheduler {
    /// A message from a connection that did not register: only `ferrops ctl` may send one.
    pub(super) fn ctl_request(&mut self, peer: PeerId, msg: Control, io: &mut Io<'_>) {
        let proved = io
            .identity(peer)
            .and_then(|id| Role::from_wire_index(id.role));
        if proved != Some(Role::Ctl) {
            let reason = format!("{msg:?} is only answered to `ferrops ctl`");
            return reply_control(io, peer, &Control::Refused { reason });
        }
        match msg {
            Control::StatusRequest => self.start_survey(Purpose::Status { ctl: peer }, io),
            Control::CtlCheckpoint { dir } => self.ctl_checkpoint_asked(peer, dir, io),
            Control::CtlDrain { server } => self.drain(server, Some(peer), io),
            other => {
                let reason = format!("{other:?} is not expected from `ferrops ctl`");
                reply_control(io, peer, &Control::Refused { reason });
            }
        }
    }

    fn ctl_checkpoint_asked(&mut self, ctl: PeerId, dir: String, io: &mut Io<'_>) {
        if let Some(pending) = &self.ctl_checkpoint {
            let reason = format!("a checkpoint into {} is already waiting", pending.dir);
            return reply_control(io, ctl, &Control::Refused { reason });
        }
        tracing::info!("checkpoint into {dir} asked: written at the next barrier");
        self.ctl_checkpoint = Some(CtlCheckpoint {
            ctl,
            dir,
            holding: false,
        });
    }

    /// Every live worker waits at the barrier: whether it stays held for a checkpoint `ferrops
    /// ctl` asked for (which starts now, unless a workers' checkpoint is still being written).
    pub(super) fn hold_barrier_for_ctl(&mut self, io: &mut Io<'_>) -> bool {
        let idle = self.checkpoint.is_none();
        match self.ctl_checkpoint.as_mut() {
            None => false,
            Some(c) if c.holding => true,
            Some(_) if !idle => false,
            Some(c) => {
                c.holding = true;
                self.start_survey(Purpose::CtlCheckpoint, io);
                true
            }
        }
    }

    /// The clocks are known: the servers write, at the slowest live worker's clock.
    pub(super) fn write_ctl_checkpoint(&mut self, clocks: &BTreeMap<u32, u32>, io: &mut Io<'_>) {
        let clock = self.slowest_live_clock(clocks);
        let Some(c) = self.ctl_checkpoint.as_ref() else {
            return;
        };
        self.checkpoint = Some(Collective::for_ctl(c.dir.clone(), clock, c.ctl));
        self.maybe_write_checkpoint(io);
    }

    /// The checkpoint `ferrops ctl` asked for is complete (or failed): the barrier goes.
    pub(super) fn ctl_checkpoint_done(&mut self, io: &mut Io<'_>) {
        if self.ctl_checkpoint.take().is_some() {
            self.maybe_release_barrier(io);
        }
    }

    /// The job is ending: a checkpoint still waiting for a barrier never will be written.
    pub(super) fn ctl_checkpoint_abandoned(&mut self, why: &str, io: &mut Io<'_>) {
        if let Some(c) = self.ctl_checkpoint.take() {
            let result = Err(format!(
                "the job ended before its workers met at a barrier ({why})"
            ));
            reply_control(io, c.ctl, &Control::CheckpointDone { result });
        }
    }

    /// Answers `ferrops ctl status` from the servers' summaries.
    pub(super) fn answer_status(
        &mut self,
        ctl: PeerId,
        replies: &[ServerSummary],
        clocks: &BTreeMap<u32, u32>,
        io: &mut Io<'_>,
    ) {
        let now = Instant::now();
        let heard = |peer: &PeerId| {
            self.membership
                .last_heard
                .get(peer)
                .map(|t| now.duration_since(*t).as_millis() as u64)
        };
        let servers = self
            .servers
            .iter()
            .filter_map(|(peer, addr)| {
                let node = self.nodes.get(peer)?;
                let ranges = self
                    .routing
                    .ranges
                    .iter()
                    .filter(|r| r.server == node.rank)
                    .map(|r| [r.begin, r.last])
                    .collect();
                let holds = self
                    .routing
                    .ranges
                    .iter()
                    .filter(|r| r.copies().any(|c| c == node.rank))
                    .map(|r| [r.begin, r.last])
                    .collect();
                Some(ServerStatus {
                    member: Member {
                        id: node.node_id,
                        rank: node.rank,
                        live: self.ready.contains(peer),
                        last_heard_ms: heard(peer),
                    },
                    addr: addr.clone(),
                    ranges,
                    holds,
                })
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .filter_map(|peer| {
                let node = self.nodes.get(peer)?;
                Some(WorkerStatus {
                    member: Member {
                        id: node.node_id,
                        rank: node.rank,
                        live: self.live_workers.contains(peer),
                        last_heard_ms: heard(peer),
                    },
                    clock: clocks.get(&node.node_id).copied(),
                })
            })
            .collect();
        let ranges = self
            .routing
            .ranges
            .iter()
            .map(|r| RangeStatus {
                first: r.begin,
                last: r.last,
                chain: r.chain.clone(),
            })
            .collect();
        let tables = self
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.refused.is_none())
            .map(|(id, t)| {
                let held = replies
                    .iter()
                    .flat_map(|r| &r.tables)
                    .filter(|h| h.table == id as u32);
                let (keys, bytes) = held.fold((0, 0), |(k, b), h| (k + h.keys, b + h.bytes));
                TableStatus {
                    id: id as u32,
                    name: t.spec.name.clone(),
                    keys,
                    bytes,
                }
            })
            .collect();
        let status = JobStatus {
            routing_version: self.routing.version,
            servers,
            workers,
            ranges,
            tables,
        };
        let json = status.to_json();
        reply_control(io, ctl, &Control::Status { json });
    }
}
