//! The active side of connection setup and what both sides share: creating the verbs
//! resources of a connection (protection domain, completion channel and queue, queue pair,
//! registered send and receive buffers), rdma_cm address and route resolution, and the
//! queue pair's walk through init, ready-to-receive and ready-to-send.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use sideway::ibverbs::completion::{CompletionChannel, CompletionQueueBuilder};
use sideway::ibverbs::device_context::DeviceContext;
use sideway::ibverbs::queue_pair::{QueuePair as _, QueuePairAttribute, QueuePairState};
use sideway::ibverbs::AccessFlags;
use sideway::rdmacm::communication_manager::{
    ConnectionParameter, Event, EventChannel, EventType, Identifier, PortSpace,
};

use super::credits::Credits;
use super::{
    wait_readable, BulkPaths, RdmaConn, CQE, MAX_SEND_WR, MAX_SGE, RECV_SLOTS, SEND_SLOTS, SLOT,
    SPIN,
};
use crate::rdma::device::ensure_library;
use crate::rdma::mem::RegMem;
use crate::rdma::RdmaError;
use crate::{BufferPool, FrameLimits, Metrics};

/// Inline data asked of the queue pair (SENDs up to this size skip the DMA read); without
/// it where the device refuses.
const INLINE_WANTED: u32 = 256;
/// How long an rdma_cm step (resolution, connect, accept) may take.
pub(super) const CM_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn wait_cm_event(
    channel: &Arc<EventChannel>,
    timeout: Option<Duration>,
) -> Result<Event, RdmaError> {
    if let Some(t) = timeout {
        if !wait_readable(&[channel.as_raw_fd()], Some(t))? {
            return Err(RdmaError::Timeout("an rdma_cm event"));
        }
    }
    channel
        .get_cm_event()
        .map_err(|e| RdmaError::cm("get_cm_event", e))
}

fn remote_access() -> AccessFlags {
    AccessFlags::LocalWrite | AccessFlags::RemoteWrite
}

fn expect_event(channel: &Arc<EventChannel>, want: EventType) -> Result<(), String> {
    let event = wait_cm_event(channel, Some(CM_TIMEOUT)).map_err(|e| e.to_string())?;
    let got = event.event_type();
    let status = event.status();
    drop(event.ack());
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {got:?} (status {status})"))
    }
}

impl RdmaConn {
    /// Connects to an [`RdmaListener`](super::RdmaListener) at `addr`.
    pub fn connect(addr: SocketAddr) -> Result<RdmaConn, RdmaError> {
        Self::connect_with(
            addr,
            FrameLimits::default(),
            BufferPool::new(),
            Metrics::new(),
        )
    }

