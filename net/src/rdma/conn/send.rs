//! The send paths: a frame in one SEND when it is small, through the bulk rendezvous when it
//! is not, with its values read in place from registered memory, or with its values
//! RDMA-written straight into the peer's buffer ahead of the rest of the frame (the
//! zero-copy pull reply), from staging or from a parameter segment registered once.

use sideway::ibverbs::queue_pair::{
    PostSendGuard as _, QueuePair as _, SetScatterGatherEntry as _, WorkRequestFlags,
};
use sideway::ibverbs::AccessFlags;

use super::bulk::{BulkOut, BulkValues};
use super::ctrl::{Ctrl, KIND_FRAME, KIND_FRAME_DIRECT};
use super::post::{OP_DIRECT, OP_STABLE, SEND_BIT};
use super::{RdmaConn, MAX_SGE, SMALL_FRAME_MAX};
use crate::rdma::mem::{register, Registration, RemoteBuf};
use crate::rdma::RdmaError;
use crate::wire::ZEROS;
use crate::{pad8, FrameParts, HEADER_LEN};

pub(super) fn copy_slices(slices: &[&[u8]], skip: usize, out: &mut [u8]) {
    let mut skip = skip;
    let mut off = 0;
    for s in slices {
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        let part = &s[skip..];
        skip = 0;
        let n = part.len().min(out.len() - off);
        out[off..off + n].copy_from_slice(&part[..n]);
        off += n;
    }
}

impl RdmaConn {
    /// Sends a finished frame (header sealed, see [`FrameParts::finish`]). Never blocks: a
    /// frame that cannot be posted now is queued.
    pub fn send_frame(&mut self, frame: &FrameParts<'_>) -> Result<(), RdmaError> {
        self.check_usable()?;
        if self.closed {
            return Err(RdmaError::Closed);
        }
        crate::writer::count_sent(frame, &self.metrics);
        let wire_len = frame.wire_len();
        if wire_len <= SMALL_FRAME_MAX {
            let ctrl = Ctrl {
                kind: KIND_FRAME,
                len: wire_len as u64,
                ..Ctrl::default()
            };
            let slices = crate::writer::frame_slices(frame);
            self.send_message(ctrl, &slices)?;
        } else {
            let payload_len = wire_len - HEADER_LEN;
            let mut stage = self.take_staging(payload_len)?;
            let slices = crate::writer::frame_slices(frame);
            copy_slices(&slices, HEADER_LEN, &mut stage.bytes_mut()[..payload_len]);
            let values_len: usize = frame.values.iter().map(|v| v.len()).sum();
            self.metrics.values_copied(values_len);
            let bulk = BulkOut {
                stage,
                len: payload_len,
                values: None,
            };
            self.send_bulk(frame, bulk)?;
        }
        self.poll_progress()
    }

    /// [`RdmaConn::send_frame`] for a frame whose values (one slice) lie in memory registered
    /// with this connection: a bulk frame's values are then read by the device in place, and
    /// only its keys and extra are staged. Small frames, and values outside `values`, go the
    /// ordinary way. The caller must not change the values until the peer has answered the
    /// frame (the registration itself may be dropped earlier: the connection keeps the region
    /// until the write completed).
    pub fn send_frame_values_registered(
        &mut self,
        frame: &FrameParts<'_>,
        values: &Registration<'_>,
    ) -> Result<(), RdmaError> {
        let wire_len = frame.wire_len();
        let [slice] = frame.values else {
            return self.send_frame(frame);
        };
        if wire_len <= SMALL_FRAME_MAX || !values.covers(slice) {
            return self.send_frame(frame);
        }
        self.check_usable()?;
        if self.closed {
            return Err(RdmaError::Closed);
        }
        crate::writer::count_sent(frame, &self.metrics);
        let payload_len = wire_len - HEADER_LEN;
        let keys_pad = pad8(frame.keys.len()) - frame.keys.len();
        let values_pad = pad8(slice.len()) - slice.len();
        let at = frame.keys.len() + keys_pad;
        let staged_len = payload_len - slice.len();
        let mut stage = self.take_staging(staged_len.max(1))?;
        copy_slices(
            &[
                frame.keys,
                &ZEROS[..keys_pad],
                &ZEROS[..values_pad],
                frame.extra,
            ],
            0,
            &mut stage.bytes_mut()[..staged_len],
        );
        let bulk = BulkOut {
            stage,
            len: staged_len,
            values: Some(BulkValues {
                at,
                addr: slice.as_ptr() as u64,
                len: slice.len(),
                mr: values.region().clone(),
            }),
        };
        self.send_bulk(frame, bulk)?;
        self.poll_progress()
    }

