//! Incremental frame decoding from a (usually non-blocking) byte stream.
//!
//! Small frames are read through a 64 KiB staging buffer so that one `read` can bring in many
//! of them; large sections are read straight into their destination, which is a pooled buffer
//! or, for the values of a frame the [`FrameSink`] claims, the caller's own memory.

use std::io::{self, Read};

use zerocopy::FromBytes;

use crate::wire::{flags, pad8};
use crate::{BufferPool, Frame, FrameLimits, Header, Metrics, NetError, PooledBuf, WireError};

const STAGING: usize = 64 * 1024;
/// Payload buffers up to this size are allocated whole when the header arrives; larger ones
/// grow (doubling) as their bytes arrive, charged to the pool's budget, so a header announcing
/// gigabytes reserves nothing until the gigabytes come.
const EAGER_PAYLOAD: usize = 1 << 20;
/// Regions at least this large are read straight into their destination.
const DIRECT_READ_MIN: usize = 16 * 1024;

/// Decides where the values of an incoming frame go.
pub trait FrameSink {
    /// Called (possibly several times for one frame) while the values section of `header` is
    /// being read. Returning a slice of exactly `values_len` bytes makes the reader put the values
    /// there instead of in the frame's pooled payload; returning `None` keeps them in the payload.
    /// A sink must answer the same way for the whole of one frame.
    fn direct_values(&mut self, header: &Header) -> Option<&mut [u8]>;
}

/// A sink that never claims values.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDirectValues;

impl FrameSink for NoDirectValues {
    fn direct_values(&mut self, _header: &Header) -> Option<&mut [u8]> {
        None
    }
}

/// What one call of [`FrameReader::read_frame`] produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A whole, validated frame.
    Frame(Frame),
    /// The source has no more bytes for now.
    WouldBlock,
    /// The peer closed the connection between frames.
    Closed,
}

#[derive(Debug)]
enum Stage {
    Header,
    Payload(Box<PayloadState>),
}

#[derive(Debug)]
struct PayloadState {
    header: Header,
    buf: PooledBuf,
    /// Bytes of the payload (in wire order) received so far.
    pos: usize,
    direct: bool,
    crc: u32,
}

/// Where the next payload bytes go.
enum Target {
    Pooled(usize, usize),
    Direct(usize, usize),
    Discard(usize),
}

/// Decodes frames from one connection.
#[derive(Debug)]
pub struct FrameReader {
    limits: FrameLimits,
    pool: BufferPool,
    metrics: Metrics,
    staging: Box<[u8]>,
    start: usize,
    end: usize,
    stage: Stage,
}

impl FrameReader {
    /// A reader that takes payload buffers from `pool` and rejects frames over `limits`.
    pub fn new(limits: FrameLimits, pool: BufferPool, metrics: Metrics) -> FrameReader {
        FrameReader {
            limits,
            pool,
            metrics,
            staging: vec![0u8; STAGING].into_boxed_slice(),
            start: 0,
            end: 0,
            stage: Stage::Header,
        }
    }

    /// Sets the limits frames read from now on are checked against; returns the old ones.
    pub fn replace_limits(&mut self, limits: FrameLimits) -> FrameLimits {
        std::mem::replace(&mut self.limits, limits)
    }

    /// Whether a frame is partly read.
    pub fn in_frame(&self) -> bool {
        matches!(self.stage, Stage::Payload(_)) || self.end > self.start
    }

