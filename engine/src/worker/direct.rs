//! Zero-copy pushes and pulls: the slice of the caller's buffer that one server's part of a
//! request covers is registered with that server's connection. A pull names it in the request
//! and the server writes the values there (the reply frame arrives without them); a blocking
//! push's bulk frame is read from it by the device, with no staging copy. Whether a
//! registration pays (the transport can use one, the part is big enough to travel as a bulk
//! transfer) is the connection's call: over TCP there is none, and the values travel in frames.

use ferrops_net::Registration;

use super::io::ClientIo;

/// A registered slice of the caller's memory; the registration ends when it is dropped.
pub(crate) type Registered = Registration;

/// Registers `floats` floats at `dest` with the connection to `server` when that connection
/// can use them (for the server's writes into them, or the device's reads from them).
///
/// # Safety
/// The memory must stay allocated, in place and unread until the returned value is dropped.
pub(crate) unsafe fn register(
    io: &ClientIo,
    server: u32,
    dest: *mut f32,
    floats: usize,
) -> Option<Registered> {
    let link = io.link(server)?;
    let bytes = floats * 4;
    // SAFETY: forwarded from the caller.
    match unsafe { link.register_region(dest.cast(), bytes) } {
        Ok(reg) => reg,
        Err(e) => {
            // E.g. the memlock limit: the values travel in the frame instead.
            tracing::warn!("cannot register {bytes} bytes for a zero-copy transfer: {e}");
            None
        }
    }
}
