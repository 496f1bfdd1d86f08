//! Connections: [`RdmaConn`] and [`RdmaListener`], split by job.
//!
//! This module holds the connection's state (one struct, whose field order is its drop
//! order), the sizes of its buffers and queues, and the goodbye on drop. The rest lives
//! beside it, each part an `impl RdmaConn` block or a small type of its own:
//!
//! * `ctrl`: the 32-byte control prefix of every SEND (wire format);
//! * `credits`: credit flow control, pure bookkeeping;
//! * `listen` and `setup`: rdma_cm connection setup, passive and active, and the verbs
//!   resources of a connection;
//! * `post`: posting receives, SENDs and WRITEs, and the queue of what must wait;
//! * `send` and `bulk`: the send paths, and the rendezvous for frames too large for a SEND;
//! * `landing`: regions a receiver advertises ahead, so a repeated bulk frame skips the
//!   rendezvous;
//! * `receive`: what arrived messages mean, and frames handed to the application;
//! * `completion`: completion queue polling, the completion channel behind the fd, waiting.

mod bulk;
mod completion;
mod credits;
mod ctrl;
mod landing;
mod listen;
mod post;
mod receive;
mod send;
mod setup;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel};
use sideway::ibverbs::device_context::DeviceContext;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{BasicQueuePair, QueuePair as _};
use sideway::rdmacm::communication_manager::{EventChannel, Identifier};

use self::bulk::{BulkIn, BulkOut};
use self::completion::wait_readable;
pub use self::credits::CREDITS;
use self::credits::{Credits, RESERVE};
use self::ctrl::{Ctrl, CTRL_LEN, KIND_BYE};
use self::landing::{Advert, Landing};
pub use self::landing::{BulkPaths, LANDING_MAX};
pub use self::listen::RdmaListener;
use self::post::Out;
use self::receive::Ready;
use super::mem::{RegMem, Registration};
use super::RdmaError;
use crate::{BufferPool, FrameLimits, Header, Metrics};

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
    /// Our region the peer may write its next bulk frame into.
    landing: Option<Landing>,
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
    /// Completions of one poll, kept between polls (see `poll_cq`).
    completions: Vec<completion::Completion>,
    max_inline: u32,
    sq_used: u32,
    credits: Credits,
    next_token: u64,
    /// The peer's region our next bulk frame may be written into.
    advert: Option<Advert>,
    /// Bytes of the next region we advertise: the largest bulk payload received (0: none yet).
    landing_len: usize,
    bulk_paths: BulkPaths,
    pending: VecDeque<Out>,
    /// Messages in `pending` that deliver no frame (they may pass a bulk frame that waits).
    queued_controls: usize,
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

    /// Registers `buf` so that the peer can RDMA-write into it (see
    /// [`RemoteBuf`](crate::rdma::RemoteBuf)).
    pub fn register<'a>(&self, buf: &'a mut [u8]) -> Result<Registration<'a>, RdmaError> {
        Registration::new(&self.pd, buf)
    }

    /// Sets the limits incoming frames are checked against; returns the old ones.
    pub fn replace_limits(&mut self, limits: FrameLimits) -> FrameLimits {
        std::mem::replace(&mut self.limits, limits)
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

    /// Bulk frames received and not yet taken, those being written into our buffers, and our
    /// advertised region: the buffers held for bulk frames, at most [`bulk::MAX_READY_BULK`].
    fn bulk_buffers_held(&self) -> usize {
        self.ready_bulk + self.bulk_in.len() + usize::from(self.landing.is_some())
    }

    /// A token no transfer or region of this connection has had.
    fn new_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
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