    /// Sends a frame whose values are RDMA-written into `dest` (named by the peer in its
    /// request) instead of travelling in the frame: the zero-copy pull reply. The peer
    /// receives the frame with [`Frame::values_were_direct`](crate::Frame::values_were_direct)
    /// set and the values already in its buffer. The values must fit `dest`; the payload
    /// checksum is not checked for such frames.
    pub fn send_frame_values_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteBuf,
    ) -> Result<(), RdmaError> {
        let values_len = self.check_direct(frame, dest)?;
        crate::writer::count_sent(frame, &self.metrics);
        if values_len > 0 {
            let mut stage = self.take_staging(values_len)?;
            copy_slices(frame.values, 0, &mut stage.bytes_mut()[..values_len]);
            self.metrics.values_copied(values_len);
            let token = self.new_token();
            // The WRITE needs no credit (it consumes no receive buffer); the frame that follows
            // on the same queue pair arrives after it.
            self.wait_sq_room()?;
            self.post_write(
                OP_DIRECT | token,
                &stage,
                values_len,
                dest.addr,
                dest.rkey,
                None,
            )?;
            self.direct.insert(token, stage);
        }
        self.send_frame_without_values(frame)
    }

    /// [`RdmaConn::send_frame_values_to`] without staging: the device reads the values
    /// straight from `region`, memory that holds every values slice of `frame` (a parameter
    /// segment). The region is registered with this connection the first time (and again when
    /// it has grown); a frame whose values lie outside it is sent through staging instead.
    ///
    /// # Safety
    /// `region` must stay mapped at its address, and readable, for as long as this connection
    /// lives: the registration is kept and reused by later calls.
    pub unsafe fn send_frame_values_from_region_to(
        &mut self,
        frame: &FrameParts<'_>,
        dest: RemoteBuf,
        region: &[u8],
    ) -> Result<(), RdmaError> {
        let start = region.as_ptr() as usize;
        let inside = |s: &&[u8]| {
            let a = s.as_ptr() as usize;
            a >= start && a + s.len() <= start + region.len()
        };
        if self.stable_failed || region.is_empty() || !frame.values.iter().all(inside) {
            return self.send_frame_values_to(frame, dest);
        }
        self.check_direct(frame, dest)?;
        let lkey = match self.stable_lkey(region) {
            Ok(lkey) => lkey,
            Err(e) => {
                // E.g. the memlock limit: the values still go, through staging, from now on.
                tracing::warn!(
                    "cannot register {} bytes of table memory ({e}); pull replies are staged",
                    region.len()
                );
                self.stable_failed = true;
                return self.send_frame_values_to(frame, dest);
            }
        };
        crate::writer::count_sent(frame, &self.metrics);
        // Up to MAX_SGE slices per WRITE, each WRITE at its offset in the destination.
        let mut offset = 0u64;
        for chunk in frame.values.chunks(MAX_SGE) {
            let sges: Vec<rdma_mummy_sys::ibv_sge> = chunk
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| rdma_mummy_sys::ibv_sge {
                    addr: s.as_ptr() as u64,
                    length: s.len() as u32,
                    lkey,
                })
                .collect();
            let len: u64 = chunk.iter().map(|s| s.len() as u64).sum();
            if sges.is_empty() {
                continue;
            }
            self.wait_sq_room()?;
            let mut guard = self.qp.start_post_send();
            let wr = guard
                .construct_wr(SEND_BIT | OP_STABLE, WorkRequestFlags::Signaled)
                .setup_write(dest.rkey, dest.addr + offset);
            // SAFETY: every slice lies inside `region`, registered under `lkey` and kept
            // mapped for the connection's life by the caller's promise.
            unsafe { wr.setup_sge_list(&sges) };
            guard
                .post()
                .map_err(|e| RdmaError::verbs("ibv_post_send", e))?;
            self.sq_used += 1;
            offset += len;
        }
        self.send_frame_without_values(frame)
    }

    /// The local key of `region`'s registration, registering it (or its grown self) first.
    pub(super) fn stable_lkey(&mut self, region: &[u8]) -> Result<u32, RdmaError> {
        let start = region.as_ptr() as usize;
        if let Some((len, mr)) = self.stable.get(&start) {
            if *len >= region.len() {
                return Ok(mr.lkey());
            }
        }
        let mr = register(&self.pd, start, region.len(), AccessFlags::LocalWrite)?;
        let lkey = mr.lkey();
        if let Some((_, old)) = self.stable.insert(start, (region.len(), mr)) {
            self.retired.push(old);
        }
        Ok(lkey)
    }

    /// Before a frame's values go to `dest`: the connection is usable, the values fit, and the
    /// rest of the frame fits one message. Returns the values' length.
    pub(super) fn check_direct(
        &self,
        frame: &FrameParts<'_>,
        dest: RemoteBuf,
    ) -> Result<usize, RdmaError> {
        self.check_usable()?;
        if self.closed {
            return Err(RdmaError::Closed);
        }
        let values_len: usize = frame.values.iter().map(|v| v.len()).sum();
        if values_len > dest.len as usize {
            return Err(RdmaError::Protocol(format!(
                "{values_len} bytes of values do not fit the peer's {}-byte buffer",
                dest.len
            )));
        }
        Self::check_without_values(frame)?;
        Ok(values_len)
    }

    /// Checks that a frame with direct values can travel as one small message without them.
    pub(super) fn check_without_values(frame: &FrameParts<'_>) -> Result<(), RdmaError> {
        let keys_pad = pad8(frame.keys.len()) - frame.keys.len();
        let body_len = HEADER_LEN + frame.keys.len() + keys_pad + frame.extra.len();
        if body_len > SMALL_FRAME_MAX {
            return Err(RdmaError::Protocol(format!(
                "a frame with direct values keeps {body_len} bytes of keys and extra; at most {SMALL_FRAME_MAX}"
            )));
        }
        Ok(())
    }

    /// Sends a frame whose values went ahead by RDMA WRITE: header, keys (padded) and extra,
    /// after the values on the same queue pair (so the peer sees them first).
    pub(super) fn send_frame_without_values(
        &mut self,
        frame: &FrameParts<'_>,
    ) -> Result<(), RdmaError> {
        Self::check_without_values(frame)?;
        let keys_pad = pad8(frame.keys.len()) - frame.keys.len();
        let ctrl = Ctrl {
            kind: KIND_FRAME_DIRECT,
            len: (HEADER_LEN + frame.keys.len() + keys_pad + frame.extra.len()) as u64,
            ..Ctrl::default()
        };
        let header = zerocopy::IntoBytes::as_bytes(&frame.header);
        self.send_message(ctrl, &[header, frame.keys, &ZEROS[..keys_pad], frame.extra])?;
        self.poll_progress()
    }
}
