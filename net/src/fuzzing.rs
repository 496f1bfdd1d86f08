//! The bodies of the fuzz targets that test this crate (`fuzz/fuzz_targets`, see
//! docs/fuzzing.md), and the input decoding every target over a byte stream shares: how an
//! input splits into read sizes and a stream, a source that hands the stream out in those sizes
//! (sometimes would block, as a non-blocking socket does), and the sealing of headers so that
//! inputs get past the header checksum. Public so that the targets and each crate's tests,
//! which replay the committed corpora, run the very same code; not API.

use std::io::{self, Read};
use std::path::Path;

use zerocopy::{FromBytes, IntoBytes};

use crate::auth::{
    auth_frame, message_of, ClientHandshake, ClusterKey, Credentials, Identity, Secret,
    ServerHandshake, ServerStep, HANDSHAKE_LIMITS,
};
use crate::codec::keys::{
    choose_key_codec, decode_keys, decode_keys_into, encode_keys, encoded_len, KeyCodec,
};
use crate::codec::values::{decode_values, encode_values};
use crate::codec::ValueCodec;
use crate::{
    flags, BufferPool, FrameLimits, FrameParts, FrameReader, FrameSink, Header, Metrics, Opcode,
    ReadOutcome, HEADER_LEN,
};

/// Frame limits of fuzzed connections: small, so inputs explore the checks, not memory.
pub fn small_limits() -> FrameLimits {
    FrameLimits {
        max_keys_bytes: 1 << 16,
        max_values_bytes: 1 << 16,
        max_extra_bytes: 1 << 12,
    }
}

/// How many reads a target makes at most (a source may would-block forever).
pub const MAX_READS: usize = 1 << 12;

/// Splits `data` into a mode byte, up to 7 read sizes (the mode's top 3 bits) and the stream.
pub fn split(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&mode, rest) = data.split_first()?;
    let n = usize::from(mode >> 5).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    Some((mode, sizes, stream))
}