    /// Reads until one whole frame is available, the source would block, or it is closed.
    /// A wire-format error leaves the reader unusable: the connection must be closed.
    pub fn read_frame(
        &mut self,
        src: &mut impl Read,
        sink: &mut impl FrameSink,
    ) -> Result<ReadOutcome, NetError> {
        loop {
            match &mut self.stage {
                Stage::Header => {
                    if self.end - self.start >= crate::HEADER_LEN {
                        self.begin_payload(sink)?;
                        continue;
                    }
                    if self.end == self.staging.len() || self.start > 0 {
                        self.staging.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    match read_some(src, &mut self.staging[self.end..])? {
                        Some(0) if self.end > self.start => {
                            let missing = (crate::HEADER_LEN - (self.end - self.start)) as u64;
                            return Err(WireError::Truncated { missing }.into());
                        }
                        Some(0) => return Ok(ReadOutcome::Closed),
                        Some(n) => self.end += n,
                        None => return Ok(ReadOutcome::WouldBlock),
                    }
                }
                Stage::Payload(state) => {
                    let total = state.header.payload_len() as usize;
                    if state.pos == total {
                        return self.finish_payload().map(ReadOutcome::Frame);
                    }
                    if !self.fill_payload(src, sink)? {
                        return Ok(ReadOutcome::WouldBlock);
                    }
                }
            }
        }
    }

    fn begin_payload(&mut self, sink: &mut impl FrameSink) -> Result<(), NetError> {
        let bytes = &self.staging[self.start..self.start + crate::HEADER_LEN];
        let header = Header::read_from_bytes(bytes).map_err(|_| {
            WireError::Malformed("header of the wrong size".into()) // cannot happen: exact length
        })?;
        if let Err(e) = header.validate(&self.limits) {
            self.metrics.frame_rejected();
            return Err(e.into());
        }
        self.start += crate::HEADER_LEN;
        let values_len = header.values_len.get() as usize;
        let direct = values_len > 0
            && match sink.direct_values(&header) {
                Some(dest) if dest.len() == values_len => true,
                Some(dest) => {
                    return Err(WireError::DestinationSize {
                        dest: dest.len(),
                        frame: values_len,
                    }
                    .into())
                }
                None => false,
            };
        let pooled_len = if direct {
            pad8(header.keys_len.get() as usize) + header.extra_len.get() as usize
        } else {
            header.payload_len() as usize
        };
        let buf = self
            .pool
            .try_take(pooled_len.min(EAGER_PAYLOAD), pooled_len)?;
        self.stage = Stage::Payload(Box::new(PayloadState {
            header,
            buf,
            pos: 0,
            direct,
            crc: 0,
        }));
        Ok(())
    }

    /// Moves payload bytes from staging or the source into their destination. Returns false when
    /// the source would block.
    fn fill_payload(
        &mut self,
        src: &mut impl Read,
        sink: &mut impl FrameSink,
    ) -> Result<bool, NetError> {
        let Stage::Payload(state) = &mut self.stage else {
            return Ok(true);
        };
        let total = state.header.payload_len() as usize;
        let target = next_target(state);
        let staged = self.end - self.start;
        let mut scratch = [0u8; 8];
        let (dest, copies_values): (&mut [u8], bool) = match target {
            Target::Pooled(at, len) => {
                let len = grow_for(&mut state.buf, at, len)?;
                let in_values = !state.direct
                    && at >= state.header.values_offset()
                    && at < state.header.extra_offset();
                (&mut state.buf.as_bytes_mut()[at..at + len], in_values)
            }
            Target::Direct(at, len) => match sink.direct_values(&state.header) {
                Some(d) if d.len() == state.header.values_len.get() as usize => {
                    (&mut d[at..at + len], true)
                }
                _ => {
                    return Err(WireError::Malformed(
                        "direct values destination withdrawn mid-frame".into(),
                    )
                    .into())
                }
            },
            Target::Discard(len) => (&mut scratch[..len], false),
        };
        let n = if staged > 0 {
            let n = staged.min(dest.len());
            dest[..n].copy_from_slice(&self.staging[self.start..self.start + n]);
            self.start += n;
            if copies_values {
                self.metrics.values_copied(n);
            }
            n
        } else if dest.len() >= DIRECT_READ_MIN {
            match read_some(src, dest)? {
                Some(0) => {
                    let missing = (total - state.pos) as u64;
                    return Err(WireError::Truncated { missing }.into());
                }
                Some(n) => n,
                None => return Ok(false),
            }
        } else {
            self.start = 0;
            self.end = 0;
            match read_some(src, &mut self.staging)? {
                Some(0) => {
                    let missing = (total - state.pos) as u64;
                    return Err(WireError::Truncated { missing }.into());
                }
                Some(n) => {
                    self.end = n;
                    return Ok(true);
                }
                None => return Ok(false),
            }
        };
        if state.header.flags & flags::PAYLOAD_CRC != 0 {
            state.crc = crc32c::crc32c_append(state.crc, &dest[..n]);
        }
        state.pos += n;
        Ok(true)
    }

    fn finish_payload(&mut self) -> Result<Frame, NetError> {
        let Stage::Payload(state) = std::mem::replace(&mut self.stage, Stage::Header) else {
            return Err(WireError::Malformed("no frame in progress".into()).into());
        };
        let PayloadState {
            header,
            buf,
            direct,
            crc,
            ..
        } = *state;
        if header.flags & flags::PAYLOAD_CRC != 0 && crc != header.payload_crc.get() {
            self.metrics.frame_rejected();
            return Err(WireError::PayloadChecksum {
                expected: header.payload_crc.get(),
                computed: crc,
            }
            .into());
        }
        self.metrics.frame_received(&header);
        Ok(Frame::new(header, buf, direct))
    }
}

/// Grows `buf` when byte `at` lies past its visible end (doubling, up to `at + len`); returns
/// how many of the `len` bytes from `at` fit now.
fn grow_for(buf: &mut PooledBuf, at: usize, len: usize) -> Result<usize, NetError> {
    if at >= buf.len() {
        let want = (buf.len() * 2).max(at + 1).min(at + len);
        buf.try_grow(want, EAGER_PAYLOAD)?;
    }
    Ok(len.min(buf.len() - at))
}

/// The destination of the payload byte at `state.pos` and how many bytes may go there.
fn next_target(state: &PayloadState) -> Target {
    let h = &state.header;
    let pos = state.pos;
    let values_at = h.values_offset();
    let values_end = values_at + h.values_len.get() as usize;
    let extra_at = h.extra_offset();
    let total = h.payload_len() as usize;
    if !state.direct {
        return Target::Pooled(pos, total - pos);
    }
    if pos < values_at {
        Target::Pooled(pos, values_at - pos)
    } else if pos < values_end {
        Target::Direct(pos - values_at, values_end - pos)
    } else if pos < extra_at {
        Target::Discard(extra_at - pos)
    } else {
        let shift = extra_at - values_at;
        Target::Pooled(pos - shift, total - pos)
    }
}

/// One read; `None` when it would block. Interrupted reads are retried.
fn read_some(src: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
