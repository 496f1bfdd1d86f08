//! Replication after aggregation (`ReplicationMode::Aggregated`, the OSDI'14 paper's): a head
//! applies its workers' pushes at once, holds their acknowledgements, and sends the chain one
//! update per batch — the resulting rows of every key the batch touched (values and rule
//! state, as the store exports them) with the batch's (worker, sequence, open span) numbers.
//! Each replica overwrites those rows and records those numbers, so it stays bit-identical to
//! the head and drops the same resends; the batch's pushes are acknowledged when the tail has
//! applied it.
//!
//! A batch is per (table, range). It is sent when every live worker has a push in it (a round
//! of blocking pushes: the paper's "aggregate, then replicate, then acknowledge"), when it
//! touched [`MAX_BATCH_KEYS`] keys, or when its oldest push has waited [`AGGREGATION_WINDOW`].
//! A resend joins the open batch too — keys and all — although it is not applied again: its
//! acknowledgement then comes after everything sent down the chain before it has been applied
//! there, which a head that was a replica a moment ago needs (what it forwarded as a replica
//! may still be on its way to the tail). Its numbers travel with the batch like those of a push
//! applied now: the rows sent reflect it, and a replica that refused the batch it first came
//! in (a routing version it had not adopted yet) would otherwise hold its effect without its
//! number, and apply it again when the worker resends it to that replica promoted to head.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrops_net::{flags, Header, Io, Opcode, PeerId, Status};
use zerocopy::IntoBytes;

use super::chain::unreplicated;
use super::push::acknowledge;
use super::request::Request;
use super::{Refusal, Server};
use crate::store::{Access, SharedKeys};

/// How long a push waits at most for the rest of its batch before the batch is replicated.
pub const AGGREGATION_WINDOW: Duration = Duration::from_millis(5);
/// Keys a batch touches at most before it is replicated.
const MAX_BATCH_KEYS: usize = 1 << 20;
/// Bytes of one push's numbers in a batch's extra section: worker u32, sequence u64, span u32.
const ENTRY_BYTES: usize = 16;

/// One push's numbers: (worker node, sequence number, open span).
type PushNumbers = (u32, u64, u32);

/// Pushes a head applied to one (table, range) and has not sent down the chain yet.
pub(super) struct Batch {
    /// The key list of each push, with its signature (0: unsigned).
    lists: Vec<(SharedKeys, u64)>,
    /// Keys over all its lists.
    keys: usize,
    /// The acknowledgements owed once it is replicated: to whom, for which push.
    acks: Vec<(PeerId, Header)>,
    /// The numbers (worker, sequence, open span) of its pushes, resends included, for the
    /// replicas' dedupe: the rows it sends reflect every one of them.
    pushes: Vec<PushNumbers>,
    workers: BTreeSet<u32>,
    since: Instant,
}

/// What a batch sends: its keys (sorted) and their signature, their rows, and the extra
/// section.
type BatchFrame = (SharedKeys, u64, Vec<f32>, Vec<u8>);

/// A batch sent down the chain, waiting for its acknowledgement.
pub(super) struct BatchInFlight {
    acks: Vec<(PeerId, Header)>,
    pub(super) range: u32,
    /// The server it was sent to.
    pub(super) to: u32,
    sent: Instant,
}

impl Server {
    /// Whether this server holds the acknowledgement of worker push `request` to `range` for
    /// a batch instead of forwarding it: aggregation is on and the range has a successor.
    pub(super) fn batches_pushes(&self, request: &Request) -> bool {
        self.aggregated && request.from_server.is_none()
    }

