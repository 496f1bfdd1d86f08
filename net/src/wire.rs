//! The frame header and the layout of a frame.
//!
//! ```text
//! | header (80 B) | keys (keys_len, padded to 8) | values (values_len, padded to 8) | extra |
//! ```
//! All integers are little-endian. `header_crc` is the CRC-32C of the header with that field set
//! to zero; `payload_crc` covers every payload byte (padding included) when the
//! [`flags::PAYLOAD_CRC`] flag is set.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{FrameLimits, PooledBuf, WireError};

/// The first four bytes of every frame: "FRPS".
pub const MAGIC: u32 = u32::from_le_bytes(*b"FRPS");
/// The protocol version this build speaks.
/// (2: connections open with the authentication handshake, [`Opcode::Auth`].)
pub const PROTOCOL_VERSION: u16 = 2;
/// Size of [`Header`] on the wire.
pub const HEADER_LEN: usize = 80;

/// Bits of [`Header::flags`].
pub mod flags {
    /// `payload_crc` is set and must be checked.
    pub const PAYLOAD_CRC: u8 = 1;
    /// The keys section is absent and `key_signature` names a list the receiver has cached.
    pub const KEYS_BY_SIGNATURE: u8 = 2;
    /// Only some keys carry values: the extra section is a bitmap of `key_count` bits (bit i of
    /// byte i/8 for key i) and the values section holds the values of the set bits, in order.
    pub const VALUES_MASKED: u8 = 4;
    /// A pull that wants only the rows changed since this worker's last such pull; the extra
    /// section is the threshold θ (f32, little-endian). The reply is `VALUES_MASKED`.
    pub const PULL_CHANGED: u8 = 8;
    /// A pull over RDMA whose extra section is a 16-byte `RemoteBuf` naming memory the worker
    /// registered for it: the server RDMA-writes the reply's values there and sends the reply
    /// frame without them (the zero-copy pull).
    pub const VALUES_TO_REMOTE: u8 = 16;
    /// A push a server forwards down a key range's replication chain: `sender` and `seq` are
    /// the worker's (so that every replica drops the same resends), the keys are raw. Servers
    /// take it only from the server before them in that range's chain, never from a worker.
    pub const FORWARDED: u8 = 32;
    /// With `FORWARDED`: a batch a head replicates after aggregating it. The values are the
    /// resulting rows of its keys (values, then each rule state array, as the store exports
    /// them), and the extra section is the rule's step count (u32) followed by the batch's
    /// pushes as (worker node u32, sequence u64, open span u32), little-endian.
    pub const AGGREGATED: u8 = 64;
}

/// Declares a `#[repr($repr)]` wire enum with its values, and `decode`, which maps a value back
/// to its variant (`None` for a value that names none), so that each value is written once.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ty {
            $($(#[$vmeta:meta])* $variant:ident = $value:expr,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// The variant whose value is `v`, if any.
            fn decode(v: $repr) -> Option<$name> {
                $(if v == $name::$variant as $repr {
                    return Some($name::$variant);
                })*
                None
            }
        }
    };
}

wire_enum! {
    /// What a frame asks for or answers.
    pub enum Opcode: u8 {
        /// Values for keys, to be applied with the table's update rule.
        Push = 1,
        /// Acknowledges a push (no payload, or an error status).
        PushAck = 2,
        /// Asks for the values of keys.
        Pull = 3,
        /// Answers a pull with values in key order.
        PullReply = 4,
        /// A worker finished a clock (`clock` = number of clocks it has completed).
        Clock = 5,
        /// A control message of the engine, encoded in the extra section.
        Control = 6,
        /// A rejected request or frame; `status` says why and extra carries a UTF-8 message.
        Error = 7,
        /// A step of the authentication handshake (`crate::auth`), the only frames a
        /// connection carries before it is authenticated.
        Auth = 8,
        /// A piece of a key range's state sent by one server to another that is taking a copy
        /// of the range (the engine's range copy: keys, then their values and rule state;
        /// extra says which range and table).
        Copy = 9,
    }
}

impl Opcode {
    /// Decodes an opcode byte.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Opcode::decode(v)
    }
}