/// A source handing out `data` in reads whose lengths cycle through `sizes` (size byte `s`
/// allows `s² + 1` bytes; 0 would block once); with no sizes, everything at once.
pub struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl<'a> Chunked<'a> {
    pub fn new(sizes: &'a [u8], data: &'a [u8]) -> Self {
        Self {
            data,
            sizes,
            turn: 0,
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut limit = usize::MAX;
        if !self.sizes.is_empty() {
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            if size == 0 && !self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            limit = usize::from(size) * usize::from(size) + 1;
        }
        let n = buf.len().min(limit).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Makes every frame of `stream` pass the checks a fuzzer cannot solve by itself: magic,
/// version and header CRC, and the payload CRC where the frame asks for one and its payload is
/// all there. Frames follow one another by their headers' section lengths.
pub fn seal_frames(stream: &mut [u8]) {
    let mut at = 0;
    while stream.len() - at >= HEADER_LEN {
        let Ok(mut header) = Header::read_from_bytes(&stream[at..at + HEADER_LEN]) else {
            return;
        };
        let fresh = Header::new(Opcode::Push);
        header.magic = fresh.magic;
        header.version = fresh.version;
        let start = at + HEADER_LEN;
        let end = start.saturating_add(header.payload_len() as usize);
        if header.flags & flags::PAYLOAD_CRC != 0 && end <= stream.len() {
            header.payload_crc = crc32c::crc32c(&stream[start..end]).into();
        }
        header.seal();
        stream[at..start].copy_from_slice(header.as_bytes());
        if end >= stream.len() {
            return;
        }
        at = end;
    }
}

/// The stream of a target's input (sealed when the mode's bit 0 is set) and its read sizes.
pub fn stream_of(mode: u8, stream: &[u8]) -> Vec<u8> {
    let mut stream = stream.to_vec();
    if mode & 1 != 0 {
        seal_frames(&mut stream);
    }
    stream
}

/// Claims every frame's values (mode bit 1), into a buffer one byte short when bit 2 is set.
struct ClaimingSink {
    claim: bool,
    short: bool,
    buf: Vec<u8>,
}

impl FrameSink for ClaimingSink {
    fn direct_values(&mut self, header: &Header) -> Option<&mut [u8]> {
        if !self.claim {
            return None;
        }
        let len = header.values_len.get() as usize;
        let len = if self.short {
            len.saturating_sub(1)
        } else {
            len
        };
        self.buf.resize(len, 0);
        Some(&mut self.buf)
    }
}

/// Target `frame_reader`: the reader on an arbitrary stream read in arbitrary pieces, with and
/// without a sink that takes values into its own buffer (sometimes of the wrong size). Every
/// frame it returns must be valid and hold exactly its sections.
pub fn frame_reader(data: &[u8]) {
    let Some((mode, sizes, stream)) = split(data) else {
        return;
    };
    let stream = stream_of(mode, stream);
    let limits = small_limits();
    let mut reader = FrameReader::new(limits, BufferPool::new(), Metrics::new());
    let mut sink = ClaimingSink {
        claim: mode & 2 != 0,
        short: mode & 4 != 0,
        buf: Vec::new(),
    };
    let mut src = Chunked::new(sizes, &stream);
    for _ in 0..MAX_READS {
        match reader.read_frame(&mut src, &mut sink) {
            Ok(ReadOutcome::Frame(frame)) => {
                let h = &frame.header;
                assert!(h.validate(&limits).is_ok());
                assert_eq!(frame.keys_bytes().len(), h.keys_len.get() as usize);
                assert_eq!(frame.extra().len(), h.extra_len.get() as usize);
                if frame.values_were_direct() {
                    assert!(frame.values_bytes().is_empty());
                } else {
                    assert_eq!(frame.values_bytes().len(), h.values_len.get() as usize);
                }
            }
            Ok(ReadOutcome::WouldBlock) => {}
            Ok(ReadOutcome::Closed) | Err(_) => return,
        }
    }
}

/// Target `key_codec`: decoding arbitrary bytes is an error or keys that encode back to bytes
/// decoding to the same keys; arbitrary keys round-trip through the codec `choose_key_codec`
/// picks, at the size `encoded_len` promises.
pub fn key_codec(data: &[u8]) {
    const MAX_KEYS: usize = 1 << 14;
    let Some((&id, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(codec) = KeyCodec::from_id(id & 3) {
        if let Ok(keys) = decode_keys(codec, bytes, MAX_KEYS) {
            assert!(keys.len() <= MAX_KEYS);
            let mut into = vec![0u64; keys.len()];
            decode_keys_into(codec, bytes, &mut into).expect("decode_keys accepted it");
            assert_eq!(into, keys);
            let mut out = Vec::new();
            if encode_keys(codec, &keys, &mut out).is_ok() {
                assert_eq!(decode_keys(codec, &out, MAX_KEYS).unwrap(), keys);
            }
        }
    }
    let mut keys: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if id & 4 != 0 {
        keys.sort_unstable();
    }
    let codec = choose_key_codec(&keys);
    let mut out = Vec::new();
    let n = encode_keys(codec, &keys, &mut out).expect("the chosen codec encodes the keys");
    assert_eq!(Some(n), encoded_len(codec, &keys));
    assert_eq!(decode_keys(codec, &out, keys.len()).unwrap(), keys);
}

/// Target `value_codec`: decoding arbitrary bytes into a buffer of arbitrary length is an
/// error or fills it; arbitrary values round-trip exactly through the lossless codecs, and
/// rounding them once more through a 16-bit one changes nothing.
pub fn value_codec(data: &[u8]) {
    let [id, len, bytes @ ..] = data else {
        return;
    };
    let Ok(codec) = ValueCodec::from_id(id & 3) else {
        return;
    };
    let mut out = vec![0.0f32; usize::from(*len) * 16];
    let _ = decode_values(codec, bytes, &mut out);
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let mut encoded = Vec::new();
    encode_values(codec, &values, &mut encoded).expect("values encode");
    assert!(encoded.len() <= codec.max_encoded_len(values.len()));
    let mut back = vec![0.0f32; values.len()];
    decode_values(codec, &encoded, &mut back).expect("encoded values decode");
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    if codec.is_lossless() {
        assert!(back
            .iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    } else {
        let mut again = Vec::new();
        encode_values(codec, &back, &mut again).expect("values encode");
        let mut twice = vec![0.0f32; back.len()];
        decode_values(codec, &again, &mut twice).expect("encoded values decode");
        assert!(back.iter().zip(&twice).all(|(a, b)| same(a, b)));
    }
}

/// Declares the test that replays the committed corpus of each named target through its body:
/// `corpus_replay_test!("control" => control, ...)` in a crate's `fuzzing` tests (the
/// repository root is found from the calling crate's manifest directory).
#[macro_export]
macro_rules! corpus_replay_test {
    ($($name:literal => $target:path),* $(,)?) => {
        #[test]
        fn corpora_replay_cleanly() {
            let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            $(
                assert!(
                    $crate::fuzzing::replay_corpus(root, $name, $target) > 0,
                    "the corpus of {} is empty",
                    $name
                );
            )*
        }
    };
}

/// Runs `target` on every file of `fuzz/corpus/<name>` (the committed corpus, which holds the
/// inputs of every crash found too), for the crates' tests; returns how many it ran (none for a
/// missing directory).
pub fn replay_corpus(repo_root: &Path, name: &str, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(repo_root.join("fuzz/corpus").join(name)) else {
        return 0;
    };
    let mut inputs = 0;
    for entry in entries {
        let path = entry.expect("a readable corpus directory").path();
        target(&std::fs::read(&path).expect("a readable corpus file"));
        inputs += 1;
    }
    inputs
}

/// The credentials of the `handshake` target's two sides (the fuzzer plays the peer and does
/// not hold this secret).
fn handshake_credentials(role: u8, node: u32) -> Credentials {
    Credentials {
        key: ClusterKey::Secret(Secret::new("fuzzing-secret").expect("a non-empty secret")),
        me: Identity { role, node },
    }
}

/// Target `handshake`: what a peer sends before it has authenticated, read under the
/// handshake's frame limits and fed frame by frame to an accepting side's state machine and,
/// as answers, to a dialing side's. Whatever arrives, nothing panics and neither side accepts
/// the peer: proving the secret takes an HMAC-SHA256 no fuzzer forges.
pub fn handshake(data: &[u8]) {
    let Some((mode, sizes, stream)) = split(data) else {
        return;
    };
    let stream = stream_of(mode, stream);
    let server_creds = handshake_credentials(0, Identity::UNASSIGNED);
    let mut server = ServerHandshake::default();
    let (mut client, _hello) = ClientHandshake::start(&handshake_credentials(1, 7));
    let mut reader = FrameReader::new(HANDSHAKE_LIMITS, BufferPool::new(), Metrics::new());
    let mut src = Chunked::new(sizes, &stream);
    for _ in 0..MAX_READS {
        match reader.read_frame(&mut src, &mut crate::NoDirectValues) {
            Ok(ReadOutcome::Frame(frame)) => {
                assert!(frame.header.validate(&HANDSHAKE_LIMITS).is_ok());
                let Ok(msg) = message_of(&frame) else {
                    continue;
                };
                if let Ok(ServerStep::Admit(_, who)) = server.on_message(&server_creds, &msg) {
                    panic!("a peer without the secret was admitted as {who:?}");
                }
                assert!(
                    client.on_challenge(&msg).is_err(),
                    "a server without the secret was believed"
                );
                let _ = client.on_welcome(&msg);
            }
            Ok(ReadOutcome::WouldBlock) => {}
            Ok(ReadOutcome::Closed) | Err(_) => return,
        }
    }
}

/// Seed inputs of the `handshake` target: a hello, a challenge-shaped answer and a refusal, as
/// frames (mode 1: sealed, read whole).
pub fn handshake_seeds() -> Vec<Vec<u8>> {
    let (_, hello) = ClientHandshake::start(&handshake_credentials(1, 7));
    let mut error = FrameParts::with_extra(Header::new(Opcode::Error), b"refused: no");
    error.header.status = (crate::Status::Unauthorized as u16).into();
    error.finish(true);
    let mut refusal = error.header.as_bytes().to_vec();
    refusal.extend_from_slice(b"refused: no");
    refusal.resize(HEADER_LEN + crate::pad8(11), 0);
    let hello_frame = frame_bytes(&auth_frame(&hello));
    let mut twice = hello_frame.clone();
    twice.extend_from_slice(&hello_frame);
    [hello_frame, twice, refusal]
        .into_iter()
        .map(|frame| {
            let mut input = vec![1u8];
            input.extend_from_slice(&frame);
            input
        })
        .collect()
}

/// A finished frame with only an extra section, as it travels.
fn frame_bytes(frame: &FrameParts<'_>) -> Vec<u8> {
    let mut bytes = frame.header.as_bytes().to_vec();
    bytes.extend_from_slice(frame.extra);
    bytes.resize(HEADER_LEN + crate::pad8(frame.extra.len()), 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::corpus_replay_test!(
        "frame_reader" => frame_reader,
        "key_codec" => key_codec,
        "value_codec" => value_codec,
        "handshake" => handshake,
    );

    #[test]
    fn handshake_seeds_reach_the_state_machines() {
        // The seeds are what the committed corpus started from: each must be read as frames
        // and run through both sides without admitting anyone.
        for seed in handshake_seeds() {
            handshake(&seed);
        }
        let seeds = handshake_seeds();
        let (mode, sizes, stream) = split(&seeds[0]).unwrap();
        let stream = stream_of(mode, stream);
        let mut reader = FrameReader::new(HANDSHAKE_LIMITS, BufferPool::new(), Metrics::new());
        let mut src = Chunked::new(sizes, &stream);
        let Ok(ReadOutcome::Frame(frame)) = reader.read_frame(&mut src, &mut crate::NoDirectValues)
        else {
            panic!("the hello seed is a frame");
        };
        assert!(message_of(&frame).is_ok());
    }

    #[test]
    fn sealed_frames_are_read_back() {
        let mut stream = Vec::new();
        for _ in 0..3 {
            let mut h = Header::new(Opcode::Push);
            h.extra_len = 5.into();
            h.flags = flags::PAYLOAD_CRC;
            stream.extend_from_slice(h.as_bytes());
            stream.extend_from_slice(b"hello");
        }
        seal_frames(&mut stream);
        let mut reader = FrameReader::new(small_limits(), BufferPool::new(), Metrics::new());
        let mut src = Chunked::new(&[3, 0, 40], &stream);
        let mut frames = 0;
        for _ in 0..MAX_READS {
            match reader.read_frame(&mut src, &mut crate::NoDirectValues) {
                Ok(ReadOutcome::Frame(f)) => {
                    assert_eq!(f.extra(), b"hello");
                    frames += 1;
                }
                Ok(ReadOutcome::WouldBlock) => {}
                other => {
                    assert!(matches!(other, Ok(ReadOutcome::Closed)), "{other:?}");
                    break;
                }
            }
        }
        assert_eq!(frames, 3);
    }
}