    /// Puts worker push `request` to `range` (applied now, or a resend of one applied before)
    /// into its batch, and sends the batch down the chain if it is complete.
    pub(super) fn batch_push(
        &mut self,
        request: &Request,
        range: u32,
        io: &mut Io<'_>,
    ) -> Result<(), Refusal> {
        let h = request.frame.header;
        let keys = request.shared_keys()?;
        let id = (h.table.get(), range);
        let batch = self.batches.entry(id).or_insert_with(Batch::new);
        batch.add(keys, request.peer, h);
        let full = batch.keys >= MAX_BATCH_KEYS;
        let live = self.clocks.live_clocks();
        if live.iter().all(|(w, _)| batch.workers.contains(w)) || full {
            self.send_batch(id, io);
        } else if live.iter().all(|(w, _)| self.waiting_on_batch(*w)) {
            // Every worker waits for an acknowledgement held here: no push completes a batch
            // before one is sent.
            let all: Vec<(u32, u32)> = self.batches.keys().copied().collect();
            for id in all {
                self.send_batch(id, io);
            }
        }
        Ok(())
    }

    /// Whether worker node `worker` has a push in an open batch.
    fn waiting_on_batch(&self, worker: u32) -> bool {
        self.batches.values().any(|b| b.workers.contains(&worker))
    }

    /// Sends the batches whose oldest push has waited the aggregation window.
    pub(super) fn send_aged_batches(&mut self, io: &mut Io<'_>) {
        if self.batches.is_empty() {
            return;
        }
        let now = Instant::now();
        let aged: Vec<(u32, u32)> = self
            .batches
            .iter()
            .filter(|(_, b)| now.duration_since(b.since) >= AGGREGATION_WINDOW)
            .map(|(&id, _)| id)
            .collect();
        for id in aged {
            self.send_batch(id, io);
        }
    }

    /// Sends every open batch of `range` down its chain now.
    pub(super) fn send_open_batches(&mut self, range: u32, io: &mut Io<'_>) {
        let open: Vec<(u32, u32)> = self
            .batches
            .keys()
            .filter(|&&(_, r)| r == range)
            .copied()
            .collect();
        for id in open {
            self.send_batch(id, io);
        }
    }

    /// Sends batch `(table, range)` to the next server of the range's chain; with none left,
    /// acknowledges its pushes at once, and refuses them (`Unavailable`: the worker resends)
    /// when the next server cannot be reached.
    fn send_batch(&mut self, (table, range): (u32, u32), io: &mut Io<'_>) {
        let Some(batch) = self.batches.remove(&(table, range)) else {
            return;
        };
        let rank = self.rank.unwrap_or(u32::MAX);
        let Some(next) = self.routing.successor(range as usize, rank) else {
            for (peer, h) in &batch.acks {
                acknowledge(io, *peer, h);
            }
            return;
        };
        let sent = self.batch_frame(table, range, &batch).and_then(|frame| {
            let (keys, signature, rows, extra) = frame;
            let id = self.next_forward;
            self.next_forward += 1;
            let mut h = Header::new(Opcode::Push);
            h.flags = flags::FORWARDED | flags::AGGREGATED;
            h.table = table.into();
            h.request_id = id.into();
            h.routing_version = self.routing.version.into();
            h.key_count = (keys.len() as u32).into();
            h.key_signature = signature.into();
            let by_signature = self.next_holds_list(next, table, signature, keys.len());
            if by_signature {
                h.flags |= flags::KEYS_BY_SIGNATURE;
            }
            let key_bytes = if by_signature { &[] } else { keys.as_bytes() };
            let values = [rows.as_bytes()];
            self.send_to_successor(next, h, key_bytes, &values, &extra, io)?;
            Ok(id)
        });
        match sent {
            Ok(id) => {
                self.report.replicated_batches += 1;
                let flight = BatchInFlight {
                    acks: batch.acks,
                    range,
                    to: next,
                    sent: Instant::now(),
                };
                self.batches_out.insert(id, flight);
            }
            Err(refusal) => {
                for (peer, h) in &batch.acks {
                    self.refuse(io, *peer, h, &refusal);
                }
            }
        }
    }

