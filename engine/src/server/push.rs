//! Applying a push: drop a resend already applied (by the worker's sequence number, see
//! `dedupe`), resolve its keys, read its values (in place when raw, decoded otherwise) and
//! check their count once, there, then hand them to the kernels through the table's store;
//! acknowledge it.

use ferrops_net::codec::values::decode_values;
use ferrops_net::codec::ValueCodec;
use ferrops_net::{flags, CloseReason, Frame, FrameParts, Header, Io, Opcode, Status};

use super::dedupe::{Verdict, SEQ_WINDOW};
use super::request::Request;
use super::{Refusal, Server};
use crate::key_list::check_value_count;
use crate::store::Access;

impl Server {
    /// Applies a push unless it is a resend of one already applied, and acknowledges it: at
    /// once at the tail of its range's chain (with R = 1, every server), else once the rest of
    /// the chain acknowledged it (`chain`; resends are forwarded too, each replica drops its
    /// own).
    pub(super) fn push(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        let h = request.frame.header;
        let range = self.owner_range(request)?;
        if h.flags & flags::AGGREGATED != 0 {
            self.take_batch(request, range)?;
        } else {
            self.apply_once(request, range)?;
        }
        let rank = self.rank.unwrap_or(u32::MAX);
        match self.routing.successor(range as usize, rank) {
            Some(_) if self.batches_pushes(request) => self.batch_push(request, range, io),
            Some(next) => self.forward(request, range, next, io),
            None => {
                acknowledge(io, request.peer, &h);
                Ok(())
            }
        }
    }

    /// Applies worker push `request` to `range` unless its number says it was applied before.
    fn apply_once(&mut self, request: &Request, range: u32) -> Result<(), Refusal> {
        let h = request.frame.header;
        let (worker, seq) = (h.sender.get(), h.seq.get());
        match self.applied.judge(range, worker, seq, h.open_span.get()) {
            Verdict::TooFar { highest } => {
                // Accepting it would make every later real push of this worker look like a
                // resend.
                Err(Refusal::new(
                    Status::BadRequest,
                    format!(
                        "push sequence number {seq} of worker node {worker} jumps more than \
                         {SEQ_WINDOW} past its highest ({highest})"
                    ),
                ))
            }
            Verdict::Resend => {
                self.report.duplicate_pushes += 1;
                Ok(())
            }
            Verdict::Apply => {
                let mut decoded = std::mem::take(&mut self.decoded);
                let applied = self.apply_push(request, range, &mut decoded);
                self.decoded = decoded;
                applied?;
                self.applied.record(range, worker, seq);
                self.report.pushes += 1;
                Ok(())
            }
        }
    }

    /// Resolves a push's keys and applies its values (decoded into `scratch` when encoded) to
    /// all of them, or to those its value mask selects.
    fn apply_push(
        &mut self,
        request: &Request,
        range: u32,
        scratch: &mut Vec<f32>,
    ) -> Result<(), Refusal> {
        let (store, keys, resolved) = self.resolve_in(request, Access::Write, range)?;
        let per_key = store.spec().push_floats_per_key();
        let masked = request.frame.header.flags & flags::VALUES_MASKED != 0;
        // The slots of a list kept as runs are only spelled out for a mask to pick from.
        let subset = match masked {
            true => selected_slots(true, request.frame.extra(), &resolved.slots())?,
            false => None,
        };
        let rows = subset.as_ref().map_or(keys.len(), Vec::len);
        let values = push_values(&request.frame, rows, per_key, scratch)?;
        match subset {
            Some(slots) => store.apply(&slots, values),
            None => store.apply_resolved(&resolved, values),
        }
        .map_err(Refusal::from)
    }
}

/// Acknowledges push `h` to `peer` (a worker, or the server before this one in the chain).
pub(super) fn acknowledge(io: &mut Io<'_>, peer: ferrops_net::PeerId, h: &Header) {
    let mut ack = Header::new(Opcode::PushAck);
    ack.request_id = h.request_id;
    ack.table = h.table;
    ack.seq = h.seq;
    if let Err(e) = io.send(peer, &mut FrameParts::header_only(ack)) {
        io.close(peer, CloseReason::Error(e.to_string()));
    }
}

/// For a push that carries values for some of its keys only, the slots of those keys, read from
/// the bitmap in the extra section; `None` for an ordinary push.
fn selected_slots(masked: bool, mask: &[u8], slots: &[u32]) -> Result<Option<Vec<u32>>, Refusal> {
    if !masked {
        return Ok(None);
    }
    if mask.len() != slots.len().div_ceil(8) {
        let msg = format!(
            "value mask of {} bytes for {} keys",
            mask.len(),
            slots.len()
        );
        return Err(Refusal::new(Status::BadValues, msg));
    }
    let chosen = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| mask[i / 8] & (1 << (i % 8)) != 0)
        .map(|(_, &s)| s)
        .collect();
    Ok(Some(chosen))
}

/// A push's values as f32, exactly `per_key` of them for each of its `rows` or a refusal: read
/// in place for raw values, decoded into `scratch` otherwise. This is the one check of a push's
/// value count; the store and the kernels are handed values that passed it.
fn push_values<'f>(
    frame: &'f Frame,
    rows: usize,
    per_key: usize,
    scratch: &'f mut Vec<f32>,
) -> Result<&'f [f32], Refusal> {
    let bad = |e: String| Refusal::new(Status::BadValues, e);
    match ValueCodec::from_id(frame.header.value_codec).map_err(|e| bad(e.to_string()))? {
        ValueCodec::Raw => {
            let values = frame.values_f32().map_err(|e| bad(e.to_string()))?;
            check_value_count(rows, values.len(), per_key).map_err(|e| bad(e.to_string()))?;
            Ok(values)
        }
        codec => {
            // Decoding into exactly this many values refuses a stream of any other count.
            scratch.clear();
            scratch.resize(rows * per_key, 0.0);
            decode_values(codec, frame.values_bytes(), scratch).map_err(|e| bad(e.to_string()))?;
            Ok(scratch)
        }
    }
}
