//! Errors of the wire format and the transports.

use std::io;

/// A frame that breaks the wire format. Each variant says what was wrong so that the peer can be
/// told and the operator can read it in the log.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("bad magic 0x{found:08x} (expected 0x{expected:08x}): not a ferrops peer")]
    BadMagic { found: u32, expected: u32 },
    #[error("unsupported protocol version {found} (this node speaks {supported})")]
    BadVersion { found: u16, supported: u16 },
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    #[error("header checksum mismatch (header says 0x{expected:08x}, computed 0x{computed:08x})")]
    HeaderChecksum { expected: u32, computed: u32 },
    #[error("payload checksum mismatch (header says 0x{expected:08x}, computed 0x{computed:08x})")]
    PayloadChecksum { expected: u32, computed: u32 },
    #[error("{section} section of {len} bytes exceeds the configured limit of {limit} bytes")]
    TooLarge {
        section: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("frame truncated: connection closed {missing} bytes before the end of the frame")]
    Truncated { missing: u64 },
    #[error("direct values destination has {dest} bytes but the frame carries {frame}")]
    DestinationSize { dest: usize, frame: usize },
    #[error("malformed section: {0}")]
    Malformed(String),
    #[error(
        "frame needs {needed} more bytes but large frames already hold {held} of this node's \
         budget of {limit} bytes (frame_bytes_total)"
    )]
    OverBudget { needed: u64, held: u64, limit: u64 },
    #[error("cannot allocate {0} bytes for a frame")]
    NoMemory(u64),
}

impl WireError {
    /// The status code sent to the peer when its frame is rejected.
    pub fn status(&self) -> crate::Status {
        match self {
            WireError::OverBudget { .. } | WireError::NoMemory(_) => crate::Status::OutOfMemory,
            _ => crate::Status::BadFrame,
        }
    }
}

/// Errors of a transport operation.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("peer {0} is not connected")]
    UnknownPeer(usize),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("peer closed the connection")]
    Closed,
    #[error("authentication with {addr} failed: {source}")]
    Auth {
        addr: String,
        source: crate::auth::AuthError,
    },
    #[error("RDMA transport: {0}")]
    Rdma(String),
    #[error("shared-memory transport: {0}")]
    Shm(String),
    #[error("send queue to peer {peer} holds {queued} bytes, over the limit of {limit}")]
    Backlog {
        peer: usize,
        queued: usize,
        limit: usize,
    },
}
