//! Posting work requests: receives into the registered receive slots, SENDs of one control
//! prefix and body (inline when small enough), RDMA WRITEs, and the queue of messages that
//! wait for a credit, a send buffer or room in the send queue.
//!
//! Every work request id says what to release when it completes: [`SEND_BIT`] marks the
//! send queue, the operation bits say which kind of buffer the low 32 bits name.

use sideway::ibverbs::queue_pair::{
    PostSendGuard, QueuePair as _, SetInlineData as _, SetScatterGatherEntry as _, WorkRequestFlags,
};

use super::ctrl::{Ctrl, CTRL_LEN, KIND_CREDIT};
use super::{RdmaConn, MAX_SEND_WR, RECV_SLOTS, SLOT};
use crate::rdma::mem::RegMem;
use crate::rdma::RdmaError;

/// Set in the id of every send-queue work request (receives carry their slot number only).
pub(super) const SEND_BIT: u64 = 1 << 63;
/// A SEND from send buffer slot `low`.
pub(super) const OP_SLOT: u64 = 0;
/// The WRITE(_WITH_IMM) of bulk transfer `low` (its staging goes back when it completes).
pub(super) const OP_WRITE: u64 = 1 << 32;
/// The WRITE of a direct pull reply's staged values, transfer `low`.
pub(super) const OP_DIRECT: u64 = 2 << 32;
/// A WRITE of values read in place from a stable registration (nothing to release).
pub(super) const OP_STABLE: u64 = 3 << 32;

/// A message waiting for a credit, a send buffer, room in the send queue, or (a frame) for a
/// bulk frame sent before it.
///
/// Frames leave in the order they were sent: a bulk frame takes its place in the queue when it
/// asks to send, and nothing queued behind it that delivers a frame is posted before its
/// payload is, once the peer's clear-to-send has said where. Control messages (requests to
/// send, clear-to-send answers, adverts, credits) deliver no frame and pass it: two peers
/// that both wait for a clear-to-send must still be able to answer each other's.
#[derive(Debug)]
pub(super) enum Out {
    /// A SEND: prefix and body, copied because they could not be posted at once.
    Send { ctrl: Ctrl, body: Vec<u8> },
    /// The payload of bulk transfer `token`: `cleared` once the peer said where (`addr`,
    /// `rkey`).
    Write {
        token: u64,
        addr: u64,
        rkey: u32,
        cleared: bool,
    },
}

impl RdmaConn {
    pub(super) fn post_all_recvs(&mut self) -> Result<(), RdmaError> {
        for slot in 0..RECV_SLOTS {
            self.post_recv(slot)?;
        }
        Ok(())
    }

    pub(super) fn post_recv(&mut self, slot: u32) -> Result<(), RdmaError> {
        let addr = self.recv_mem.addr() + slot as u64 * SLOT as u64;
        let lkey = self.recv_mem.lkey();
        let mut guard = self.qp.start_post_recv();
        let wr = guard.construct_wr(slot as u64);
        // SAFETY: the slot lies inside recv_mem, registered and owned by this connection, and
        // is not touched again until its completion is polled.
        unsafe { wr.setup_sge(lkey, addr, SLOT as u32) };
        guard
            .post()
            .map_err(|e| RdmaError::verbs("ibv_post_recv", e))
    }

    /// Queues or posts one SEND made of `ctrl` and `body` (a message that delivers no frame
    /// passes what is queued, see [`Out`]).
    pub(super) fn send_message(&mut self, ctrl: Ctrl, body: &[&[u8]]) -> Result<(), RdmaError> {
        let may_pass = self.pending.is_empty() || !Ctrl::delivers_frame(ctrl.kind);
        if may_pass && self.can_post_send(ctrl.kind) {
            return self.post_send_now(ctrl, body);
        }
        let mut bytes = Vec::with_capacity(body.iter().map(|s| s.len()).sum());
        for s in body {
            bytes.extend_from_slice(s);
        }
        if !Ctrl::delivers_frame(ctrl.kind) {
            self.queued_controls += 1;
        }
        self.pending.push_back(Out::Send { ctrl, body: bytes });
        Ok(())
    }

    pub(super) fn can_post_send(&self, kind: u32) -> bool {
        self.credits.allows(Ctrl::costs_credit(kind))
            && !self.send_free.is_empty()
            && self.sq_used < MAX_SEND_WR
    }

    pub(super) fn post_send_now(&mut self, ctrl: Ctrl, body: &[&[u8]]) -> Result<(), RdmaError> {
        let Some(slot) = self.send_free.pop() else {
            return Err(RdmaError::Protocol("no send buffer (internal)".into()));
        };
        if Ctrl::costs_credit(ctrl.kind) {
            self.credits.spend();
        }
        let start = slot as usize * SLOT;
        let total = {
            let buf = &mut self.send_mem.bytes_mut()[start..start + SLOT];
            ctrl.encode(&mut buf[..CTRL_LEN]);
            let mut off = CTRL_LEN;
            for s in body {
                buf[off..off + s.len()].copy_from_slice(s);
                off += s.len();
            }
            off
        };
        let imm = self.credits.take_owed();
        let lkey = self.send_mem.lkey();
        let addr = self.send_mem.addr() + start as u64;
        let inline = total <= self.max_inline as usize;
        let flags = if inline {
            WorkRequestFlags::Signaled | WorkRequestFlags::Inline
        } else {
            WorkRequestFlags::Signaled
        };
        let mut guard = self.qp.start_post_send();
        let wr = guard
            .construct_wr(SEND_BIT | OP_SLOT | slot as u64, flags)
            .setup_send_imm(imm);
        if inline {
            wr.setup_inline_data(&self.send_mem.bytes()[start..start + total]);
        } else {
            // SAFETY: the bytes lie in send_mem (registered, owned by this connection); the slot
            // stays out of the free list until the send completes.
            unsafe { wr.setup_sge(lkey, addr, total as u32) };
        }
        post_counted(guard, &mut self.sq_used)
    }

