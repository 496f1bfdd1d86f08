//! Zero-copy pulls over RDMA: the slice of the caller's buffer that one server's reply fills is
//! registered with that server's connection and named in the request; the server RDMA-writes
//! the values there and the reply frame arrives without them. Only parts big enough to travel
//! as bulk transfers are worth a registration; smaller ones come in the reply frame.

use ferrops_net::Link;

use crate::EngineError;

/// Parts with fewer value bytes than this come in the reply frame (a registration costs more
/// than copying a small frame).
#[cfg(feature = "rdma")]
const DIRECT_MIN_BYTES: usize = ferrops_net::rdma::SMALL_FRAME_MAX;

/// A registered destination; the registration ends when it is dropped.
#[cfg(feature = "rdma")]
pub(crate) struct DirectDest(ferrops_net::rdma::Registration<'static>);

#[cfg(feature = "rdma")]
impl DirectDest {
    /// The name to put in the request's extra section.
    pub fn remote_bytes(&self) -> [u8; 16] {
        self.0.remote().to_bytes()
    }
}

/// Registers `floats` floats at `dest` with `link` when it is RDMA and the part is big enough.
///
/// # Safety
/// The memory must stay allocated, in place and unread until the returned value is dropped.
#[cfg(feature = "rdma")]
pub(crate) unsafe fn register(
    link: &Link,
    dest: *mut f32,
    floats: usize,
) -> Result<Option<DirectDest>, EngineError> {
    let bytes = floats * 4;
    if !link.is_rdma() || bytes < DIRECT_MIN_BYTES {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    let reg = unsafe { link.register_for_peer_writes(dest.cast(), bytes) }?;
    Ok(reg.map(DirectDest))
}

/// Without RDMA support there is nothing to register.
#[cfg(not(feature = "rdma"))]
pub(crate) struct DirectDest;

#[cfg(not(feature = "rdma"))]
impl DirectDest {
    pub fn remote_bytes(&self) -> [u8; 16] {
        [0; 16]
    }
}

/// Without RDMA support: never registers.
///
/// # Safety
/// Nothing to uphold; `unsafe` only to match the RDMA build.
#[cfg(not(feature = "rdma"))]
pub(crate) unsafe fn register(
    _: &Link,
    _: *mut f32,
    _: usize,
) -> Result<Option<DirectDest>, EngineError> {
    Ok(None)
}
