//! The floors of a push/pull run over shared memory (`--transport shm --floor`): raw
//! ping-pongs of the push's and the pull's bytes through the same rings between two
//! busy-polling threads (no framing, checksums or wakeups: `ferrops_net::shm::floor`), and a
//! memcpy of the values (what any transport through memory must do at least once).

use anyhow::Result;
use serde::Serialize;

use super::floor::LatencyStats;

/// Shared-memory floors and our p50s over them.
#[derive(Debug, Serialize)]
pub struct ShmFloor {
    /// Ring capacity the ping-pongs used (the connections' default).
    pub ring_bytes: usize,
    /// Raw ring round trips: the push request's bytes there and a header back, and the pull
    /// request's bytes there and the reply's back.
    pub push_round_trip: LatencyStats,
    pub pull_round_trip: LatencyStats,
    /// One copy of the values from one buffer into another (`copy_from_slice`).
    pub memcpy: LatencyStats,
    pub push_p50_ratio: f64,
    pub pull_p50_ratio: f64,
    /// Our p50s over the memcpy's p50 (bulk runs are bound by it).
    pub push_memcpy_ratio: f64,
    pub pull_memcpy_ratio: f64,
}

/// Measures the floors for requests of the given sizes and `value_bytes` of values, and
/// divides our p50s (`push_p50_us`, `pull_p50_us`) by them.
pub fn measure(
    (push_req, pull_req, pull_resp, value_bytes): (usize, usize, usize, usize),
    (iters, warmup): (usize, usize),
    (push_p50_us, pull_p50_us): (f64, f64),
) -> Result<ShmFloor> {
    let ring = ferrops_net::shm::DEFAULT_RING;
    let header = ferrops_net::HEADER_LEN;
    let ping_pong = |request, response| -> Result<LatencyStats> {
        let mut us = ferrops_net::shm::floor::ping_pong(request, response, ring, iters, warmup)?;
        Ok(LatencyStats::from_samples(&mut us))
    };
    let push_round_trip = ping_pong(push_req, header)?;
    let pull_round_trip = ping_pong(pull_req, pull_resp)?;
    let memcpy = memcpy(value_bytes, iters, warmup);
    let ratio = |ours: f64, floor: &LatencyStats| {
        if floor.p50_us > 0.0 {
            ours / floor.p50_us
        } else {
            0.0
        }
    };
    Ok(ShmFloor {
        ring_bytes: ring,
        push_p50_ratio: ratio(push_p50_us, &push_round_trip),
        pull_p50_ratio: ratio(pull_p50_us, &pull_round_trip),
        push_memcpy_ratio: ratio(push_p50_us, &memcpy),
        pull_memcpy_ratio: ratio(pull_p50_us, &memcpy),
        push_round_trip,
        pull_round_trip,
        memcpy,
    })
}

/// Times `warmup + iters` copies of `bytes` between two buffers; the last `iters`, in µs.
fn memcpy(bytes: usize, iters: usize, warmup: usize) -> LatencyStats {
    let from = vec![1u8; bytes];
    let mut to = vec![0u8; bytes];
    let mut us = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let started = std::time::Instant::now();
        to.copy_from_slice(std::hint::black_box(&from));
        std::hint::black_box(&mut to);
        if i >= warmup {
            us.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    LatencyStats::from_samples(&mut us)
}