    /// [`RdmaConn::connect`] with explicit limits, pool and metrics.
    pub fn connect_with(
        addr: SocketAddr,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<RdmaConn, RdmaError> {
        ensure_library()?;
        let fail = |detail: String| RdmaError::Connect {
            addr: addr.to_string(),
            detail,
        };
        let channel = EventChannel::new().map_err(|e| RdmaError::cm("create_event_channel", e))?;
        let id = channel
            .create_id(PortSpace::Tcp)
            .map_err(|e| RdmaError::cm("create_id", e))?;
        id.resolve_addr(None, addr, CM_TIMEOUT)
            .map_err(|e| fail(format!("resolve_addr: {e} ({:?})", e.source)))?;
        expect_event(&channel, EventType::AddressResolved).map_err(fail)?;
        id.resolve_route(CM_TIMEOUT)
            .map_err(|e| fail(format!("resolve_route: {e}")))?;
        expect_event(&channel, EventType::RouteResolved).map_err(fail)?;
        let ctx = id
            .get_device_context()
            .ok_or_else(|| fail("no RDMA device for this address".into()))?;
        let mut conn = RdmaConn::new(
            id.clone(),
            Some(channel.clone()),
            ctx,
            limits,
            pool,
            metrics,
        )?;
        let mut attr = id
            .get_qp_attr(QueuePairState::Init)
            .map_err(|e| RdmaError::cm("get_qp_attr(init)", e))?;
        attr.setup_access_flags(remote_access());
        conn.qp
            .modify(&attr)
            .map_err(|e| RdmaError::verbs("modify_qp(init)", e))?;
        conn.post_all_recvs()?;
        let mut param = ConnectionParameter::new();
        param.setup_qp_number(conn.qp.qp_number());
        id.connect(param)
            .map_err(|e| fail(format!("connect: {e}")))?;
        expect_event(&channel, EventType::ConnectResponse).map_err(fail)?;
        conn.modify_rtr_rts()?;
        id.establish().map_err(|e| RdmaError::cm("establish", e))?;
        Ok(conn)
    }

    pub(super) fn new(
        id: Arc<Identifier>,
        cm_channel: Option<Arc<EventChannel>>,
        ctx: Arc<DeviceContext>,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<RdmaConn, RdmaError> {
        let pd = ctx
            .alloc_pd()
            .map_err(|e| RdmaError::verbs("ibv_alloc_pd", e))?;
        let comp = CompletionChannel::new(&ctx)
            .map_err(|e| RdmaError::verbs("ibv_create_comp_channel", e))?;
        comp.set_nonblocking(true)
            .map_err(|source| RdmaError::Verbs {
                op: "set_nonblocking",
                source,
            })?;
        let cq = CompletionQueueBuilder::new(&ctx)
            .setup_cqe(CQE)
            .setup_comp_channel(&comp, 0)
            .build()
            .map_err(|e| RdmaError::verbs("ibv_create_cq", e))?;
        let build = |inline: u32| {
            pd.create_qp_builder()
                .setup_max_send_wr(MAX_SEND_WR)
                .setup_max_recv_wr(RECV_SLOTS)
                .setup_max_send_sge(MAX_SGE as u32)
                .setup_max_recv_sge(1)
                .setup_max_inline_data(inline)
                .setup_send_cq(cq.clone())
                .setup_recv_cq(cq.clone())
                .build()
        };
        let (qp, max_inline) = match build(INLINE_WANTED) {
            Ok(qp) => (qp, INLINE_WANTED),
            Err(_) => (
                build(0).map_err(|e| RdmaError::verbs("ibv_create_qp", e))?,
                0,
            ),
        };
        let recv_mem = RegMem::new(&pd, RECV_SLOTS as usize * SLOT)?;
        let send_mem = RegMem::new(&pd, SEND_SLOTS as usize * SLOT)?;
        let mut conn = RdmaConn {
            qp,
            cq,
            comp,
            recv_mem,
            send_mem,
            bulk_out: HashMap::new(),
            bulk_in: HashMap::new(),
            landing: None,
            staging_free: Vec::new(),
            direct: HashMap::new(),
            stable: HashMap::new(),
            retired: Vec::new(),
            stable_failed: false,
            pd,
            _ctx: ctx,
            id,
            cm_channel,
            keep_alive: None,
            send_free: (0..SEND_SLOTS).rev().collect(),
            completions: Vec::with_capacity(CQE as usize),
            max_inline,
            sq_used: 0,
            credits: Credits::new(),
            next_token: 1,
            advert: None,
            landing_len: 0,
            bulk_paths: BulkPaths::default(),
            pending: VecDeque::new(),
            queued_controls: 0,
            deferred_rts: VecDeque::new(),
            ready: VecDeque::new(),
            ready_bulk: 0,
            closed: false,
            failed: None,
            armed: false,
            spin: SPIN,
            limits,
            pool,
            metrics,
        };
        conn.arm()?;
        Ok(conn)
    }

    /// Passive side: the queue pair all the way to ready-to-send, receives posted, before
    /// the accept goes out.
    pub(super) fn bring_up_passive(&mut self) -> Result<(), RdmaError> {
        self.modify_qp_to(
            QueuePairState::Init,
            ("get_qp_attr(init)", "modify_qp(init)"),
            |attr| {
                attr.setup_access_flags(remote_access());
            },
        )?;
        self.post_all_recvs()?;
        self.modify_rtr_rts()
    }

    fn modify_rtr_rts(&mut self) -> Result<(), RdmaError> {
        self.modify_qp_to(
            QueuePairState::ReadyToReceive,
            ("get_qp_attr(rtr)", "modify_qp(rtr)"),
            |attr| {
                // rdma_cm grants remote writes only on the passive side; both sides need them
                // (bulk payloads and direct values go either way).
                attr.setup_access_flags(remote_access());
            },
        )?;
        self.modify_qp_to(
            QueuePairState::ReadyToSend,
            ("get_qp_attr(rts)", "modify_qp(rts)"),
            |attr| {
                // Transport retries for lost packets; receiver-not-ready cannot happen (credits)
                // but retrying costs nothing if it ever did.
                attr.setup_retry_cnt(7).setup_rnr_retry(7);
            },
        )
    }

    /// Moves the queue pair to `state` with the attributes rdma_cm gives for it, after
    /// `adjust`; `ops` names the two calls in errors.
    fn modify_qp_to(
        &mut self,
        state: QueuePairState,
        (get_op, modify_op): (&'static str, &'static str),
        adjust: impl FnOnce(&mut QueuePairAttribute),
    ) -> Result<(), RdmaError> {
        let mut attr = self
            .id
            .get_qp_attr(state)
            .map_err(|e| RdmaError::cm(get_op, e))?;
        adjust(&mut attr);
        self.qp
            .modify(&attr)
            .map_err(|e| RdmaError::verbs(modify_op, e))
    }
}
