//! Connections: rdma_cm setup, the credit protocol, completion handling.

mod bulk;
mod completion;
mod credits;
mod ctrl;
mod listen;
mod post;
mod setup;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel};
use sideway::ibverbs::device_context::DeviceContext;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    BasicQueuePair, PostSendGuard as _, QueuePair as _, SetScatterGatherEntry as _,
    WorkRequestFlags,
};
use sideway::ibverbs::AccessFlags;
use sideway::rdmacm::communication_manager::{EventChannel, Identifier};

use self::bulk::{BulkIn, BulkOut, BulkValues};
use self::completion::wait_readable;
pub use self::credits::CREDITS;
use self::credits::{Credits, RESERVE};
use self::ctrl::{
    Ctrl, CTRL_LEN, KIND_BYE, KIND_CREDIT, KIND_CTS, KIND_FRAME, KIND_FRAME_DIRECT, KIND_RTS,
};
pub use self::listen::RdmaListener;
use self::post::{Out, OP_DIRECT, OP_STABLE, SEND_BIT};
use super::mem::{register, RegMem, Registration, RemoteBuf};
use super::RdmaError;
use crate::wire::ZEROS;
use crate::{
    pad8, BufferPool, Frame, FrameLimits, FrameParts, Header, Metrics, WireError, HEADER_LEN,
};

/// Bytes of one receive (and send) buffer.
const SLOT: usize = 64 * 1024;
/// Largest frame (header + payload) sent in one SEND; larger frames go by RDMA WRITE.
pub const SMALL_FRAME_MAX: usize = SLOT - CTRL_LEN;
const RECV_SLOTS: u32 = CREDITS + RESERVE;
const SEND_SLOTS: u32 = RECV_SLOTS;
const MAX_SEND_WR: u32 = 2 * SEND_SLOTS + 16;
const CQE: u32 = 4 * (MAX_SEND_WR + RECV_SLOTS);
/// How long a waiting call polls the completion queue before it sleeps on the completion
/// channel (default of [`RdmaConn::set_busy_poll`]).
const SPIN: Duration = Duration::from_micros(50);
/// Scatter-gather entries per send work request (as the queue pair is created).
const MAX_SGE: usize = 4;

/// Where a received frame waits for the application.
#[derive(Debug)]
enum Ready {
    /// In receive slot `slot`, `len` bytes after the prefix; `direct` if the values went to a
    /// registered buffer of ours.
    Slot { slot: u32, len: usize, direct: bool },
    /// A bulk frame written into its own buffer.
    Bulk(Frame),
}

/// A reliable-connected RDMA connection carrying ferrops frames. See the module docs.
pub struct RdmaConn {
    // Field order is drop order: the queue pair before its completion queue, regions before
    // the protection domain, everything before the rdma_cm id.
    qp: BasicQueuePair,
    cq: Arc<BasicCompletionQueue>,
    comp: Arc<CompletionChannel>,
    recv_mem: RegMem,
    send_mem: RegMem,
    bulk_out: HashMap<u64, BulkOut>,
    bulk_in: HashMap<u64, BulkIn>,
    staging_free: Vec<RegMem>,
    direct: HashMap<u64, RegMem>,
    /// Caller memory registered once for the connection's life (parameter segments), by start
    /// address: its length and region.
    stable: HashMap<usize, (usize, Arc<sideway::ibverbs::memory_region::MemoryRegion>)>,
    /// Regions replaced by a longer registration of the same memory, kept until no work
    /// request can still use them.
    retired: Vec<Arc<sideway::ibverbs::memory_region::MemoryRegion>>,
    /// A registration of caller memory failed (e.g. the memlock limit): stage from now on.
    stable_failed: bool,
    pd: Arc<ProtectionDomain>,
    _ctx: Arc<DeviceContext>,
    id: Arc<Identifier>,
    /// The connecting side's own event channel (disconnect events arrive there).
    cm_channel: Option<Arc<EventChannel>>,
    keep_alive: Option<Arc<EventChannel>>,

    send_free: Vec<u32>,
    max_inline: u32,
    sq_used: u32,
    credits: Credits,
    next_token: u64,
    pending: VecDeque<Out>,
    deferred_rts: VecDeque<(u64, Header)>,
    ready: VecDeque<Ready>,
    ready_bulk: usize,
    closed: bool,
    failed: Option<String>,
    armed: bool,
    spin: Duration,

    limits: FrameLimits,
    pool: BufferPool,
    metrics: Metrics,
}

