//! Shared-memory transport for a worker and a server on one host: the same frames as TCP,
//! through a pair of single-producer single-consumer byte rings in a memfd.
//!
//! * `ring`: one ring, with every position read from shared memory bounds-checked (the peer
//!   is untrusted: a corrupt ring is an error on its connection, never an access outside it);
//! * `handshake`: the dialer creates the memfd (sealed against shrinking and growing) and
//!   passes it with `SCM_RIGHTS` over a Unix socket in the abstract namespace named after the
//!   server's advertised TCP address ([`socket_name`]); the acceptor checks size and seals
//!   before mapping;
//! * `conn`: [`ShmConn`], a connection with the same [`crate::FrameReader`] and
//!   [`crate::OutQueue`] as a TCP peer, so authentication, frame limits and checksums apply
//!   unchanged;
//! * [`floor`]: raw ping-pongs through the rings, the benchmark's floor for this transport.
//!
//! # Wakeups
//!
//! Polling a ring costs no system call, so a connection is polled like an RDMA one (the
//! busy-poll policy of the event loop and the client driver). Before its owner sleeps,
//! [`ShmConn::prepare_sleep`] sets the ring's parked flag; a writer that finds the flag set
//! after publishing bytes clears it and sends one byte on the Unix socket, which makes the
//! sleeper's fd readable. A writer facing a full ring parks the same way and is woken by the
//! reader. Closing either end closes the socket: the peer sees it once its ring is empty.

mod conn;
pub mod floor;
mod handshake;
mod ring;
#[cfg(test)]
mod tests;

use std::io;

pub use conn::ShmConn;
pub use handshake::{bind, socket_name, MAX_RING, MIN_RING};

/// Bytes of each ring of a connection (two per connection, touched only as they are used).
pub const DEFAULT_RING: usize = 8 << 20;

/// Errors of the shared-memory transport.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("cannot listen for shared-memory connections on @{name}: {source}")]
    Listen { name: String, source: io::Error },
    #[error("cannot connect to the shared-memory listener @{name}: {source}")]
    Connect { name: String, source: io::Error },
    #[error("{op} failed: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("shared-memory setup refused: {0}")]
    Setup(String),
    #[error("shared-memory ring corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ShmError {
    fn os(op: &'static str) -> ShmError {
        ShmError::Os {
            op,
            source: io::Error::last_os_error(),
        }
    }
}

impl From<ShmError> for crate::NetError {
    fn from(e: ShmError) -> crate::NetError {
        match e {
            ShmError::Io(e) => crate::NetError::Io(e),
            other => crate::NetError::Shm(other.to_string()),
        }
    }
}

/// Whether `ip` is an address of this host (loopback or one of its interfaces): only then
/// may a server at that address be reached through shared memory.
pub fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}