    /// A batch's keys (sorted) with their signature, rows and extra section (the rule's step
    /// count, then its pushes' numbers). When every push of the batch had the same key list
    /// (a round of workers pushing the same keys), that list is the batch's, resolved from the
    /// table's cache and sent by its signature where the next server holds it.
    fn batch_frame(
        &mut self,
        table: u32,
        range: u32,
        batch: &Batch,
    ) -> Result<BatchFrame, Refusal> {
        let store = self.tables.get_mut(&(table, range)).ok_or_else(|| {
            let msg = format!("table {table} of range {range} is no longer held here");
            Refusal::new(Status::Unavailable, msg)
        })?;
        let (keys, signature) = merged(&batch.lists);
        let (resolved, _) = store
            .resolve_shared(signature, &keys, Access::Write)
            .map_err(Refusal::from)?;
        let mut rows = Vec::with_capacity(keys.len() * store.row_floats());
        store.export_rows(&resolved.slots(), &mut rows);
        let extra = batch.extra(store.adam_step());
        Ok((keys, signature, rows, extra))
    }

    /// A replica takes batch `request` of `range` (from the server before it): records its
    /// pushes as applied and overwrites its rows.
    pub(super) fn take_batch(&mut self, request: &Request, range: u32) -> Result<(), Refusal> {
        let bad = |msg: String| Refusal::new(Status::BadRequest, msg);
        if request.from_server.is_none() {
            return Err(bad("only a chain's head sends aggregated updates".into()));
        }
        let (step, pushes) = read_extra(request.frame.extra()).map_err(bad)?;
        let rows = request
            .frame
            .values_f32()
            .map_err(|e| Refusal::new(Status::BadValues, e.to_string()))?;
        let (store, _, resolved) = self.resolve_in(request, Access::Write, range)?;
        store
            .import_rows_at(&resolved.slots(), rows)
            .map_err(Refusal::from)?;
        store.set_adam_step(step);
        self.report.pushes += self.applied.record_reflected(range, &pushes);
        Ok(())
    }

    /// The acknowledgement (`Ok`) or refusal of batch `id`, if it is one: every push it holds
    /// is answered the same way. Whether it was a batch.
    pub(super) fn batch_answered(
        &mut self,
        id: u64,
        refusal: Option<&Refusal>,
        io: &mut Io<'_>,
    ) -> bool {
        let Some(flight) = self.batches_out.remove(&id) else {
            return false;
        };
        match refusal {
            None => {
                self.meters.replicated(flight.sent.elapsed());
                for (peer, h) in &flight.acks {
                    acknowledge(io, *peer, h);
                }
            }
            Some(refusal) => {
                for (peer, h) in &flight.acks {
                    self.refuse(io, *peer, h, refusal);
                }
            }
        }
        true
    }

    /// Refuses (`Unavailable`: the workers resend) the open batches of ranges this server no
    /// longer heads.
    pub(super) fn fail_open_batches(&mut self, why: &str, io: &mut Io<'_>) {
        let rank = self.rank.unwrap_or(u32::MAX);
        let routing = &self.routing;
        let heads = |range: u32| routing.ranges.get(range as usize).map(|r| r.server) == Some(rank);
        let not_head: Vec<(u32, u32)> = self
            .batches
            .keys()
            .filter(|&&(_, range)| !heads(range))
            .copied()
            .collect();
        let refusal = unreplicated(why);
        for id in not_head {
            if let Some(batch) = self.batches.remove(&id) {
                for (peer, h) in &batch.acks {
                    self.refuse(io, *peer, h, &refusal);
                }
            }
        }
    }
}

impl Batch {
    fn new() -> Batch {
        Batch {
            lists: Vec::new(),
            keys: 0,
            acks: Vec::new(),
            pushes: Vec::new(),
            workers: BTreeSet::new(),
            since: Instant::now(),
        }
    }

    /// Adds worker push `h` (keys `keys`, from `peer`), applied now or a resend: its keys, the
    /// acknowledgement it is owed and its numbers.
    fn add(&mut self, keys: SharedKeys, peer: PeerId, h: Header) {
        self.keys += keys.len();
        self.lists.push((keys, h.key_signature.get()));
        self.acks.push((peer, h));
        let sender = h.sender.get();
        self.pushes.push((sender, h.seq.get(), h.open_span.get()));
        self.workers.insert(sender);
    }

