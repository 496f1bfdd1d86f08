//! Network floors: what raw TCP over loopback achieves on this machine, measured in the same run
//! as a benchmark so its results can be reported as ratios against it.
//!
//! * [`tcp_ping_pong`]: request/response latency between this thread and an echo thread, with
//!   `TCP_NODELAY` on both ends and fixed message sizes (no framing at all), either with
//!   blocking sockets ([`Wait::Block`]: each side sleeps in `recv` until its message arrives)
//!   or with both ends busy-polling non-blocking sockets ([`Wait::Spin`]: no system call that
//!   sleeps, the fastest way the bytes can go back and forth, and so the floor a polling
//!   transport is measured against).
//! * [`tcp_stream`]: one-way bulk transfer throughput, from and into one cache-sized buffer
//!   used again and again (the kindest case), or, [`tcp_stream_whole`], from a buffer holding
//!   every byte into another (where a bulk push's values really come from and go to).
//!
//! [`LatencyStats::from_samples`] and [`percentile`] are the percentile helpers the benchmarks
//! reuse for their own samples.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Number of samples the statistics are computed from.
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencyStats {
    /// Statistics of `samples_us` (microseconds), which is sorted in place.
    ///
    /// Percentiles use the nearest-rank method (see [`percentile`]), so each reported percentile
    /// is one of the measured samples. With no samples every field is 0.
    pub fn from_samples(samples_us: &mut [f64]) -> Self {
        if samples_us.is_empty() {
            return Self::default();
        }
        samples_us.sort_by(f64::total_cmp);
        let sum: f64 = samples_us.iter().sum();
        Self {
            samples: samples_us.len(),
            p50_us: percentile(samples_us, 50.0),
            p99_us: percentile(samples_us, 99.0),
            min_us: samples_us[0],
            max_us: samples_us[samples_us.len() - 1],
            mean_us: sum / samples_us.len() as f64,
        }
    }
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of ascending `sorted` samples: the smallest
/// sample such that at least p% of the samples are less than or equal to it, i.e. the sample at
/// 1-based rank `ceil(p / 100 * n)`. `p` <= 0 gives the minimum. Returns 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let rank = (p / 100.0 * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// One-way transfer throughput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ThroughputStats {
    /// Bytes transferred.
    pub bytes: u64,
    /// Seconds from the first byte sent until the receiver had the last one.
    pub elapsed_s: f64,
    /// Throughput in 10^9 bytes per second.
    pub gb_per_s: f64,
}

impl ThroughputStats {
    /// Statistics of moving `bytes` in `elapsed`.
    pub fn new(bytes: u64, elapsed: Duration) -> Self {
        let elapsed_s = elapsed.as_secs_f64();
        let gb_per_s = if elapsed_s > 0.0 {
            bytes as f64 / elapsed_s / 1e9
        } else {
            0.0
        };
        Self {
            bytes,
            elapsed_s,
            gb_per_s,
        }
    }
}

/// How the two ends of a ping-pong wait for the other's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Blocking sockets: a `recv` that sleeps until data arrives.
    Block,
    /// Non-blocking sockets read in a loop until the message is whole: no sleeping system call.
    Spin,
}

