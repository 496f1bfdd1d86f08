//! Answering a pull: when the table's consistency model allows it now, with slices of
//! storage (or values gathered, or encoded, or only the changed rows), written by `writev` or,
//! over RDMA, straight into the worker's buffer; otherwise the pull is parked until the clocks
//! it waits for arrive.

use ferrops_net::codec::values::encode_values;
use ferrops_net::codec::ValueCodec;
use ferrops_net::{flags, CloseReason, Frame, FrameParts, Header, Io, Opcode, PeerId, Status};

use super::request::Request;
use super::{Refusal, Server};
use crate::filter::ChangedSince;
use crate::store::Access;

/// Slot runs above this count are gathered into one buffer instead of one iovec each.
const MAX_RUNS_PER_REPLY: usize = 64;

impl Server {
    pub(super) fn pull_or_park(
        &mut self,
        request: Request,
        io: &mut Io<'_>,
    ) -> Result<(), Refusal> {
        let h = request.frame.header;
        let required = self
            .table_spec(h.table.get())?
            .consistency
            .required_completed(h.clock.get());
        if self.clocks.min_completed() < required {
            self.report.parked_pulls += 1;
            self.meters.parked();
            self.parked.park(required, request);
            return Ok(());
        }
        self.answer_pull(&request, io)
    }

    fn answer_pull(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        if request.frame.header.flags & flags::PULL_CHANGED != 0 {
            return self.answer_changed_pull(request, io);
        }
        let h = request.frame.header;
        let peer = request.peer;
        let mut gather = std::mem::take(&mut self.gather);
        let (store, keys, resolved) = self.resolve(request, Access::Read)?;
        let mut reply = Header::new(Opcode::PullReply);
        reply.request_id = h.request_id;
        reply.table = h.table;
        reply.clock = h.clock;
        reply.key_count = (keys.len() as u32).into();
        let codec = store.spec().codec();
        let sent = if codec != ValueCodec::Raw {
            // Encoded replies are built in a buffer: gather, then encode.
            store.gather(&resolved.slots(), &mut gather);
            let mut encoded = std::mem::take(&mut self.encoded);
            encoded.clear();
            let result = match encode_values(codec, &gather, &mut encoded) {
                Ok(_) => {
                    reply.value_codec = codec.id();
                    let bytes = [encoded.as_slice()];
                    io.send(
                        peer,
                        &mut FrameParts {
                            header: reply,
                            keys: &[],
                            values: &bytes,
                            extra: &[],
                        },
                    )
                }
                Err(e) => {
                    self.encoded = encoded;
                    self.gather = gather;
                    return Err(Refusal::new(
                        Status::BadValues,
                        format!("cannot encode: {e}"),
                    ));
                }
            };
            self.encoded = encoded;
            result
        } else if resolved.runs.len() <= MAX_RUNS_PER_REPLY {
            let slices: Vec<&[u8]> = resolved
                .runs
                .iter()
                .map(|&(s, n)| store.run_bytes(s, n))
                .collect();
            let mut frame = FrameParts {
                header: reply,
                keys: &[],
                values: &slices,
                extra: &[],
            };
            let region = store.values_region();
            send_raw_pull_reply(io, peer, &request.frame, &mut frame, Some(region))?
        } else {
            store.gather(&resolved.slots(), &mut gather);
            io.metrics().values_copied(gather.len() * 4);
            let bytes = [zerocopy::IntoBytes::as_bytes(gather.as_slice())];
            let mut frame = FrameParts {
                header: reply,
                keys: &[],
                values: &bytes,
                extra: &[],
            };
            send_raw_pull_reply(io, peer, &request.frame, &mut frame, None)?
        };
        self.gather = gather;
        if let Err(e) = sent {
            io.close(peer, CloseReason::Error(e.to_string()));
        }
        self.report.pulls += 1;
        Ok(())
    }