    /// The extra section of its update: Adam's `step` count, then its pushes' numbers.
    fn extra(&self, step: u32) -> Vec<u8> {
        let mut extra = Vec::with_capacity(4 + self.pushes.len() * ENTRY_BYTES);
        extra.extend_from_slice(&step.to_le_bytes());
        for &(worker, seq, span) in &self.pushes {
            extra.extend_from_slice(&worker.to_le_bytes());
            extra.extend_from_slice(&seq.to_le_bytes());
            extra.extend_from_slice(&span.to_le_bytes());
        }
        extra
    }
}

/// Reads an update's extra section (see [`Batch::extra`]): the step count and the pushes'
/// (worker, sequence, open span) numbers.
fn read_extra(extra: &[u8]) -> Result<(u32, Vec<PushNumbers>), String> {
    let Some((step, entries)) = extra.split_first_chunk::<4>() else {
        return Err("an aggregated update without its step count".into());
    };
    if entries.len() % ENTRY_BYTES != 0 {
        return Err(format!(
            "aggregated push numbers of {} bytes",
            entries.len()
        ));
    }
    let pushes = entries
        .chunks_exact(ENTRY_BYTES)
        .map(|e| {
            let worker = u32::from_le_bytes(e[..4].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(e[4..12].try_into().expect("8 bytes"));
            let span = u32::from_le_bytes(e[12..].try_into().expect("4 bytes"));
            (worker, seq, span)
        })
        .collect();
    Ok((u32::from_le_bytes(*step), pushes))
}

/// The keys of a batch's pushes, sorted and unique, with their signature: the one list when
/// every push had it (the common case, and no copy), else their union (unsigned).
fn merged(lists: &[(SharedKeys, u64)]) -> (SharedKeys, u64) {
    let (first, signature) = &lists[0];
    let same = |(list, _): &(SharedKeys, u64)| Arc::ptr_eq(list, first) || list == first;
    if lists[1..].iter().all(same) {
        let signed = lists.iter().all(|(_, s)| s == signature);
        return (first.clone(), if signed { *signature } else { 0 });
    }
    let mut union: Vec<u64> = lists.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    union.sort_unstable();
    union.dedup();
    (Arc::new(union), 0)
}

#[cfg(test)]
mod tests {
    use super::super::dedupe::{AppliedPushes, Verdict};
    use super::*;

    /// A push the head applied earlier, whose first batch the replica refused (a routing it
    /// had not adopted yet), is resent; the resend joins a batch whose rows reflect it. The
    /// replica taking that batch must learn its number: promoted to head, it is sent the same
    /// push once more by a worker whose acknowledgement the old head never sent.
    #[test]
    fn a_resend_in_a_batch_gives_the_replica_its_number() {
        let mut resend = Header::new(Opcode::Push);
        resend.sender = 9.into();
        resend.seq = 5.into();
        resend.open_span = 1.into();
        let mut batch = Batch::new();
        batch.add(Arc::new(vec![1, 2]), 0, resend);
        let (step, pushes) = read_extra(&batch.extra(3)).expect("a well-formed extra section");
        assert_eq!(step, 3);
        let mut replica = AppliedPushes::default();
        assert_eq!(replica.record_reflected(0, &pushes), 1);
        assert_eq!(replica.judge(0, 9, 5, 1), Verdict::Resend);
    }

    #[test]
    fn a_torn_extra_section_is_refused() {
        assert!(read_extra(&[1, 0]).is_err());
        assert!(read_extra(&[0; 4 + ENTRY_BYTES + 3]).is_err());
    }

    #[test]
    fn equal_lists_are_the_batch_list_and_others_are_merged_unsigned() {
        let a: SharedKeys = Arc::new(vec![1, 5, 9]);
        let b: SharedKeys = Arc::new(vec![1, 5, 9]);
        let (keys, sig) = merged(&[(a.clone(), 7), (b, 7)]);
        assert!(Arc::ptr_eq(&keys, &a));
        assert_eq!(sig, 7);
        let c: SharedKeys = Arc::new(vec![2, 5, 10]);
        let (keys, sig) = merged(&[(a.clone(), 7), (c, 8), (a, 7)]);
        assert_eq!(*keys, vec![1, 2, 5, 9, 10]);
        assert_eq!(sig, 0);
    }
}
