//! Surveys: the scheduler asks every server what it holds and which clocks it counted
//! (`Summarize`) and acts once every server answered (`Summary`). A server that leaves the job
//! meanwhile (failover) is no longer waited for. Surveys serve a worker's admission (its start
//! clock, then the confirmation that every server counts it), `ferrops ctl status` and the
//! clock of a `ferrops ctl checkpoint`.

use std::collections::{BTreeMap, BTreeSet};

use ferrops_net::{Io, PeerId};

use super::Scheduler;
use crate::control::{reply_control, Control, ServerSummary};

/// What a survey's answers are for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Purpose {
    /// The start clock of joining worker `peer`.
    Join { peer: PeerId },
    /// Every server has heard that `peer` joins at `start` (servers answer in order).
    ConfirmJoin { peer: PeerId, start: u32 },
    /// `ferrops ctl status` asked on connection `ctl`.
    Status { ctl: PeerId },
    /// The clock of the checkpoint `ferrops ctl checkpoint` asked for.
    CtlCheckpoint,
}

#[derive(Debug)]
struct Survey {
    purpose: Purpose,
    waiting: BTreeSet<PeerId>,
    replies: Vec<ServerSummary>,
}

/// The surveys in progress.
#[derive(Debug, Default)]
pub(super) struct Surveys {
    next_id: u64,
    open: BTreeMap<u64, Survey>,
}

impl Scheduler {
    /// Asks every server for its summary, for `purpose`.
    pub(super) fn start_survey(&mut self, purpose: Purpose, io: &mut Io<'_>) {
        self.surveys.next_id += 1;
        let id = self.surveys.next_id;
        let waiting: BTreeSet<PeerId> = self.servers.iter().map(|(p, _)| *p).collect();
        for &server in &waiting {
            reply_control(io, server, &Control::Summarize { id });
        }
        let survey = Survey {
            purpose,
            waiting,
            replies: Vec::new(),
        };
        self.surveys.open.insert(id, survey);
        self.maybe_finish_survey(id, io);
    }

    /// Server `peer` answered survey `id`.
    pub(super) fn summary_received(
        &mut self,
        peer: PeerId,
        id: u64,
        summary: ServerSummary,
        io: &mut Io<'_>,
    ) {
        let Some(survey) = self.surveys.open.get_mut(&id) else {
            return;
        };
        if survey.waiting.remove(&peer) {
            survey.replies.push(summary);
        }
        self.maybe_finish_survey(id, io);
    }

    /// Server `peer` left the job: no survey waits for it any more.
    pub(super) fn survey_server_gone(&mut self, peer: PeerId, io: &mut Io<'_>) {
        let ids: Vec<u64> = self.surveys.open.keys().copied().collect();
        for id in ids {
            if let Some(survey) = self.surveys.open.get_mut(&id) {
                survey.waiting.remove(&peer);
            }
            self.maybe_finish_survey(id, io);
        }
    }

    fn maybe_finish_survey(&mut self, id: u64, io: &mut Io<'_>) {
        if self.stop.is_some() || !self.surveys.open[&id].waiting.is_empty() {
            return;
        }
        let Some(survey) = self.surveys.open.remove(&id) else {
            return;
        };
        let clocks = clocks_heard(&survey.replies);
        match survey.purpose {
            Purpose::Join { peer } => self.join_surveyed(peer, &clocks, io),
            Purpose::ConfirmJoin { peer, start } => self.welcome_joined(peer, start, io),
            Purpose::Status { ctl } => self.answer_status(ctl, &survey.replies, &clocks, io),
            Purpose::CtlCheckpoint => self.write_ctl_checkpoint(&clocks, io),
        }
    }

    /// The fewest clocks a live worker has completed, as `clocks` counts them (0 with none).
    pub(super) fn slowest_live_clock(&self, clocks: &BTreeMap<u32, u32>) -> u32 {
        self.live_workers
            .iter()
            .filter_map(|p| self.nodes.get(p))
            .map(|n| clocks.get(&n.node_id).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }
}

/// Clocks completed by each worker (node id): the most any server counted (a server may not
/// have read a worker's latest clock yet; none counts one the worker did not finish).
pub(super) fn clocks_heard(replies: &[ServerSummary]) -> BTreeMap<u32, u32> {
    let mut heard = BTreeMap::new();
    for (worker, clock) in replies.iter().flat_map(|r| r.clocks.iter().copied()) {
        let c = heard.entry(worker).or_insert(0);
        *c = clock.max(*c);
    }
    heard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_clock_is_the_most_any_server_heard() {
        let a = ServerSummary {
            clocks: vec![(10, 3), (11, 5)],
            tables: Vec::new(),
        };
        let b = ServerSummary {
            clocks: vec![(10, 4), (11, 2), (12, 1)],
            tables: Vec::new(),
        };
        let heard = clocks_heard(&[a, b]);
        assert_eq!(
            heard.into_iter().collect::<Vec<_>>(),
            [(10, 4), (11, 5), (12, 1)]
        );
    }
}