    /// Answers a pull with only the rows that changed since this worker's last such pull of
    /// them: a bitmap of the keys in the extra section, their rows in the values section.
    fn answer_changed_pull(&mut self, request: &Request, io: &mut Io<'_>) -> Result<(), Refusal> {
        let h = request.frame.header;
        let theta = <[u8; 4]>::try_from(request.frame.extra())
            .map(f32::from_le_bytes)
            .map_err(|_| {
                Refusal::new(
                    Status::BadRequest,
                    "a changed-only pull carries θ as 4 bytes",
                )
            })?;
        let mut gather = std::mem::take(&mut self.gather);
        let (store, keys, resolved) = self.resolve(request, Access::Read)?;
        let (dim, codec) = (store.spec().dim as usize, store.spec().codec());
        store.gather(&resolved.slots(), &mut gather);
        let tracker = match self.changed.entry((request.peer, h.table.get())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                ChangedSince::new(dim, theta, 1e-6)
                    .map_err(|e| Refusal::new(Status::BadRequest, e.to_string()))?,
            ),
        };
        let rows = tracker
            .select(keys, &gather)
            .map_err(|e| Refusal::new(Status::BadValues, e.to_string()))?;
        let [offered, sent, dropped] = &self.meters.changed;
        offered.inc_by(keys.len() as u64);
        sent.inc_by(rows.len() as u64);
        dropped.inc_by((keys.len() - rows.len()) as u64);
        let mut mask = vec![0u8; keys.len().div_ceil(8)];
        let mut values = Vec::with_capacity(rows.len() * dim);
        for &r in &rows {
            let r = r as usize;
            mask[r / 8] |= 1 << (r % 8);
            values.extend_from_slice(&gather[r * dim..(r + 1) * dim]);
        }
        self.gather = gather;
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        encode_values(codec, &values, &mut encoded)
            .map_err(|e| Refusal::new(Status::BadValues, format!("cannot encode: {e}")))?;
        let mut reply = Header::new(Opcode::PullReply);
        reply.request_id = h.request_id;
        reply.table = h.table;
        reply.clock = h.clock;
        reply.key_count = (keys.len() as u32).into();
        reply.value_codec = codec.id();
        reply.flags |= flags::VALUES_MASKED;
        let bytes = [encoded.as_slice()];
        let mut frame = FrameParts {
            header: reply,
            keys: &[],
            values: &bytes,
            extra: &mask,
        };
        if let Err(e) = io.send(request.peer, &mut frame) {
            io.close(request.peer, CloseReason::Error(e.to_string()));
        }
        self.encoded = encoded;
        self.report.pulls += 1;
        Ok(())
    }

    pub(super) fn release_parked(&mut self, io: &mut Io<'_>) {
        for request in self.parked.release(self.clocks.min_completed()) {
            if let Err(r) = self.answer_pull(&request, io) {
                let header = request.frame.header;
                self.refuse(io, request.peer, &header, &r);
            }
        }
    }
}

/// Sends a pull reply with raw values: over RDMA, when the request named a registered buffer
/// of the worker (`VALUES_TO_REMOTE`), the values are written straight into it (read by the
/// device straight from `region`, the table's segment, when they are slices of it); otherwise
/// they travel in the frame. A named buffer too small for the reply is refused.
fn send_raw_pull_reply(
    io: &mut Io<'_>,
    peer: PeerId,
    request: &Frame,
    frame: &mut FrameParts<'_>,
    region: Option<&[u8]>,
) -> Result<Result<(), ferrops_net::NetError>, Refusal> {
    if request.header.flags & flags::VALUES_TO_REMOTE != 0 && io.is_rdma(peer) {
        let Some(dest) = ferrops_net::RemoteRegion::from_bytes(request.extra()) else {
            return Err(Refusal::new(
                Status::BadFrame,
                "a direct pull must name its buffer in 16 bytes of extra",
            ));
        };
        let len: usize = frame.values.iter().map(|v| v.len()).sum();
        if len > dest.len as usize {
            return Err(Refusal::new(
                Status::BadValues,
                format!(
                    "the reply has {len} bytes of values; the named buffer holds {}",
                    dest.len
                ),
            ));
        }
        return Ok(match region {
            // SAFETY: the region is a table's values segment: tables are never dropped while
            // the shard runs, and the shard drops its connections before its tables.
            Some(region) => unsafe { io.send_values_from_region_to(peer, frame, dest, region) },
            None => io.send_values_to(peer, frame, dest),
        });
    }
    Ok(io.send(peer, frame))
}
