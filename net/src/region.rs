//! Transport-neutral names for memory a peer may reach directly.
//!
//! A [`Registration`] is a slice of local memory made reachable by one link's transport (today:
//! an RDMA memory region); [`RemoteRegion`] is how a request names such memory to the peer, in
//! 16 bytes of the frame. Callers only register, name and drop: whether a transport can use the
//! memory at all is the link's business ([`crate::Link::register_region`] answers `None` where
//! it cannot, e.g. on TCP), so no caller needs to know which transport it talks to.

/// Memory of the peer, as named in a request: the values of the reply may be written straight
/// to `addr..addr + len`, with the access key `rkey` the peer's transport handed out.
///
/// On the wire: 16 bytes, little-endian `addr` (8), `rkey` (4), `len` (4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteRegion {
    pub addr: u64,
    pub rkey: u32,
    pub len: u32,
}

impl RemoteRegion {
    /// Encoded size ([`RemoteRegion::to_bytes`]).
    pub const ENCODED_LEN: usize = 16;

    /// Little-endian encoding, for carrying it in a frame (e.g. a pull's extra section).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..12].copy_from_slice(&self.rkey.to_le_bytes());
        out[12..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Decodes [`RemoteRegion::to_bytes`]; `None` if `b` is too short.
    pub fn from_bytes(b: &[u8]) -> Option<RemoteRegion> {
        let b: &[u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(RemoteRegion {
            addr: u64::from_le_bytes(b[..8].try_into().ok()?),
            rkey: u32::from_le_bytes(b[8..12].try_into().ok()?),
            len: u32::from_le_bytes(b[12..].try_into().ok()?),
        })
    }
}

/// Local memory registered with one link's transport; the registration ends when this is
/// dropped. Made by [`crate::Link::register_region`].
#[derive(Debug)]
pub struct Registration {
    #[cfg(feature = "rdma")]
    pub(crate) rdma: crate::rdma::Registration<'static>,
    /// Without a transport that registers memory, no registration can exist.
    #[cfg(not(feature = "rdma"))]
    pub(crate) never: std::convert::Infallible,
}

impl Registration {
    /// The name of this memory to put in a request.
    pub fn remote(&self) -> RemoteRegion {
        #[cfg(feature = "rdma")]
        {
            self.rdma.remote()
        }
        #[cfg(not(feature = "rdma"))]
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_region_is_16_little_endian_bytes_and_round_trips() {
        let r = RemoteRegion {
            addr: 0x0102_0304_0506_0708,
            rkey: 0x0a0b_0c0d,
            len: 4096,
        };
        let b = r.to_bytes();
        assert_eq!(b.len(), RemoteRegion::ENCODED_LEN);
        assert_eq!(&b[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[8..12], &0x0a0b_0c0du32.to_le_bytes());
        assert_eq!(&b[12..], &4096u32.to_le_bytes());
        assert_eq!(RemoteRegion::from_bytes(&b), Some(r));
        assert_eq!(RemoteRegion::from_bytes(&b[..15]), None);
    }
}
