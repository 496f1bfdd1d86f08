//! Zero-copy pushes and pulls over RDMA: the slice of the caller's buffer that one server's part
//! of a request covers is registered with that server's connection. A pull names it in the
//! request and the server RDMA-writes the values there (the reply frame arrives without them);
//! a blocking push's bulk frame is written from it by the device, with no staging copy. Only
//! parts big enough to travel as bulk transfers are worth a registration.

use ferrops_net::Link;

use crate::EngineError;

/// Parts with fewer value bytes than this come in the reply frame (a registration costs more
/// than copying a small frame).
#[cfg(feature = "rdma")]
const DIRECT_MIN_BYTES: usize = ferrops_net::rdma::SMALL_FRAME_MAX;

/// A registered slice of the caller's memory; the registration ends when it is dropped.
#[cfg(feature = "rdma")]
pub(crate) struct Registered(ferrops_net::rdma::Registration<'static>);

#[cfg(feature = "rdma")]
impl Registered {
    /// The name to put in the request's extra section.
    pub fn remote_bytes(&self) -> [u8; 16] {
        self.0.remote().to_bytes()
    }

    /// The registration, for sending from it.
    pub fn registration(&self) -> &ferrops_net::rdma::Registration<'static> {
        &self.0
    }
}

/// Registers `floats` floats at `dest` with `link` when it is RDMA and the part is big enough
/// (for the server's writes into it, or the device's reads from it).
///
/// # Safety
/// The memory must stay allocated, in place and unread until the returned value is dropped.
#[cfg(feature = "rdma")]
pub(crate) unsafe fn register(
    link: &Link,
    dest: *mut f32,
    floats: usize,
) -> Result<Option<Registered>, EngineError> {
    let bytes = floats * 4;
    if !link.is_rdma() || bytes < DIRECT_MIN_BYTES {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    match unsafe { link.register_for_peer_writes(dest.cast(), bytes) } {
        Ok(reg) => Ok(reg.map(Registered)),
        Err(e) => {
            // E.g. the memlock limit: the values travel in the frame instead.
            tracing::warn!("cannot register {bytes} bytes for a zero-copy transfer: {e}");
            Ok(None)
        }
    }
}

/// Without RDMA support there is nothing to register.
#[cfg(not(feature = "rdma"))]
pub(crate) struct Registered;

#[cfg(not(feature = "rdma"))]
impl Registered {
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
) -> Result<Option<Registered>, EngineError> {
    Ok(None)
}
