//! The receive path: what each arrived message means (a frame in its slot, a bulk payload
//! written into its buffer, a request to send, a clear-to-send, returned credits, the
//! goodbye, a landing region advertised, a frame landed in ours), and handing whole frames to
//! the application in order, each slot re-posted and its credit owed once the frame is copied
//! out.

use std::time::{Duration, Instant};

use super::bulk::BulkIn;
use super::ctrl::{
    Ctrl, CTRL_LEN, KIND_ADVERT, KIND_BYE, KIND_CREDIT, KIND_CTS, KIND_FRAME, KIND_FRAME_DIRECT,
    KIND_LANDED, KIND_RTS,
};
use super::{RdmaConn, RECV_SLOTS, SLOT};
use crate::rdma::RdmaError;
use crate::{Frame, Header, WireError, HEADER_LEN};

/// Where a received frame waits for the application.
#[derive(Debug)]
pub(super) enum Ready {
    /// In receive slot `slot`, `len` bytes after the prefix; `direct` if the values went to a
    /// registered buffer of ours.
    Slot { slot: u32, len: usize, direct: bool },
    /// A bulk frame written into its own buffer.
    Bulk(Frame),
}

pub(super) fn check_payload_crc(header: &Header, payload: &[u8]) -> Result<(), WireError> {
    if header.flags & crate::flags::PAYLOAD_CRC == 0 {
        return Ok(());
    }
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_crc.get() {
        return Err(WireError::PayloadChecksum {
            expected: header.payload_crc.get(),
            computed,
        });
    }
    Ok(())
}

impl RdmaConn {
    pub(super) fn recv_done(
        &mut self,
        slot: u32,
        opcode: u32,
        byte_len: usize,
        imm: u32,
    ) -> Result<(), RdmaError> {
        if slot >= RECV_SLOTS {
            return Err(RdmaError::Protocol(format!(
                "completion for unknown receive {slot}"
            )));
        }
        const RECV_RDMA_WITH_IMM: u32 = 129;
        if opcode == RECV_RDMA_WITH_IMM {
            // A bulk payload landed; the receive buffer was not used.
            let token = imm as u64;
            self.post_recv(slot)?;
            self.credits.owe();
            let Some(bulk) = self.bulk_in.remove(&token) else {
                return self.protocol(format!("write for unknown transfer {token}"));
            };
            let BulkIn { header, _mr, buf } = bulk;
            drop(_mr);
            if byte_len != buf.len() {
                return self.protocol(format!(
                    "bulk transfer {token} wrote {byte_len} of {} bytes",
                    buf.len()
                ));
            }
            if let Err(e) = check_payload_crc(&header, buf.as_bytes()) {
                self.failed = Some(e.to_string());
                return Err(e.into());
            }
            self.metrics_received(&header);
            let len = buf.len();
            self.ready
                .push_back(Ready::Bulk(Frame::new(header, buf, false)));
            self.ready_bulk += 1;
            self.learn_bulk_len(len);
            return self.advertise();
        }
        self.credits.grant(imm);
        let start = slot as usize * SLOT;
        let Some(ctrl) = Ctrl::decode(&self.recv_mem.bytes()[start..start + byte_len.min(SLOT)])
        else {
            return self.protocol(format!("message of {byte_len} bytes"));
        };
        match ctrl.kind {
            KIND_FRAME | KIND_FRAME_DIRECT => {
                let len = ctrl.len as usize;
                if len + CTRL_LEN != byte_len || len < HEADER_LEN {
                    return self
                        .protocol(format!("frame of {len} bytes in a {byte_len}-byte message"));
                }
                self.ready.push_back(Ready::Slot {
                    slot,
                    len,
                    direct: ctrl.kind == KIND_FRAME_DIRECT,
                });
            }
            KIND_RTS => {
                let hb = &self.recv_mem.bytes()[start + CTRL_LEN..start + byte_len.min(SLOT)];
                let header = match zerocopy::FromBytes::read_from_prefix(hb) {
                    Ok((h, _)) => h,
                    Err(_) => return self.protocol("request to send without a header".into()),
                };
                self.post_recv(slot)?;
                self.credits.owe();
                self.deferred_rts.push_back((ctrl.token, header));
                self.invite_bulk()?;
            }
            KIND_CTS => {
                self.post_recv(slot)?;
                self.credits.owe();
                if !self.clear_to_send(ctrl.token, ctrl.addr, ctrl.rkey) {
                    return self
                        .protocol(format!("clear to send for unknown transfer {}", ctrl.token));
                }
            }
            KIND_ADVERT => {
                self.post_recv(slot)?;
                self.credits.owe();
                self.take_advert(&ctrl)?;
            }
            KIND_LANDED => {
                let hb = &self.recv_mem.bytes()[start + CTRL_LEN..start + byte_len.min(SLOT)];
                let header: Option<Header> = zerocopy::FromBytes::read_from_prefix(hb)
                    .ok()
                    .map(|(h, _)| h);
                self.post_recv(slot)?;
                self.credits.owe();
                self.landed(&ctrl, header)?;
            }
            KIND_CREDIT => self.post_recv(slot)?,
            KIND_BYE => self.closed = true,
            other => return self.protocol(format!("unknown message kind {other}")),
        }
        Ok(())
    }

