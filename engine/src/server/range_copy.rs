//! Range copy, the source's side: a server whose successor in a range's chain is a learner
//! (`KeyRange::learner`) sends it the range a piece at a time while it keeps serving.
//!
//! When the source adopts the routing that names the learner, it sends `CopyStep::Begin` (the
//! tables, Adam's step counts, the dedupe state — which pushes were applied — and the clocks) and takes a snapshot of the
//! keys each table holds; from then on it forwards the range's pushes to the learner like to
//! any successor. Between rounds of events (the event loop's `background` hook) it sends
//! `Rows` of the snapshot's keys, read from the store at that moment, up to [`TURN`] bytes a
//! round and as long as the connection has less than [`WINDOW`] bytes queued, and finally
//! `End`. Everything travels on the one connection,
//! in the order the source applied it: a row is sent after every push it reflects, and a push
//! forwarded before a row is overwritten by that row, which already includes it; keys created
//! after the snapshot get every push that touched them by forwarding. So when `End` arrives
//! the learner's copy equals the source's, row for row.

use ferrops_net::{FrameParts, Header, Io, Opcode};
use zerocopy::IntoBytes;

use super::Server;
use crate::control::CopyStep;

/// Keys per `Rows` frame.
const CHUNK_KEYS: usize = 1 << 16;
/// Bytes queued towards the learner beyond which the copy waits (pushes and pulls keep flowing
/// meanwhile; the queue's draining wakes the loop).
const WINDOW: usize = 8 << 20;
/// Bytes of rows one turn sends at most before the loop serves requests again (a turn comes
/// after every round of events, so this bounds what a copy adds to a request's wait).
const TURN: usize = 4 << 20;

/// A copy in progress from this server to a learner.
pub(super) struct Outgoing {
    range: u32,
    /// The learner's rank.
    to: u32,
    /// Per table: its id and the keys (with their slots) it held when the copy began.
    tables: Vec<(u32, Vec<(u64, u32)>)>,
    /// Where the copy stands: the table, and the next key of its snapshot.
    table: usize,
    next: usize,
}

impl Server {
    /// Under a routing just adopted: starts a copy for every range whose learner comes right
    /// after this server, and drops copies whose learner is no longer there.
    pub(super) fn start_copies(&mut self, io: &mut Io<'_>) {
        let Some(rank) = self.rank else { return };
        let routing = &self.routing;
        let wanted = |range: u32, to: u32| {
            let r = &routing.ranges[range as usize];
            r.learner == Some(to) && routing.successor(range as usize, rank) == Some(to)
        };
        self.copies_out.retain(|c| {
            let keep = wanted(c.range, c.to);
            if !keep {
                tracing::warn!("copy of range {} to server {} abandoned", c.range, c.to);
            }
            keep
        });
        // A copy sent whole is not sent again while its learner waits for the routing that
        // counts it (a second `Begin` would empty the learner's copy after it reported it).
        self.copies_sent.retain(|&(range, to)| wanted(range, to));
        let starts: Vec<(u32, u32)> = routing
            .held_by(rank)
            .filter_map(|i| {
                let to = routing.ranges[i].learner?;
                let ours = routing.successor(i, rank) == Some(to);
                let running = self
                    .copies_out
                    .iter()
                    .any(|c| c.range == i as u32 && c.to == to);
                let sent = self.copies_sent.contains(&(i as u32, to));
                (ours && !running && !sent).then_some((i as u32, to))
            })
            .collect();
        for (range, to) in starts {
            self.begin_copy(range, to, io);
        }
    }

    /// Sends `Begin` of range `range` to learner `to` and snapshots the keys to send.
    fn begin_copy(&mut self, range: u32, to: u32, io: &mut Io<'_>) {
        let Some(&peer) = self.server_peers.get(&to) else {
            tracing::error!("cannot copy range {range} to server {to}: not connected");
            return;
        };
        let held: Vec<(u32, &crate::store::TableStore)> = self
            .tables
            .iter()
            .filter(|(&(_, r), _)| r == range)
            .map(|(&(t, _), store)| (t, store))
            .collect();
        let begin = CopyStep::Begin {
            range,
            version: self.routing.version,
            tables: held
                .iter()
                .map(|(t, s)| (*t, s.spec().clone(), s.adam_step()))
                .collect(),
            applied: self.applied.export(range),
            clocks: self.clocks.completed(),
        };
        let tables = held.iter().map(|(t, s)| (*t, s.key_slots())).collect();
        let keys: usize = held.iter().map(|(_, s)| s.len()).sum();
        if !send_step(io, (peer, self.routing.version), &begin, &[], &[]) {
            return;
        }
        tracing::info!("copying range {range} ({keys} keys) to server {to}");
        self.copies_out.push(Outgoing {
            range,
            to,
            tables,
            table: 0,
            next: 0,
        });
    }

