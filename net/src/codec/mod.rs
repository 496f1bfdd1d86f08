//! Bandwidth reducers for the two bulk sections of a frame: [`keys`] compresses sorted key lists
//! (delta + bit packing) and [`values`] compresses f32 values (fp16, bf16, LZ4). Each codec has a
//! `u8` id that travels in the header (`Header::key_codec`, `Header::value_codec`; 0 = raw).
//! Encoders append to a caller's `Vec<u8>`; decoders write into a caller's slice whose length
//! the caller already knows from the header, so a peer can never make a decoder allocate more
//! than the caller allowed. Everything here is pure (no I/O) and never panics on bad input: a
//! malformed section is a [`CodecError`].

mod error;
pub mod keys;
pub mod values;

pub use error::CodecError;
pub use keys::{choose_key_codec, KeyCodec};
pub use values::ValueCodec;