wire_enum! {
    /// Why a request failed, carried in [`Header::status`] of replies.
    pub enum Status: u16 {
        Ok = 0,
        /// The frame broke the wire format; the connection is closed after this reply.
        BadFrame = 1,
        /// The table id is not declared on this server.
        UnknownTable = 2,
        /// The keys are not sorted and unique, or not a whole number of u64.
        BadKeys = 3,
        /// The values section does not match keys × dim (× inputs of the rule).
        BadValues = 4,
        /// This server does not own (all of) the keys at the sender's routing version.
        NotOwner = 5,
        /// A key of the pull has never been pushed and the table has no default.
        UnknownKey = 6,
        /// The request is not valid in the current state (e.g. before registration).
        BadRequest = 7,
        /// The server is shutting down.
        ShuttingDown = 8,
        /// The request named its keys by a signature the server does not hold.
        KeysUnknown = 9,
        /// The server cannot hold more parameters (table capacity or memory exhausted).
        OutOfMemory = 10,
        /// The peer failed authentication, or sent a frame its identity may not send.
        Unauthorized = 11,
        /// The node is at a limit (connections); try again later.
        Busy = 12,
        /// A server of the range's replication chain cannot be reached.
        Unavailable = 13,
        /// A status this build does not know.
        Unknown = u16::MAX,
    }
}

impl Status {
    /// Decodes a status code; unknown values map to [`Status::Unknown`].
    pub fn from_u16(v: u16) -> Status {
        Status::decode(v).unwrap_or(Status::Unknown)
    }
}

/// The fixed frame header.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub magic: U32,
    pub version: U16,
    pub opcode: u8,
    pub flags: u8,
    /// Table id the request is about (0 for control frames).
    pub table: U32,
    /// Node id of the sender, as assigned by the scheduler.
    pub sender: U32,
    /// Chosen by the requester; echoed in the reply.
    pub request_id: U64,
    /// Per-worker push sequence number (exactly-once across retries).
    pub seq: U64,
    /// The sender's clock (pushes, pulls) or completed clocks (Clock frames).
    pub clock: U32,
    /// Routing table version the request was routed with.
    pub routing_version: U32,
    /// Number of keys in the request.
    pub key_count: U32,
    pub keys_len: U32,
    pub values_len: U32,
    pub extra_len: U32,
    /// Codec of the keys section (0 = raw u64).
    pub key_codec: u8,
    /// Codec of the values section (0 = raw f32).
    pub value_codec: u8,
    /// [`Status`] of a reply.
    pub status: U16,
    pub payload_crc: U32,
    /// Signature of the key list ([`crate::key_signature`]), 0 if not computed.
    pub key_signature: U64,
    pub header_crc: U32,
    /// With a push's `seq`: how far back the sender's oldest unfinished push is, counting this
    /// one (`seq` − oldest + 1). Every push of the sender numbered lower is finished and never
    /// sent again, so servers forget them (exactly once with bounded memory). 0: not stated.
    pub open_span: U32,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);

/// Rounds `n` up to a multiple of 8.
pub const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

impl Header {
    /// A header with magic, version and opcode set and everything else zero.
    pub fn new(opcode: Opcode) -> Header {
        Header {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION.into(),
            opcode: opcode as u8,
            ..Header::default()
        }
    }

    /// The opcode, if known.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }

    /// The status of a reply.
    pub fn status(&self) -> Status {
        Status::from_u16(self.status.get())
    }

    /// Bytes of payload that follow the header (sections with their padding).
    pub fn payload_len(&self) -> u64 {
        pad8(self.keys_len.get() as usize) as u64
            + pad8(self.values_len.get() as usize) as u64
            + self.extra_len.get() as u64
    }

    /// Offset of the values section within the payload.
    pub fn values_offset(&self) -> usize {
        pad8(self.keys_len.get() as usize)
    }

    /// Offset of the extra section within the payload.
    pub fn extra_offset(&self) -> usize {
        self.values_offset() + pad8(self.values_len.get() as usize)
    }