impl std::fmt::Debug for RdmaConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaConn")
            .field("qp", &self.qp.qp_number())
            .field("credits", &self.credits.available())
            .field("pending", &self.pending.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl AsRawFd for RdmaConn {
    /// The completion channel: readable when a completion may be waiting.
    fn as_raw_fd(&self) -> RawFd {
        self.comp.as_raw_fd()
    }
}

impl RdmaConn {
    /// Registers `len` bytes at `ptr` for the peer's RDMA writes, without a borrow: for a
    /// caller that must keep using the buffer (e.g. lend it to a reader) while the peer may
    /// write into it.
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay allocated and in place until the returned registration is
    /// dropped, and nothing may rely on its contents while the peer may write into it.
    pub unsafe fn register_raw(
        &self,
        ptr: *mut u8,
        len: usize,
    ) -> Result<Registration<'static>, RdmaError> {
        // SAFETY: the caller keeps the memory alive and in place for the registration's life.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        Registration::new(&self.pd, buf)
    }

    /// Registers `buf` so that the peer can RDMA-write into it (see [`RemoteBuf`]).
    pub fn register<'a>(&self, buf: &'a mut [u8]) -> Result<Registration<'a>, RdmaError> {
        Registration::new(&self.pd, buf)
    }

    /// How long waiting calls ([`RdmaConn::recv_frame`], [`RdmaConn::flush`]) poll the
    /// completion queue before sleeping on the completion channel (default 50 µs). Longer
    /// polls trade a core for latency.
    pub fn set_busy_poll(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Send credits left (messages the peer has room for).
    pub fn credits(&self) -> u32 {
        self.credits.available()
    }

    /// Messages accepted by `send_frame` but not yet posted.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn check_usable(&self) -> Result<(), RdmaError> {
        if let Some(why) = &self.failed {
            return Err(RdmaError::Protocol(why.clone()));
        }
        if self.closed && self.ready.is_empty() {
            return Err(RdmaError::Closed);
        }
        Ok(())
    }

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
            self.request_to_send(frame, bulk)?;
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
        self.request_to_send(frame, bulk)?;
        self.poll_progress()
    }

    /// Sends a frame whose values are RDMA-written into `dest` (named by the peer in its
    /// request) instead of travelling in the frame: the zero-copy pull reply. The peer
    /// receives the frame with [`Frame::values_were_direct`] set and the values already in its
    /// buffer. The values must fit `dest`; the payload checksum is not checked for such frames.
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
            let token = self.next_token;
            self.next_token += 1;
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
    fn stable_lkey(&mut self, region: &[u8]) -> Result<u32, RdmaError> {
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
    fn check_direct(&self, frame: &FrameParts<'_>, dest: RemoteBuf) -> Result<usize, RdmaError> {
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
    fn check_without_values(frame: &FrameParts<'_>) -> Result<(), RdmaError> {
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
    fn send_frame_without_values(&mut self, frame: &FrameParts<'_>) -> Result<(), RdmaError> {
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

    fn recv_done(
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
            self.ready
                .push_back(Ready::Bulk(Frame::new(header, buf, false)));
            self.ready_bulk += 1;
            return Ok(());
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
                if !self.bulk_out.contains_key(&ctrl.token) {
                    return self
                        .protocol(format!("clear to send for unknown transfer {}", ctrl.token));
                }
                self.pending.push_back(Out::Write {
                    token: ctrl.token,
                    addr: ctrl.addr,
                    rkey: ctrl.rkey,
                });
            }
            KIND_CREDIT => self.post_recv(slot)?,
            KIND_BYE => self.closed = true,
            other => return self.protocol(format!("unknown message kind {other}")),
        }
        Ok(())
    }

    fn protocol(&mut self, why: String) -> Result<(), RdmaError> {
        self.failed = Some(why.clone());
        Err(RdmaError::Protocol(why))
    }

    fn metrics_received(&self, header: &Header) {
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

    fn frame_from_slot(&self, slot: u32, len: usize, direct: bool) -> Result<Frame, WireError> {
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

impl Drop for RdmaConn {
    fn drop(&mut self) {
        // Say goodbye so the peer fails fast instead of waiting for transport retries.
        if !self.closed && self.failed.is_none() && self.can_post_send(KIND_BYE) {
            let bye = Ctrl {
                kind: KIND_BYE,
                ..Ctrl::default()
            };
            if self.post_send_now(bye, &[]).is_ok() {
                let deadline = Instant::now() + Duration::from_millis(200);
                while self.sq_used > 0 && Instant::now() < deadline {
                    if self.poll_cq().is_err() {
                        break;
                    }
                }
            }
        }
        let _ = self.id.disconnect();
        let _ = &self.keep_alive;
    }
}

fn copy_slices(slices: &[&[u8]], skip: usize, out: &mut [u8]) {
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

fn check_payload_crc(header: &Header, payload: &[u8]) -> Result<(), WireError> {
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
