//! Outstanding requests of a worker: tickets the caller waits on, and the per-server
//! sub-requests each ticket was split into.

use std::collections::HashMap;
use std::ops::Range;

use super::meter::{Metered, WorkerMeters};
use crate::EngineError;

/// A handle to an asynchronous push or pull; give it back to `Worker::wait`.
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a ticket must be waited on to learn whether the request succeeded"]
pub struct Ticket(pub(crate) u64);

impl Ticket {
    /// The ticket's number (for logs).
    pub fn id(&self) -> u64 {
        self.0
    }
}

/// What a finished request produced.
#[derive(Debug, PartialEq)]
pub enum Completed {
    /// Every server applied the push.
    Pushed,
    /// The pulled values, in key order (`keys × dim`).
    Pulled(Vec<f32>),
}

/// Where a pull's values go.
#[derive(Debug)]
pub(crate) enum PullInto {
    /// A buffer the worker owns until the caller waits.
    Owned(Vec<f32>),
    /// The caller's slice, lent for the duration of a blocking call (never stored here).
    Borrowed,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Push,
    Pull(PullInto),
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub kind: Kind,
    pub parts_left: usize,
    pub error: Option<EngineError>,
    /// With replication, what it takes to send an asynchronous request again after a failover,
    /// and the routing version it was sent under.
    pub resend: Option<(u32, Resend)>,
}

/// An asynchronous request as it can be sent again (its caller's slices are gone): a push
/// under its sequence number, so that servers which applied it drop it; a pull.
#[derive(Debug, Clone)]
pub(crate) enum Resend {
    Push {
        table: crate::table::TableId,
        keys: Vec<u64>,
        values: Vec<f32>,
        seq: u64,
    },
    Pull {
        table: crate::table::TableId,
        keys: Vec<u64>,
    },
}

/// One message to one server on behalf of a ticket.
#[derive(Debug, Clone)]
pub(crate) struct SubRequest {
    pub ticket: u64,
    pub server: u32,
    /// Which floats of the ticket's value buffer this request's reply fills.
    pub values: Range<usize>,
    /// What the metrics count it on, and when it was sent.
    pub metered: Option<Metered>,
}

/// The table of outstanding tickets and sub-requests.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    pub tickets: HashMap<u64, Pending>,
    pub requests: HashMap<u64, SubRequest>,
    pub meters: WorkerMeters,
    /// The push sequence numbers, and which are still open.
    pub seqs: super::sequence::PushNumbers,
    next_ticket: u64,
    next_request: u64,
}

impl Outstanding {
    pub fn open(&mut self, kind: Kind) -> u64 {
        self.next_ticket += 1;
        self.tickets.insert(
            self.next_ticket,
            Pending {
                kind,
                parts_left: 0,
                error: None,
                resend: None,
            },
        );
        self.next_ticket
    }

    pub fn add_request(
        &mut self,
        ticket: u64,
        server: u32,
        values: Range<usize>,
        metered: Option<Metered>,
    ) -> u64 {
        self.next_request += 1;
        self.requests.insert(
            self.next_request,
            SubRequest {
                ticket,
                server,
                values,
                metered,
            },
        );
        if let Some(p) = self.tickets.get_mut(&ticket) {
            p.parts_left += 1;
        }
        self.next_request
    }

    /// Marks a sub-request answered (with an error, if it failed) and returns it.
    pub fn complete(&mut self, request: u64, error: Option<EngineError>) -> Option<SubRequest> {
        let sub = self.requests.remove(&request)?;
        if let (Some(m), None) = (&sub.metered, &error) {
            self.meters.completed(sub.server, m, sub.values.len() * 4);
        }
        if let Some(p) = self.tickets.get_mut(&sub.ticket) {
            p.parts_left = p.parts_left.saturating_sub(1);
            p.error = match (p.error.take(), error) {
                (None, e) => e,
                // Misses gather (the caller can resend to those servers); any other error wins.
                (
                    Some(EngineError::KeyListMissed { mut servers }),
                    Some(EngineError::KeyListMissed { servers: more }),
                ) => {
                    servers.extend(more);
                    Some(EngineError::KeyListMissed { servers })
                }
                (Some(EngineError::KeyListMissed { .. }), Some(other)) => Some(other),
                (Some(first), _) => Some(first),
            };
            // Acknowledged by every server: never sent again, whether or not it is waited for.
            if let (0, None, Some((_, Resend::Push { seq, .. }))) =
                (p.parts_left, &p.error, &p.resend)
            {
                self.seqs.finish(*seq);
            }
        }
        Some(sub)
    }

    /// Fails every sub-request sent to `server` (its connection is gone) with `why()`.
    pub fn fail_server(&mut self, server: u32, why: impl Fn() -> EngineError) {
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, s)| s.server == server)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.complete(id, Some(why()));
        }
    }

    pub fn is_done(&self, ticket: u64) -> Option<bool> {
        self.tickets.get(&ticket).map(|p| p.parts_left == 0)
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Whether a push sent by this worker is still waiting for its acknowledgement.
    pub fn pushes_in_flight(&self) -> bool {
        self.requests.values().any(|r| {
            self.tickets
                .get(&r.ticket)
                .is_some_and(|p| matches!(p.kind, Kind::Push))
        })
    }

    /// Removes a finished ticket and turns it into its result.
    pub fn take(&mut self, ticket: u64) -> Result<Completed, EngineError> {
        let p = self
            .tickets
            .remove(&ticket)
            .ok_or(EngineError::UnknownTicket(ticket))?;
        if let Some(e) = p.error {
            return Err(e);
        }
        Ok(match p.kind {
            Kind::Push => Completed::Pushed,
            Kind::Pull(PullInto::Owned(v)) => Completed::Pulled(v),
            Kind::Pull(PullInto::Borrowed) => Completed::Pulled(Vec::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An asynchronous push ticket numbered `seq`, sent to one server.
    fn push_ticket(o: &mut Outstanding, seq: u64) -> u64 {
        let ticket = o.open(Kind::Push);
        let resend = Resend::Push {
            table: crate::table::TableId(1),
            keys: vec![1],
            values: vec![1.0],
            seq,
        };
        o.tickets.get_mut(&ticket).unwrap().resend = Some((1, resend));
        o.add_request(ticket, 0, 0..0, None)
    }

    #[test]
    fn an_acknowledged_push_closes_its_number_unwaited_and_a_failed_one_stays_open() {
        let mut o = Outstanding::default();
        let (first, second) = (o.seqs.open(), o.seqs.open());
        let (acked, failed) = (push_ticket(&mut o, first), push_ticket(&mut o, second));
        o.complete(failed, Some(EngineError::ServerLost(0)));
        o.complete(acked, None);
        let third = o.seqs.open();
        assert_eq!(
            o.seqs.open_span(third),
            2,
            "the failed push stays open for its resend"
        );
    }
}