    /// CRC-32C of the header with `header_crc` taken as zero.
    pub fn compute_header_crc(&self) -> u32 {
        let mut copy = *self;
        copy.header_crc = 0.into();
        crc32c::crc32c(copy.as_bytes())
    }

    /// Stamps `header_crc`. Call after every other field is final.
    pub fn seal(&mut self) {
        self.header_crc = self.compute_header_crc().into();
    }

    /// Checks everything that can be checked before the payload is read: magic, version,
    /// checksum, opcode and section lengths against `limits`.
    pub fn validate(&self, limits: &FrameLimits) -> Result<Opcode, WireError> {
        if self.magic.get() != MAGIC {
            return Err(WireError::BadMagic {
                found: self.magic.get(),
                expected: MAGIC,
            });
        }
        if self.version.get() != PROTOCOL_VERSION {
            return Err(WireError::BadVersion {
                found: self.version.get(),
                supported: PROTOCOL_VERSION,
            });
        }
        let computed = self.compute_header_crc();
        if computed != self.header_crc.get() {
            return Err(WireError::HeaderChecksum {
                expected: self.header_crc.get(),
                computed,
            });
        }
        let opcode = self.opcode().ok_or(WireError::UnknownOpcode(self.opcode))?;
        check_limit("keys", self.keys_len.get(), limits.max_keys_bytes)?;
        check_limit("values", self.values_len.get(), limits.max_values_bytes)?;
        check_limit("extra", self.extra_len.get(), limits.max_extra_bytes)?;
        Ok(opcode)
    }
}

fn check_limit(section: &'static str, len: u32, limit: u64) -> Result<(), WireError> {
    if u64::from(len) > limit {
        return Err(WireError::TooLarge {
            section,
            len: len.into(),
            limit,
        });
    }
    Ok(())
}

/// A received frame: its header and its payload in one pooled buffer. When the values were read
/// directly into a caller's buffer (see [`crate::FrameSink`]), `values()` is empty.
#[derive(Debug)]
pub struct Frame {
    pub header: Header,
    pub payload: PooledBuf,
    values_direct: bool,
}

impl Frame {
    pub(crate) fn new(header: Header, payload: PooledBuf, values_direct: bool) -> Frame {
        Frame {
            header,
            payload,
            values_direct,
        }
    }

    /// The opcode (validated when the frame was read).
    pub fn opcode(&self) -> Opcode {
        self.header.opcode().unwrap_or(Opcode::Error)
    }

    /// Raw bytes of the keys section.
    pub fn keys_bytes(&self) -> &[u8] {
        &self.payload.as_bytes()[..self.header.keys_len.get() as usize]
    }

    /// The keys section as u64 keys, or an error if its length is not a whole number of keys.
    pub fn keys(&self) -> Result<&[u64], WireError> {
        let bytes = self.keys_bytes();
        <[u64]>::ref_from_bytes(bytes)
            .map_err(|_| WireError::Malformed(format!("keys section of {} bytes", bytes.len())))
    }

    /// Raw bytes of the values section (empty if they went to a direct destination).
    pub fn values_bytes(&self) -> &[u8] {
        if self.values_direct {
            return &[];
        }
        let start = self.header.values_offset();
        &self.payload.as_bytes()[start..start + self.header.values_len.get() as usize]
    }

    /// The values section as f32, or an error if its length is not a whole number of f32.
    pub fn values_f32(&self) -> Result<&[f32], WireError> {
        let bytes = self.values_bytes();
        <[f32]>::ref_from_bytes(bytes)
            .map_err(|_| WireError::Malformed(format!("values section of {} bytes", bytes.len())))
    }

    /// Whether the values were delivered to a caller-provided buffer.
    pub fn values_were_direct(&self) -> bool {
        self.values_direct
    }

    /// The extra section.
    pub fn extra(&self) -> &[u8] {
        if self.values_direct {
            let start = self.header.values_offset();
            return &self.payload.as_bytes()[start..start + self.header.extra_len.get() as usize];
        }
        let start = self.header.extra_offset();
        &self.payload.as_bytes()[start..start + self.header.extra_len.get() as usize]
    }
}

