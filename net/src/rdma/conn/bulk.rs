//! The bulk rendezvous, for frames larger than one receive buffer. The sender stages the
//! payload (or names the caller's registered values in place) and SENDs the header alone, a
//! request to send; the receiver validates the header against its limits before allocating,
//! registers a pool buffer and answers clear-to-send with its address and key; the sender
//! then WRITE_WITH_IMMs the payload into it, the immediate naming the transfer. Also the
//! registered staging buffers the send paths reuse.

use std::sync::Arc;

use sideway::ibverbs::AccessFlags;

use super::ctrl::{Ctrl, KIND_CTS, KIND_RTS};
use super::post::Out;
use super::RdmaConn;
use crate::rdma::mem::{register, RegMem};
use crate::rdma::RdmaError;
use crate::{FrameParts, Header, PooledBuf};

/// Bulk frames received but not yet taken by the application before we stop inviting more.
pub(super) const MAX_READY_BULK: usize = 4;

/// A bulk frame's payload on its way out: staged whole, or staged without its values, which
/// the device reads from the caller's registered memory.
#[derive(Debug)]
pub(super) struct BulkOut {
    pub(super) stage: RegMem,
    /// Bytes of `stage` in use.
    pub(super) len: usize,
    pub(super) values: Option<BulkValues>,
}

/// Values of a bulk frame read in place: `len` bytes at `addr` in `mr`, placed after the
/// first `at` staged bytes of the payload.
#[derive(Debug)]
pub(super) struct BulkValues {
    pub(super) at: usize,
    pub(super) addr: u64,
    pub(super) len: usize,
    pub(super) mr: Arc<sideway::ibverbs::memory_region::MemoryRegion>,
}

impl BulkOut {
    /// Bytes of the whole payload: staged, and read in place.
    pub(super) fn payload_len(&self) -> usize {
        self.len + self.values.as_ref().map_or(0, |v| v.len)
    }

    /// The scatter-gather list of the whole payload, in order.
    pub(super) fn sges(&self) -> Vec<rdma_mummy_sys::ibv_sge> {
        let staged = |from: usize, to: usize| rdma_mummy_sys::ibv_sge {
            addr: self.stage.addr() + from as u64,
            length: (to - from) as u32,
            lkey: self.stage.lkey(),
        };
        let Some(v) = &self.values else {
            return vec![staged(0, self.len)];
        };
        let mut list = Vec::with_capacity(3);
        if v.at > 0 {
            list.push(staged(0, v.at));
        }
        list.push(rdma_mummy_sys::ibv_sge {
            addr: v.addr,
            length: v.len as u32,
            lkey: v.mr.lkey(),
        });
        if self.len > v.at {
            list.push(staged(v.at, self.len));
        }
        list
    }
}

/// A bulk frame on its way in: its header and the buffer the peer writes into.
#[derive(Debug)]
pub(super) struct BulkIn {
    pub(super) header: Header,
    // Region first: deregistered before the buffer can be reused.
    pub(super) _mr: Arc<sideway::ibverbs::memory_region::MemoryRegion>,
    pub(super) buf: PooledBuf,
}

impl RdmaConn {
    /// Keeps `bulk` until the peer says where to write it, and asks.
    pub(super) fn request_to_send(
        &mut self,
        frame: &FrameParts<'_>,
        bulk: BulkOut,
    ) -> Result<(), RdmaError> {
        let token = self.new_token();
        let payload_len = bulk.payload_len();
        self.bulk_out.insert(token, bulk);
        let ctrl = Ctrl {
            kind: KIND_RTS,
            token,
            len: payload_len as u64,
            ..Ctrl::default()
        };
        self.send_message(ctrl, &[zerocopy::IntoBytes::as_bytes(&frame.header)])?;
        // Its place in line: frames sent after it wait behind its payload.
        self.pending.push_back(Out::Write {
            token,
            addr: 0,
            rkey: 0,
            cleared: false,
        });
        Ok(())
    }

    pub(super) fn take_staging(&mut self, len: usize) -> Result<RegMem, RdmaError> {
        if let Some(i) = self.staging_free.iter().position(|m| m.len() >= len) {
            return Ok(self.staging_free.swap_remove(i));
        }
        RegMem::new(&self.pd, len)
    }

    pub(super) fn give_staging(&mut self, mem: RegMem) {
        // Keep a few, the largest ones.
        self.staging_free.push(mem);
        if self.staging_free.len() > 4 {
            self.staging_free
                .sort_by_key(|m| std::cmp::Reverse(m.len()));
            self.staging_free.truncate(4);
        }
    }

    /// Answers waiting requests to send with a registered buffer, as long as not too many bulk
    /// frames wait for the application.
    pub(super) fn invite_bulk(&mut self) -> Result<(), RdmaError> {
        while self.bulk_buffers_held() < MAX_READY_BULK {
            let Some((token, header)) = self.deferred_rts.pop_front() else {
                break;
            };
            if let Err(e) = header.validate(&self.limits) {
                self.failed = Some(e.to_string());
                return Err(e.into());
            }
            let len = header.payload_len() as usize;
            let mut buf = self.pool.take(len);
            let mr = register(
                &self.pd,
                buf.as_bytes_mut().as_mut_ptr() as usize,
                len.max(1),
                AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
            )?;
            let ctrl = Ctrl {
                kind: KIND_CTS,
                rkey: mr.rkey(),
                token,
                addr: mr.get_ptr() as u64,
                len: len as u64,
            };
            self.bulk_in.insert(
                token as u32 as u64,
                BulkIn {
                    header,
                    _mr: mr,
                    buf,
                },
            );
            self.send_message(ctrl, &[])?;
        }
        Ok(())
    }
}
