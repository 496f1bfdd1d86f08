//! Pushes: blocking, asynchronous with a ticket, and of a selection of a key list. Each server's
//! part carries its share of the values, written straight from the caller's slice when they
//! travel raw (or read by the device from it, over RDMA, for a blocking push).

use std::ops::Range;

use ferrops_net::codec::values::encode_values;
use ferrops_net::codec::ValueCodec;
use ferrops_net::{flags, Opcode};
use zerocopy::IntoBytes;

use super::pending::{Kind, Resend, Ticket};
use super::plan::{codec_error, part_frame, Keys, Plan};
use super::{direct, retry_key_misses, State, Worker};
use crate::key_list::{check_value_count, KeyList};
use crate::table::TableId;
use crate::EngineError;

impl Worker {
    /// Pushes `values` (`keys × dim × inputs of the rule` floats, in key order) and waits until
    /// every server involved has applied them (with replication, every server of each range's
    /// chain). If a server dies meanwhile and replication covers it, the push is sent again
    /// under the new routing with the same sequence number (`failover`): applied exactly once.
    pub fn push(&self, table: TableId, keys: &[u64], values: &[f32]) -> Result<(), EngineError> {
        self.push_blocking(table, Keys::Slice(keys), values)
    }

    /// [`Worker::push`] of a [`KeyList`]: its keys are neither checked nor signed again (they
    /// cannot have changed), so a bulk push costs the values' trip and the servers' apply.
    pub fn push_list(
        &self,
        table: TableId,
        keys: &KeyList,
        values: &[f32],
    ) -> Result<(), EngineError> {
        self.push_blocking(table, Keys::Checked(keys), values)
    }

    fn push_blocking(
        &self,
        table: TableId,
        keys: Keys<'_>,
        values: &[f32],
    ) -> Result<(), EngineError> {
        let seq = self.open_seq();
        // Blocking, so `values` outlives the push: over RDMA, bulk parts are written by the
        // device straight from it (registrations live until the acknowledgements arrived).
        let done = self.surviving_failover(|| {
            retry_key_misses(|only| {
                let mut registrations = Vec::new();
                let regs = Some(&mut registrations);
                let parts = Parts { seq, only };
                let t = self.push_inner(table, keys, None, values, regs, parts)?;
                let done = self.wait(t).map(|_| ());
                drop(registrations);
                done
            })
        });
        self.finish_seq(seq);
        done
    }

    /// Sends a push and returns at once with a ticket; the caller's slices are not needed after
    /// this returns (they were written to the sockets; with replication, the worker keeps a copy
    /// of them to send again should a server fail before `wait`).
    pub fn push_async(
        &self,
        table: TableId,
        keys: &[u64],
        values: &[f32],
    ) -> Result<Ticket, EngineError> {
        let seq = self.open_seq();
        // A server this worker already knows is dead, before the new routing came, fails the
        // send itself: sent again under the new routing.
        let ticket =
            match self.surviving_failover(|| self.push_again(table, keys, values, seq, None)) {
                Ok(ticket) => ticket,
                Err(e) => {
                    self.finish_seq(seq);
                    return Err(e);
                }
            };
        let kept = self.keep_for_resend(&ticket, || Resend::Push {
            table,
            keys: keys.to_vec(),
            values: values.to_vec(),
            seq,
        });
        if !kept {
            // Without replication nothing sends it again.
            self.finish_seq(seq);
        }
        Ok(ticket)
    }

    /// Sends every part of a push (or those for the servers `only`) under sequence number
    /// `seq`.
    pub(super) fn push_again(
        &self,
        table: TableId,
        keys: &[u64],
        values: &[f32],
        seq: u64,
        only: Option<&[u32]>,
    ) -> Result<Ticket, EngineError> {
        let parts = Parts { seq, only };
        self.push_inner(table, Keys::Slice(keys), None, values, None, parts)
    }

    /// Pushes values for the keys at the ascending indices `selected` of `keys` only, while the
    /// whole list travels (so a list the server holds still goes by its signature): what
    /// filters use, since their choice of keys changes every round but the list they choose
    /// from does not. `values` holds `selected × dim × inputs` floats.
    pub fn push_selected(
        &self,
        table: TableId,
        keys: &[u64],
        selected: &[u32],
        values: &[f32],
    ) -> Result<(), EngineError> {
        let seq = self.open_seq();
        let done = self.surviving_failover(|| {
            retry_key_misses(|only| {
                let parts = Parts { seq, only };
                let keys = Keys::Slice(keys);
                let t = self.push_inner(table, keys, Some(selected), values, None, parts)?;
                self.wait(t).map(|_| ())
            })
        });
        self.finish_seq(seq);
        done
    }