/// An outgoing frame described by borrowed slices: nothing is copied to send it. Values may be
/// several slices (runs of a segment) that are written back to back.
#[derive(Debug)]
pub struct FrameParts<'a> {
    pub header: Header,
    pub keys: &'a [u8],
    pub values: &'a [&'a [u8]],
    pub extra: &'a [u8],
}

impl<'a> FrameParts<'a> {
    /// A frame with only a header.
    pub fn header_only(header: Header) -> FrameParts<'static> {
        FrameParts {
            header,
            keys: &[],
            values: &[],
            extra: &[],
        }
    }

    /// A frame with a header and an extra section only (control messages, errors).
    pub fn with_extra(header: Header, extra: &'a [u8]) -> FrameParts<'a> {
        FrameParts {
            header,
            keys: &[],
            values: &[],
            extra,
        }
    }

    /// Fills the length fields, the payload checksum (if `payload_crc`) and the header checksum.
    pub fn finish(&mut self, payload_crc: bool) {
        let values_len: usize = self.values.iter().map(|v| v.len()).sum();
        let h = &mut self.header;
        h.magic = MAGIC.into();
        h.version = PROTOCOL_VERSION.into();
        h.keys_len = (self.keys.len() as u32).into();
        h.values_len = (values_len as u32).into();
        h.extra_len = (self.extra.len() as u32).into();
        if payload_crc {
            let mut crc = crc32c::crc32c_append(0, self.keys);
            crc = crc32c::crc32c_append(crc, &ZEROS[..pad8(self.keys.len()) - self.keys.len()]);
            for v in self.values {
                crc = crc32c::crc32c_append(crc, v);
            }
            crc = crc32c::crc32c_append(crc, &ZEROS[..pad8(values_len) - values_len]);
            crc = crc32c::crc32c_append(crc, self.extra);
            h.payload_crc = crc.into();
            h.flags |= flags::PAYLOAD_CRC;
        } else {
            h.payload_crc = 0.into();
            h.flags &= !flags::PAYLOAD_CRC;
        }
        h.seal();
    }

    /// Total bytes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.header.payload_len() as usize
    }
}

/// Zero bytes used as section padding.
pub(crate) static ZEROS: [u8; 8] = [0; 8];

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(op: Opcode) -> Header {
        let mut parts = FrameParts::header_only(Header::new(op));
        parts.finish(true);
        parts.header
    }

    #[test]
    fn a_sealed_header_validates() {
        let h = sealed(Opcode::Push);
        assert_eq!(h.validate(&FrameLimits::default()), Ok(Opcode::Push));
    }

    #[test]
    fn each_corruption_is_named() {
        let limits = FrameLimits::default();
        let mut h = sealed(Opcode::Pull);
        h.magic = 7.into();
        assert!(matches!(
            h.validate(&limits),
            Err(WireError::BadMagic { .. })
        ));

        let mut h = sealed(Opcode::Pull);
        h.version = 9.into();
        assert!(matches!(
            h.validate(&limits),
            Err(WireError::BadVersion { found: 9, .. })
        ));

        let mut h = sealed(Opcode::Pull);
        h.clock = 3.into();
        assert!(matches!(
            h.validate(&limits),
            Err(WireError::HeaderChecksum { .. })
        ));

        let mut h = sealed(Opcode::Pull);
        h.opcode = 99;
        h.seal();
        assert_eq!(h.validate(&limits), Err(WireError::UnknownOpcode(99)));

        let mut h = sealed(Opcode::Pull);
        h.values_len = u32::MAX.into();
        h.seal();
        let small = FrameLimits {
            max_values_bytes: 1024,
            ..limits
        };
        assert!(matches!(
            h.validate(&small),
            Err(WireError::TooLarge {
                section: "values",
                ..
            })
        ));
    }

    #[test]
    fn sections_are_padded_to_eight_bytes() {
        let mut h = Header::new(Opcode::Push);
        h.keys_len = 12.into();
        h.values_len = 4.into();
        h.extra_len = 3.into();
        assert_eq!(h.values_offset(), 16);
        assert_eq!(h.extra_offset(), 24);
        assert_eq!(h.payload_len(), 27);
    }
}
