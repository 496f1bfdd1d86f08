//! RDMA verbs transport: ferrops frames over reliable-connected queue pairs, set up with
//! rdma_cm, with TCP as the run-time fallback.
//!
//! Built on `sideway`, which loads rdma-core (libibverbs, librdmacm) at run time: a binary built
//! with this module starts and runs over TCP on machines without rdma-core or without a device.
//!
//! # Choosing the transport
//!
//! * [`devices`] lists verbs devices with their ports (empty when rdma-core is missing);
//! * [`available`] is what `--transport auto` asks: `Ok(device)` when a device has an active
//!   port, otherwise [`Unavailable`] with a reason for the log, and the caller uses TCP;
//! * [`device_ipv4`] gives the IPv4 address of the network interface under a RoCE device,
//!   which is the address to bind and to advertise (rdma_cm addresses are ip:port, like TCP,
//!   but loopback cannot carry RDMA).
//!
//! # Connections
//!
//! [`RdmaListener::bind`] / [`RdmaListener::accept`] and [`RdmaConn::connect`] mirror the TCP
//! listener and [`crate::Peer`]. A connection carries whole frames:
//!
//! * [`RdmaConn::send_frame`] takes the same [`crate::FrameParts`] as [`crate::Peer::send`]; it
//!   never blocks: what cannot be posted now (no credit, send queue full) is queued and posted
//!   by later calls ([`RdmaConn::progress`], any send or receive). [`RdmaConn::flush`] waits
//!   until everything is on the wire.
//! * [`RdmaConn::try_recv_frame`] returns the next whole [`crate::Frame`] if one arrived (its
//!   payload is a [`crate::PooledBuf`] from the connection's [`crate::BufferPool`], exactly as
//!   TCP delivers it); [`RdmaConn::recv_frame`] waits for one.
//! * The connection implements [`std::os::fd::AsRawFd`]: the fd of its completion channel.
//!   Register it with mio (`SourceFd`, readable, edge-triggered) and call `try_recv_frame`
//!   until it returns `None` whenever it fires. `try_recv_frame` only polls the completion
//!   queue (cheap enough to spin on); before sleeping on the fd, call
//!   [`RdmaConn::prepare_sleep`], which takes the channel's events and re-arms it, and skip
//!   the sleep when it says a frame is ready.
//!
//! # Protocol
//!
//! * **Small frames** (header and payload up to [`SMALL_FRAME_MAX`] bytes) travel in one SEND
//!   (inline when the device allows) into receive buffers the peer pre-posted from a registered
//!   pool.
//! * **Bulk frames**: the sender SENDs the 80-byte header alone (a request to send); the receiver
//!   validates it against its [`crate::FrameLimits`] *before allocating*, takes a payload
//!   buffer from its pool, registers it and answers with its address and rkey; the sender then
//!   RDMA-WRITEs the payload (WRITE_WITH_IMM, the immediate naming the transfer) straight into
//!   it. The received frame's payload is that buffer: no copy on the receive side.
//! * **Landing regions**: once a bulk frame has come that way, the receiver advertises a
//!   registered buffer ahead (as large as the largest bulk payload it has had, at most
//!   [`LANDING_MAX`]); the sender writes its next bulk frame that fits straight into it and
//!   sends the header behind it, skipping the round trip. [`RdmaConn::bulk_paths`] counts both
//!   ways.
//! * **Order**: frames arrive in the order they were sent, whatever way each took; control
//!   messages (requests to send, clear-to-send answers, adverts, credits) pass frames that
//!   wait, so two ends that both wait for a clear-to-send answer each other.
//! * **Credits**: every message that occupies a receive buffer of the peer costs one credit;
//!   the peer starts us with [`CREDITS`] and hands them back as the application consumes
//!   frames (in the immediate of every SEND, or in a credit-only message). A sender never
//!   sends without a credit, so the receiver never sees receiver-not-ready storms; a slow
//!   receiver slows the sender down instead. A few receive buffers beyond the credit window are
//!   kept for credit-only messages and the goodbye.
//! * **Zero-copy pull replies**: the requester registers the destination of the values with
//!   [`RdmaConn::register`] and names the resulting [`RemoteBuf`] in its request (e.g. in the
//!   extra section, [`RemoteBuf::to_bytes`]). The server answers with
//!   [`RdmaConn::send_frame_values_to`]: the values are RDMA-written into that buffer and the
//!   frame follows without them; RC ordering makes the values visible before the frame
//!   arrives, and the frame reports [`crate::Frame::values_were_direct`].
//! * Dropping a connection tells the peer (goodbye message, then rdma_cm disconnect): the
//!   peer's next call returns [`RdmaError::Closed`]. Frames still queued (waiting for a credit
//!   or a clear-to-send) are dropped with it, unlike a TCP socket's buffered bytes: call
//!   [`RdmaConn::flush`] first to deliver them. A peer that dies without a word is noticed
//!   by the retry-exhausted completion of the next send; a receiver that only waits should use
//!   [`RdmaConn::recv_frame_timeout`].
//!
//! # Memory
//!
//! Registration pins memory and counts against `RLIMIT_MEMLOCK`. When registration fails
//! because of it, the error is [`RdmaError::Memlock`], which names the limit and how to raise
//! it. `ibv_fork_init` is called before anything is registered.

mod conn;
mod device;
mod mem;

use std::io;

pub use conn::{BulkPaths, RdmaConn, RdmaListener, CREDITS, LANDING_MAX, SMALL_FRAME_MAX};
pub use device::{available, available_or_skip, devices, DeviceInfo, PortInfo};
pub use mem::{device_ipv4, Registration, RemoteBuf};

use crate::WireError;

/// Why RDMA cannot be used on this machine (the caller falls back to TCP).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("RDMA unavailable: {reason}")]
pub struct Unavailable {
    pub reason: String,
}

/// Errors of the RDMA transport.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("rdma_cm {op} failed: {detail}")]
    Cm { op: &'static str, detail: String },
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("verbs {op} failed: {source}")]
    Verbs {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot register {len} bytes of memory for RDMA: the locked-memory limit \
         (RLIMIT_MEMLOCK, `ulimit -l`) is {limit}; raise it (e.g. `ulimit -l unlimited`, \
         `LimitMEMLOCK=infinity` for a systemd unit, `--ulimit memlock=-1` for a container)"
    )]
    Memlock { len: usize, limit: String },
    #[error("work request {op} completed with status {status} (vendor error {vendor_err})")]
    Completion {
        op: &'static str,
        status: u32,
        vendor_err: u32,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("peer broke the RDMA transport protocol: {0}")]
    Protocol(String),
    #[error("peer closed the connection")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

impl RdmaError {
    pub(crate) fn verbs(op: &'static str, e: impl std::fmt::Display) -> RdmaError {
        let source = io::Error::last_os_error();
        let source = if source.raw_os_error().unwrap_or(0) == 0 {
            io::Error::other(e.to_string())
        } else {
            io::Error::new(source.kind(), format!("{e}: {source}"))
        };
        RdmaError::Verbs { op, source }
    }

    pub(crate) fn cm(op: &'static str, e: impl std::fmt::Display) -> RdmaError {
        RdmaError::Cm {
            op,
            detail: e.to_string(),
        }
    }
}