    pub(super) fn post_write(
        &mut self,
        wr_id: u64,
        stage: &RegMem,
        len: usize,
        addr: u64,
        rkey: u32,
        imm: Option<u32>,
    ) -> Result<(), RdmaError> {
        let mut guard = self.qp.start_post_send();
        let handle = guard.construct_wr(SEND_BIT | wr_id, WorkRequestFlags::Signaled);
        let wr = match imm {
            Some(imm) => handle.setup_write_imm(rkey, addr, imm),
            None => handle.setup_write(rkey, addr),
        };
        // SAFETY: the staging buffer is registered and kept (in bulk_out or direct) until the
        // write completes.
        unsafe { wr.setup_sge(stage.lkey(), stage.addr(), len as u32) };
        post_counted(guard, &mut self.sq_used)
    }

    /// A WRITE (WITH_IMM when `imm` is given) gathering `sges` (at most [`MAX_SGE`]).
    pub(super) fn post_write_sges(
        &mut self,
        wr_id: u64,
        sges: &[rdma_mummy_sys::ibv_sge],
        addr: u64,
        rkey: u32,
        imm: Option<u32>,
    ) -> Result<(), RdmaError> {
        let mut guard = self.qp.start_post_send();
        let handle = guard.construct_wr(SEND_BIT | wr_id, WorkRequestFlags::Signaled);
        let wr = match imm {
            Some(imm) => handle.setup_write_imm(rkey, addr, imm),
            None => handle.setup_write(rkey, addr),
        };
        // SAFETY: every entry names registered memory kept alive until the write completes
        // (the staging buffer and the values' region are held in bulk_out).
        unsafe { wr.setup_sge_list(sges) };
        post_counted(guard, &mut self.sq_used)
    }

    /// While the queue waits for a clear-to-send: posts the queued messages that deliver no
    /// frame, so that the peer's own bulk frames, and ours, can go on.
    fn post_passing_controls(&mut self) -> Result<(), RdmaError> {
        let mut i = 0;
        while self.queued_controls > 0 && i < self.pending.len() {
            let kind = match &self.pending[i] {
                Out::Send { ctrl, .. } if !Ctrl::delivers_frame(ctrl.kind) => ctrl.kind,
                _ => {
                    i += 1;
                    continue;
                }
            };
            if !self.can_post_send(kind) {
                break;
            }
            if let Some(Out::Send { ctrl, body }) = self.pending.remove(i) {
                self.post_queued(ctrl, &body)?;
            }
        }
        Ok(())
    }

    /// Posts a SEND that waited in the queue.
    fn post_queued(&mut self, ctrl: Ctrl, body: &[u8]) -> Result<(), RdmaError> {
        if !Ctrl::delivers_frame(ctrl.kind) {
            self.queued_controls -= 1;
        }
        self.post_send_now(ctrl, &[body])
    }

    /// The peer's clear-to-send for bulk transfer `token`: its payload may go to `to` with
    /// `key`. False if no payload of ours waits for one under that token.
    pub(super) fn clear_to_send(&mut self, token: u64, to: u64, key: u32) -> bool {
        for out in &mut self.pending {
            if let Out::Write {
                token: t,
                addr,
                rkey,
                cleared: cleared @ false,
            } = out
            {
                if *t == token {
                    (*addr, *rkey, *cleared) = (to, key, true);
                    return true;
                }
            }
        }
        false
    }

    pub(super) fn wait_sq_room(&mut self) -> Result<(), RdmaError> {
        while self.sq_used >= MAX_SEND_WR {
            self.poll_cq()?;
        }
        Ok(())
    }

    /// Posts queued messages as credits and send buffers allow.
    pub(super) fn flush_pending(&mut self) -> Result<(), RdmaError> {
        while let Some(out) = self.pending.front() {
            match out {
                Out::Send { ctrl, .. } => {
                    if !self.can_post_send(ctrl.kind) {
                        break;
                    }
                    let Some(Out::Send { ctrl, body }) = self.pending.pop_front() else {
                        break;
                    };
                    self.post_queued(ctrl, &body)?;
                }
                Out::Write { cleared: false, .. } => {
                    self.post_passing_controls()?;
                    break;
                }
                Out::Write { .. } => {
                    if !self.credits.allows(true) || self.sq_used >= MAX_SEND_WR {
                        break;
                    }
                    let Some(Out::Write {
                        token, addr, rkey, ..
                    }) = self.pending.pop_front()
                    else {
                        break;
                    };
                    let Some(bulk) = self.bulk_out.get(&token) else {
                        continue;
                    };
                    let sges = bulk.sges();
                    self.credits.spend();
                    self.post_write_sges(OP_WRITE | token, &sges, addr, rkey, Some(token as u32))?;
                }
            }
        }
        // Credits the peer is waiting for, when nothing else carries them.
        if self.credits.return_due() && self.pending.is_empty() && self.can_post_send(KIND_CREDIT) {
            self.post_send_now(
                Ctrl {
                    kind: KIND_CREDIT,
                    ..Ctrl::default()
                },
                &[],
            )?;
        }
        Ok(())
    }
}

/// Posts the work request `guard` holds and counts it in `sq_used`, the send queue's entries
/// in flight.
fn post_counted(guard: impl PostSendGuard, sq_used: &mut u32) -> Result<(), RdmaError> {
    guard
        .post()
        .map_err(|e| RdmaError::verbs("ibv_post_send", e))?;
    *sq_used += 1;
    Ok(())
}