    /// Sends what the copies in progress may send now; whether any can send more at once.
    pub(super) fn continue_copies(&mut self, io: &mut Io<'_>) -> bool {
        let mut more = false;
        let mut i = 0;
        while i < self.copies_out.len() {
            match self.copy_some(i, io) {
                Progress::Waiting => i += 1,
                Progress::More => {
                    more = true;
                    i += 1;
                }
                Progress::Finished | Progress::Failed => {
                    self.copies_out.swap_remove(i);
                }
            }
        }
        more
    }

    /// Sends rows of copy `i` until its window is full or it is finished.
    fn copy_some(&mut self, i: usize, io: &mut Io<'_>) -> Progress {
        let (range, to) = (self.copies_out[i].range, self.copies_out[i].to);
        let Some(&peer) = self.server_peers.get(&to) else {
            return Progress::Failed;
        };
        let version = self.routing.version;
        let mut rows = std::mem::take(&mut self.gather);
        let mut sent = 0;
        let progress = loop {
            if io.queued_bytes(peer) >= WINDOW {
                break Progress::Waiting;
            }
            let copy = &mut self.copies_out[i];
            let Some((table, snapshot)) = copy.tables.get(copy.table) else {
                // Rows already sent reflect pushes a head replicating after aggregation may
                // still hold in a batch: their numbers must reach the learner before it counts
                // as a copy (else, promoted, it would apply their resends again).
                self.send_open_batches(range, io);
                let end = CopyStep::End { range };
                if !send_step(io, (peer, version), &end, &[], &[]) {
                    break Progress::Failed;
                }
                tracing::info!("range {range} sent to server {to}");
                self.copies_sent.insert((range, to));
                break Progress::Finished;
            };
            let table = *table;
            let piece = &snapshot[copy.next..snapshot.len().min(copy.next + CHUNK_KEYS)];
            if piece.is_empty() {
                copy.table += 1;
                copy.next = 0;
                continue;
            }
            copy.next += piece.len();
            let keys: Vec<u64> = piece.iter().map(|&(k, _)| k).collect();
            let slots: Vec<u32> = piece.iter().map(|&(_, s)| s).collect();
            let Some(store) = self.tables.get(&(table, range)) else {
                break Progress::Failed;
            };
            rows.clear();
            store.export_rows(&slots, &mut rows);
            let step = CopyStep::Rows { range, table };
            if !send_step(io, (peer, version), &step, &keys, rows.as_bytes()) {
                break Progress::Failed;
            }
            if io.queued_bytes(peer) >= WINDOW {
                break Progress::Waiting;
            }
            sent += keys.len() * 8 + rows.len() * 4;
            if sent >= TURN {
                break Progress::More;
            }
        };
        self.gather = rows;
        progress
    }
}

/// What a copy did in one turn.
enum Progress {
    /// Its window is full: the queue's draining wakes the loop.
    Waiting,
    /// It sent its turn's bytes and may send more at once.
    More,
    Finished,
    /// Its connection is gone or the range is no longer held here.
    Failed,
}

/// Sends one step (with the keys and rows of a `Rows` step) to `peer`, stamped with this
/// server's routing `version` (a learner that has not adopted it yet holds the step until it
/// has); whether it went out.
fn send_step(
    io: &mut Io<'_>,
    (peer, version): (ferrops_net::PeerId, u32),
    step: &CopyStep,
    keys: &[u64],
    rows: &[u8],
) -> bool {
    let mut header = Header::new(Opcode::Copy);
    header.routing_version = version.into();
    header.key_count = (keys.len() as u32).into();
    let extra = step.encode();
    let values = [rows];
    let mut parts = FrameParts {
        header,
        keys: keys.as_bytes(),
        values: &values,
        extra: &extra,
    };
    match io.send(peer, &mut parts) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("range copy: sending to peer {peer} failed: {e}");
            false
        }
    }
}
