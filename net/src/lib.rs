//! `ferrops-net` moves frames between ferrops nodes and knows nothing about tables or
//! consistency; it owns every socket, verb and event loop of the system. A frame is a fixed
//! 80-byte little-endian [`Header`] followed by up to three sections (keys, values, extra), each
//! padded to 8 bytes so that keys and values can be read in place. [`FrameReader`] decodes frames
//! incrementally from a non-blocking socket into pooled, aligned buffers ([`BufferPool`]),
//! checking every length against [`FrameLimits`] before it allocates; [`OutQueue`] writes frames
//! with vectored writes straight from the caller's slices. [`Budget`] bounds what peers can make
//! a process hold: queued replies (backpressure), large incoming frames, connections.
//!
//! Every connection opens with the authentication handshake ([`auth`]): both sides prove they
//! hold the cluster secret and learn each other's identity before any other frame is read.
//!
//! Connections are [`Link`]s: TCP ([`Peer`]) or RDMA verbs ([`rdma`], feature `rdma`), chosen
//! per process by [`transport::resolve`] from `auto|rdma|tcp`. [`Link`]'s documentation lists
//! the whole transport contract: send a frame, read frames into a [`FrameSink`], flush,
//! addresses, and transport-neutral memory registration ([`Registration`], named to the peer
//! as a 16-byte [`RemoteRegion`]), so that no caller needs to know which transport it talks to.
//! Two drivers move them: [`EventLoop`] drives many connections with mio on its own thread and
//! hands decoded frames to a [`Handler`] — the server and scheduler in `ferrops-engine` are
//! such handlers — and [`ClientDriver`] ([`client`]) drives one client's links to its servers
//! and scheduler on the caller's thread, spinning on RDMA links before it sleeps, handing what
//! arrives to a [`ClientHandler`]; [`client::Dialer`] sets those links up. [`netdev`] says which
//! network interface carries an address. [`Metrics`] counts bytes per section and the value
//! bytes copied on the way. Key-list signatures ([`key_signature`]) live here because they are
//! part of the wire.
//!
//! Where things go: a new transport is a module beside [`rdma`] and [`shm`] that
//! provides what [`Link`]'s contract lists, a variant of [`Link`] forwarding to it, a case in
//! [`transport::resolve`] and in [`client::Dialer`], and a listener the [`EventLoop`] adopts
//! connections from; nothing above this crate changes. A new opcode or header flag goes in
//! `wire.rs`; a new codec in [`codec`].

// Unsafe code only in the modules marked `#[allow(unsafe_code)]` below, each saying why.
#![deny(unsafe_code)]

pub mod auth;
#[allow(unsafe_code)] // getrlimit, for the default connection limit
mod budget;
mod buffer;
pub mod client;
pub mod codec;
mod error;
#[allow(unsafe_code)] // forwards direct RDMA writes from registered regions
mod event_loop;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
#[allow(unsafe_code)] // forwards registrations and direct writes to the RDMA connection
mod link;
mod metrics;
#[allow(unsafe_code)] // getifaddrs
pub mod netdev;
mod peer;
#[cfg(feature = "rdma")]
#[allow(unsafe_code)] // verbs: registrations, posting, completions
pub mod rdma;
mod reader;
mod region;
mod scrape;
mod shared;
#[allow(unsafe_code)] // mmap of the rings, atomics on shared memory, SCM_RIGHTS
pub mod shm;
mod signature;
mod spin;
pub mod transport;
mod wire;
mod writer;

pub use budget::{default_max_connections, Budget, Budgets};
pub use buffer::{BufferPool, PooledBuf, MAX_CACHED_BYTES};
pub use client::{ClientDriver, ClientHandler};
pub use error::{NetError, WireError};
pub use event_loop::{CloseReason, EventLoop, Handler, Io, PeerId, DEFAULT_BUSY_POLL};
pub use limits::FrameLimits;
pub use link::Link;
pub use metrics::{Metrics, MetricsSnapshot};
pub use peer::Peer;
pub use reader::{FrameReader, FrameSink, NoDirectValues, ReadOutcome};
pub use region::{Registration, RemoteRegion};
pub use scrape::{RenderMetrics, ScrapeEndpoint, MAX_REQUEST_BYTES, SCRAPE_TIMEOUT};
pub use shared::SharedWriter;
pub use signature::key_signature;
pub use transport::TransportMode;
pub use wire::{
    flags, pad8, Frame, FrameParts, Header, Opcode, Status, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
pub use writer::OutQueue;