    pub(super) fn protocol(&mut self, why: String) -> Result<(), RdmaError> {
        self.failed = Some(why.clone());
        Err(RdmaError::Protocol(why))
    }

    pub(super) fn metrics_received(&self, header: &Header) {
        self.metrics.frame_received(header);
    }

    /// The next whole frame, if one has arrived. `Err(Closed)` once the peer has gone and
    /// every frame it sent was taken.
    ///
    /// It only polls the completion queue (no system call), so it is cheap to call in a busy
    /// loop; before sleeping on the fd, call [`RdmaConn::prepare_sleep`].
    pub fn try_recv_frame(&mut self) -> Result<Option<Frame>, RdmaError> {
        if self.ready.is_empty() {
            self.poll_progress()?;
        }
        let Some(ready) = self.ready.pop_front() else {
            self.check_usable()?;
            return Ok(None);
        };
        let frame = match ready {
            Ready::Bulk(frame) => {
                self.ready_bulk -= 1;
                self.invite_bulk()?;
                self.advertise()?;
                frame
            }
            Ready::Slot { slot, len, direct } => {
                let res = self.frame_from_slot(slot, len, direct);
                self.post_recv(slot)?;
                self.credits.owe();
                match res {
                    Ok(frame) => frame,
                    Err(e) => {
                        self.failed = Some(e.to_string());
                        return Err(e.into());
                    }
                }
            }
        };
        self.flush_pending()?;
        Ok(Some(frame))
    }

    pub(super) fn frame_from_slot(
        &self,
        slot: u32,
        len: usize,
        direct: bool,
    ) -> Result<Frame, WireError> {
        let start = slot as usize * SLOT + CTRL_LEN;
        let bytes = &self.recv_mem.bytes()[start..start + len];
        let (header, rest): (Header, _) = zerocopy::FromBytes::read_from_prefix(bytes)
            .map_err(|_| WireError::Malformed("short frame".into()))?;
        header.validate(&self.limits)?;
        let expected = if direct {
            header.values_offset() + header.extra_len.get() as usize
        } else {
            header.payload_len() as usize
        };
        if rest.len() != expected {
            return Err(WireError::Malformed(format!(
                "frame says {expected} payload bytes, message carries {}",
                rest.len()
            )));
        }
        let mut buf = self.pool.take(rest.len());
        buf.as_bytes_mut().copy_from_slice(rest);
        if !direct {
            check_payload_crc(&header, buf.as_bytes())?;
        }
        self.metrics.frame_received(&header);
        if !direct {
            self.metrics.values_copied(header.values_len.get() as usize);
        }
        Ok(Frame::new(header, buf, direct))
    }

    /// Waits for the next frame.
    pub fn recv_frame(&mut self) -> Result<Frame, RdmaError> {
        loop {
            if let Some(f) = self.recv_frame_timeout(Duration::from_secs(3600))? {
                return Ok(f);
            }
        }
    }

    /// Waits up to `timeout` for the next frame.
    pub fn recv_frame_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, RdmaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.try_recv_frame()? {
                return Ok(Some(f));
            }
            if !self.wait_event(deadline)? {
                return Ok(None);
            }
        }
    }
}
