//! The passive side of connection setup: [`RdmaListener`] binds an rdma_cm id, waits for
//! connect requests and brings each connection up before accepting it. Requests that arrive
//! while one connection is being set up wait their turn.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use sideway::ibverbs::queue_pair::QueuePair as _;
use sideway::rdmacm::communication_manager::{
    ConnectionParameter, EventChannel, EventType, Identifier, PortSpace,
};

use super::setup::{wait_cm_event, CM_TIMEOUT};
use super::{wait_readable, RdmaConn};
use crate::rdma::device::ensure_library;
use crate::rdma::RdmaError;
use crate::{BufferPool, FrameLimits, Metrics};

/// Accepts RDMA connections on an ip:port (rdma_cm), like a TCP listener.
pub struct RdmaListener {
    id: Arc<Identifier>,
    channel: Arc<EventChannel>,
    addr: SocketAddr,
    limits: FrameLimits,
    pool: BufferPool,
    metrics: Metrics,
    /// Connect requests that arrived while another connection was being set up.
    waiting: std::sync::Mutex<VecDeque<Arc<Identifier>>>,
}

impl std::fmt::Debug for RdmaListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaListener")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RdmaListener {
    /// Listens on `addr` (an address of an RDMA-capable interface, or 0.0.0.0; the port must
    /// be given: rdma_cm has its own port space).
    pub fn bind(addr: SocketAddr) -> Result<RdmaListener, RdmaError> {
        Self::bind_with(
            addr,
            FrameLimits::default(),
            BufferPool::new(),
            Metrics::new(),
        )
    }

    /// [`RdmaListener::bind`] with the limits, pool and metrics given to accepted connections.
    pub fn bind_with(
        addr: SocketAddr,
        limits: FrameLimits,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<RdmaListener, RdmaError> {
        ensure_library()?;
        let channel = EventChannel::new().map_err(|e| RdmaError::cm("create_event_channel", e))?;
        let id = channel
            .create_id(PortSpace::Tcp)
            .map_err(|e| RdmaError::cm("create_id", e))?;
        id.bind_addr(addr)
            .map_err(|e| RdmaError::cm("bind_addr", format!("{addr}: {e} ({:?})", e.source)))?;
        id.listen(64).map_err(|e| RdmaError::cm("listen", e))?;
        Ok(RdmaListener {
            id,
            channel,
            addr,
            limits,
            pool,
            metrics,
            waiting: std::sync::Mutex::new(VecDeque::new()),
        })
    }

    /// The address given to `bind`.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the next connection and sets it up.
    pub fn accept(&self) -> Result<RdmaConn, RdmaError> {
        loop {
            if let Some(conn) = self.accept_timeout(Duration::from_secs(3600))? {
                return Ok(conn);
            }
        }
    }

    /// Like [`RdmaListener::accept`], but gives up after `timeout` with `Ok(None)` (so that an
    /// accepting thread can notice it should stop).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Option<RdmaConn>, RdmaError> {
        let _ = &self.id;
        let cm_id = match self.take_waiting() {
            Some(id) => id,
            None => loop {
                if !wait_readable(&[self.channel.as_raw_fd()], Some(timeout))? {
                    return Ok(None);
                }
                let event = wait_cm_event(&self.channel, None)?;
                let request = (event.event_type() == EventType::ConnectRequest)
                    .then(|| event.cm_id())
                    .flatten();
                drop(event.ack());
                // Disconnects of earlier connections and the like: they notice on their own.
                if let Some(id) = request {
                    break id;
                }
            },
        };
        let ctx = cm_id
            .get_device_context()
            .ok_or_else(|| RdmaError::cm("accept", "connect request without a device"))?;
        let mut conn = RdmaConn::new(
            cm_id.clone(),
            None,
            ctx,
            self.limits,
            self.pool.clone(),
            self.metrics.clone(),
        )?;
        conn.bring_up_passive()?;
        let mut param = ConnectionParameter::new();
        param.setup_qp_number(conn.qp.qp_number());
        cm_id
            .accept(param)
            .map_err(|e| RdmaError::cm("accept", e))?;
        loop {
            let event = wait_cm_event(&self.channel, Some(CM_TIMEOUT))?;
            let ty = event.event_type();
            let id = event.cm_id();
            drop(event.ack());
            let ours = id.as_ref().is_some_and(|id| Arc::ptr_eq(id, &cm_id));
            if !ours {
                // Another peer asking to connect while this one comes up: its turn is next.
                if let (EventType::ConnectRequest, Some(id)) = (ty, id) {
                    self.waiting_push(id);
                }
                continue;
            }
            match ty {
                EventType::Established => break,
                other => {
                    return Err(RdmaError::cm(
                        "accept",
                        format!("connection not established: {other:?}"),
                    ))
                }
            }
        }
        conn.keep_alive = Some(self.channel.clone());
        Ok(Some(conn))
    }

    fn take_waiting(&self) -> Option<Arc<Identifier>> {
        self.waiting.lock().ok()?.pop_front()
    }

    fn waiting_push(&self, id: Arc<Identifier>) {
        if let Ok(mut w) = self.waiting.lock() {
            w.push_back(id);
        }
    }
}