/// Round-trip latency of a `request_bytes` request answered by a `response_bytes` response over
/// loopback TCP, both ends waiting as `wait` says: `warmup` unmeasured round trips, then `iters`
/// measured ones.
pub fn tcp_ping_pong(
    request_bytes: usize,
    response_bytes: usize,
    iters: usize,
    warmup: usize,
    wait: Wait,
) -> io::Result<LatencyStats> {
    if request_bytes == 0 || response_bytes == 0 {
        return Err(invalid_input("ping-pong messages need at least one byte"));
    }
    let (listener, mut client) = loopback_pair()?;
    client.set_nonblocking(wait == Wait::Spin)?;
    let rounds = warmup + iters;
    let echo =
        thread::spawn(move || echo_server(listener, request_bytes, response_bytes, rounds, wait));

    let request = vec![0x5a_u8; request_bytes];
    let mut response = vec![0_u8; response_bytes];
    let mut samples_us = Vec::with_capacity(iters);
    let exchanged = (0..rounds).try_for_each(|round| {
        let start = Instant::now();
        spin_write_all(&mut client, &request)?;
        spin_read_exact(&mut client, &mut response)?;
        if round >= warmup {
            samples_us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        Ok::<_, io::Error>(())
    });
    drop(client);
    let echoed = join_io(echo);
    exchanged?;
    echoed?;
    Ok(LatencyStats::from_samples(&mut samples_us))
}

/// Throughput of sending `bytes` one way over loopback TCP in writes of `chunk` bytes, timed from
/// the first write until the receiver has read everything.
pub fn tcp_stream(bytes: usize, chunk: usize) -> io::Result<ThroughputStats> {
    if chunk == 0 {
        return Err(invalid_input("stream chunk size must be at least one byte"));
    }
    stream(bytes, chunk, false)
}

/// [`tcp_stream`] of `bytes` from one buffer that holds them all into another (written in
/// `chunk`-byte writes, read into the destination's next free bytes): the same bytes as a bulk
/// push or pull reply, from memory into memory, rather than one cached buffer's again and again.
pub fn tcp_stream_whole(bytes: usize, chunk: usize) -> io::Result<ThroughputStats> {
    if chunk == 0 {
        return Err(invalid_input("stream chunk size must be at least one byte"));
    }
    stream(bytes, chunk, true)
}

fn stream(bytes: usize, chunk: usize, whole: bool) -> io::Result<ThroughputStats> {
    let (listener, mut sender) = loopback_pair()?;
    let receiver = thread::spawn(move || receive_all(listener, bytes, chunk, whole));

    let source = if whole { bytes } else { chunk.min(bytes) };
    let buffer = vec![0xa5_u8; source.max(1)];
    let start = Instant::now();
    let sent = if whole {
        buffer.chunks(chunk).try_for_each(|c| sender.write_all(c))
    } else {
        send_all(&mut sender, &buffer, bytes)
    };
    drop(sender);
    let finished = join_io(receiver);
    sent?;
    let finished = finished?;
    Ok(ThroughputStats::new(
        bytes as u64,
        finished.saturating_duration_since(start),
    ))
}

/// A listener on an ephemeral loopback port and a client already connected to it.
fn loopback_pair() -> io::Result<(TcpListener, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    client.set_nodelay(true)?;
    Ok((listener, client))
}

fn accept_one(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Answers `rounds` requests of `request_bytes` with `response_bytes` each.
fn echo_server(
    listener: TcpListener,
    request_bytes: usize,
    response_bytes: usize,
    rounds: usize,
    wait: Wait,
) -> io::Result<()> {
    let mut stream = accept_one(&listener)?;
    stream.set_nonblocking(wait == Wait::Spin)?;
    let mut request = vec![0_u8; request_bytes];
    let response = vec![0xa5_u8; response_bytes];
    for _ in 0..rounds {
        spin_read_exact(&mut stream, &mut request)?;
        spin_write_all(&mut stream, &response)?;
    }
    Ok(())
}

/// `read_exact` that, on a non-blocking socket, retries at once instead of sleeping (on a
/// blocking one it is `read_exact`).
fn spin_read_exact(stream: &mut TcpStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `write_all` that, on a non-blocking socket, retries at once while the socket is full.
fn spin_write_all(stream: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `bytes` bytes (into one buffer for all of them when `whole`, else into one chunk's
/// again and again) and returns the instant the last one arrived.
fn receive_all(
    listener: TcpListener,
    bytes: usize,
    chunk: usize,
    whole: bool,
) -> io::Result<Instant> {
    let mut stream = accept_one(&listener)?;
    let mut buffer = vec![
        0_u8;
        if whole {
            bytes.max(1)
        } else {
            chunk.clamp(1, 1 << 20)
        }
    ];
    // Touched before the clock starts, as a pushed table's or a pull's destination would be.
    buffer.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let mut remaining = bytes;
    while remaining > 0 {
        let at = if whole { bytes - remaining } else { 0 };
        let want = remaining.min(buffer.len() - at);
        let got = stream.read(&mut buffer[at..at + want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        remaining -= got;
    }
    Ok(Instant::now())
}

fn send_all(stream: &mut TcpStream, buffer: &[u8], bytes: usize) -> io::Result<()> {
    let mut remaining = bytes;
    while remaining > 0 {
        let n = remaining.min(buffer.len());
        stream.write_all(&buffer[..n])?;
        remaining -= n;
    }
    Ok(())
}

fn join_io<T>(handle: thread::JoinHandle<io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("floor measurement thread panicked")))
}

fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 5.0);
        assert_eq!(percentile(&sorted, 51.0), 6.0);
        assert_eq!(percentile(&sorted, 90.0), 9.0);
        assert_eq!(percentile(&sorted, 99.0), 10.0);
        assert_eq!(percentile(&sorted, 100.0), 10.0);
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn p99_of_a_hundred_samples_is_the_99th() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 50.0), 50.0);
    }

    #[test]
    fn stats_from_unsorted_samples() {
        let mut samples = vec![4.0, 1.0, 3.0, 2.0];
        let stats = LatencyStats::from_samples(&mut samples);
        assert_eq!(samples, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(stats.samples, 4);
        assert_eq!(stats.min_us, 1.0);
        assert_eq!(stats.max_us, 4.0);
        assert_eq!(stats.p50_us, 2.0);
        assert_eq!(stats.p99_us, 4.0);
        assert_eq!(stats.mean_us, 2.5);
    }

    #[test]
    fn stats_of_no_samples_are_zero() {
        assert_eq!(LatencyStats::from_samples(&mut []), LatencyStats::default());
    }

    #[test]
    fn ping_pong_floor_is_sane() {
        for wait in [Wait::Block, Wait::Spin] {
            let stats = tcp_ping_pong(64, 4096, 200, 20, wait).unwrap();
            assert_eq!(stats.samples, 200);
            assert!(stats.min_us > 0.0);
            assert!(stats.min_us <= stats.p50_us && stats.p50_us <= stats.p99_us);
            assert!(stats.p99_us <= stats.max_us);
            assert!(
                stats.p50_us < 100_000.0,
                "{wait:?} loopback round trip {stats:?}"
            );
        }
    }

    #[test]
    fn stream_floor_is_sane() {
        let bytes = 64 << 20;
        let stats = tcp_stream(bytes, 1 << 20).unwrap();
        assert_eq!(stats.bytes, bytes as u64);
        assert!(stats.elapsed_s > 0.0);
        assert!(stats.gb_per_s > 0.01, "loopback throughput {stats:?}");
    }

    #[test]
    fn odd_sizes_transfer_exactly() {
        let stats = tcp_stream(1_000_003, 4096).unwrap();
        assert_eq!(stats.bytes, 1_000_003);
        let stats = tcp_stream_whole(1_000_003, 4096).unwrap();
        assert_eq!(stats.bytes, 1_000_003);
        assert!(tcp_stream_whole(10, 0).is_err());
        assert!(tcp_stream(10, 0).is_err());
        assert!(tcp_ping_pong(0, 1, 1, 0, Wait::Spin).is_err());
    }

    #[test]
    fn stats_serialize_to_json() {
        let json =
            serde_json::to_string(&ThroughputStats::new(1000, Duration::from_secs(1))).unwrap();
        assert!(json.contains("\"gb_per_s\""), "{json}");
    }
}