    /// Sends a push's `parts` (all, or those for some servers) under its sequence number. With
    /// `in_place` (the caller keeps `values` unchanged until the push is acknowledged), raw
    /// values bound for a server whose connection can read them in place (RDMA, bulk frames)
    /// are registered, kept in `in_place`, and read by the device from where they are.
    fn push_inner(
        &self,
        table: TableId,
        keys: Keys<'_>,
        selected: Option<&[u32]>,
        values: &[f32],
        mut in_place: Option<&mut Vec<direct::Registered>>,
        parts: Parts<'_>,
    ) -> Result<Ticket, EngineError> {
        let Parts { seq, only } = parts;
        let mut st = self.lock();
        let spec = st
            .tables
            .get(&table.0)
            .ok_or(EngineError::UnknownTable(table.0))?;
        let per_key = spec.push_floats_per_key();
        let (dim, inputs) = (spec.dim as usize, spec.rule.inputs());
        let codec = spec.codec();
        let packing = spec.key_packing;
        let checked = keys;
        let keys = keys.as_slice();
        let carried = match selected {
            Some(sel) => check_selection(sel, keys.len())?,
            None => keys.len(),
        };
        check_value_count(carried, values.len(), per_key)?;
        let plan = Plan::new(&st.routing, spec, checked)?;
        let mut header = self.request_header(&st, Opcode::Push, table);
        header.seq = seq.into();
        header.open_span = st.io.inbound.outstanding.seqs.open_span(seq).into();
        let State {
            io,
            routing,
            reducers,
            tables,
            ..
        } = &mut *st;
        let name = tables.get(&table.0).map_or("", |s| s.name.as_str());
        let ticket = io.inbound.outstanding.open(Kind::Push);
        let (mut key_buf, mut value_buf, mut planes) = (Vec::new(), Vec::new(), Vec::new());
        let mut mask = Vec::new();
        for part in plan.parts(routing) {
            let (server, idx) = (part.server, part.idx);
            if only.is_some_and(|o| !o.contains(&server)) {
                continue; // already applied there
            }
            let part_keys = &keys[idx.clone()];
            let carried_here = match selected {
                Some(sel) => {
                    let here = part_selection(sel, idx.clone());
                    if here.is_empty() {
                        continue; // nothing for this server: neither side touches its key cache
                    }
                    mask = part_mask(&sel[here.clone()], idx.start, part_keys.len());
                    here
                }
                None => idx.clone(),
            };
            let part_values = part_inputs(values, carried, dim, inputs, carried_here, &mut planes);
            let outstanding = &mut io.inbound.outstanding;
            let bytes = part_values.len() * 4;
            let metered = outstanding
                .meters
                .sent((server, table.0, name), true, bytes);
            let request = outstanding.add_request(ticket, server, 0..0, metered);
            let mut frame = part_frame(
                header,
                request,
                part_keys,
                part.signature,
                (io, server, packing),
                &mut key_buf,
                reducers,
            )?;
            let vals = [encode_part_values(codec, part_values, &mut value_buf)?];
            reducers.record_values(codec, part_values.len() * 4, vals[0].len());
            frame.header.value_codec = codec.id();
            frame.values = &vals;
            if selected.is_some() {
                frame.header.flags |= flags::VALUES_MASKED;
                frame.extra = &mask;
            }
            let from_caller = values.as_bytes().as_ptr_range();
            let in_caller = from_caller.contains(&vals[0].as_ptr()) && codec == ValueCodec::Raw;
            if let (Some(keep), true) = (in_place.as_deref_mut(), in_caller) {
                // SAFETY: the part's values are a slice of the caller's `values`, which the
                // blocking push keeps borrowed, unchanged, until the acknowledgements arrived,
                // after which it drops the registrations.
                let reg = unsafe {
                    direct::register(
                        io,
                        server,
                        part_values.as_ptr().cast_mut(),
                        part_values.len(),
                    )
                };
                if let Some(reg) = reg {
                    io.send_registered(server, &mut frame, &reg)?;
                    keep.push(reg);
                    continue;
                }
            }
            io.send(server, &mut frame, &mut None)?;
        }
        Ok(Ticket(ticket))
    }
}

/// Which parts of a push to send, under which sequence number: every part, or, when servers
/// missed its key list, theirs only (they refused it unapplied). Resends after a failover and
/// after a miss keep the push's first number, so that servers which applied it drop it.
#[derive(Clone, Copy)]
struct Parts<'a> {
    seq: u64,
    only: Option<&'a [u32]>,
}

/// Checks a selection is strictly ascending indices below `keys`; returns its length.
fn check_selection(selected: &[u32], keys: usize) -> Result<usize, EngineError> {
    let ascending = selected.windows(2).all(|w| w[0] < w[1]);
    let in_range = selected.last().is_none_or(|&last| (last as usize) < keys);
    if !(ascending && in_range) {
        return Err(EngineError::Config(format!(
            "a selection must be strictly ascending indices below {keys}"
        )));
    }
    Ok(selected.len())
}

/// Which entries of `selected` fall in the key index range `idx`.
fn part_selection(selected: &[u32], idx: Range<usize>) -> Range<usize> {
    let lo = selected.partition_point(|&i| (i as usize) < idx.start);
    let hi = selected.partition_point(|&i| (i as usize) < idx.end);
    lo..hi
}

/// The bitmap of a part's selected keys (indices relative to the part's first key).
fn part_mask(selected: &[u32], first: usize, keys: usize) -> Vec<u8> {
    let mut mask = vec![0u8; keys.div_ceil(8)];
    for &i in selected {
        let bit = i as usize - first;
        mask[bit / 8] |= 1 << (bit % 8);
    }
    mask
}

/// One server's share of a push's inputs. A single input array is sliced in place; a rule
/// with several planar arrays (gradient then curvature, each `keys × dim` long) gets each
/// array's share, in order, gathered into `planes`.
fn part_inputs<'a>(
    values: &'a [f32],
    keys: usize,
    dim: usize,
    inputs: usize,
    idx: Range<usize>,
    planes: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (start, end) = (idx.start * dim, idx.end * dim);
    if inputs == 1 {
        return &values[start..end];
    }
    planes.clear();
    for j in 0..inputs {
        planes.extend_from_slice(&values[j * keys * dim + start..j * keys * dim + end]);
    }
    planes
}

/// A push's values as they travel: the caller's bytes for raw f32, else encoded into `buf`.
fn encode_part_values<'a>(
    codec: ValueCodec,
    values: &'a [f32],
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], EngineError> {
    if codec == ValueCodec::Raw {
        return Ok(values.as_bytes());
    }
    buf.clear();
    encode_values(codec, values, buf).map_err(codec_error)?;
    Ok(buf)
}
