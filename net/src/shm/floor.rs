//! The floor a shared-memory connection is measured against: raw ping-pongs of fixed byte
//! counts through the same rings between two busy-polling threads, with no framing, no
//! checksums and no wakeups (`ferrops bench push-pull --floor` over `shm`).

use std::time::Instant;

use super::handshake::Mapping;
use super::ring::{self, Consumer, Producer};
use super::ShmError;

/// Round trips of `request` bytes one way and `response` bytes back through a pair of rings
/// of `capacity` bytes; returns the last `iters` of `warmup + iters` round trips, in µs.
pub fn ping_pong(
    request: usize,
    response: usize,
    capacity: usize,
    iters: usize,
    warmup: usize,
) -> Result<Vec<f64>, ShmError> {
    let map = Mapping::local(capacity)?;
    // SAFETY: both rings lie inside `map`, which outlives the scope the ends are used in;
    // each ring has one producer and one consumer.
    let (mut tx, mut rx, mut echo_rx, mut echo_tx) = unsafe {
        (
            ring::producer(map.ring(0), capacity),
            ring::consumer(map.ring(1), capacity),
            ring::consumer(map.ring(0), capacity),
            ring::producer(map.ring(1), capacity),
        )
    };
    let rounds = warmup + iters;
    std::thread::scope(|s| {
        let echo = s.spawn(move || -> Result<(), ShmError> {
            // Written in full, not zeroed: untouched zeroed pages all map the kernel's one zero
            // page, and a reply sent from them would be read from cache, not from memory as a
            // server's values are.
            let mut buf = vec![7u8; request.max(response)];
            for _ in 0..rounds {
                move_bytes(&mut echo_rx, &mut buf[..request])?;
                send_bytes(&mut echo_tx, &buf[..response])?;
            }
            Ok(())
        });
        let out = vec![7u8; request];
        let mut back = vec![0u8; response];
        let mut samples = Vec::with_capacity(iters);
        for i in 0..rounds {
            let started = Instant::now();
            send_bytes(&mut tx, &out)?;
            move_bytes(&mut rx, &mut back)?;
            if i >= warmup {
                samples.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        echo.join().expect("the echo thread does not panic")?;
        Ok(samples)
    })
}

/// Writes all of `buf`, spinning while the ring is full.
fn send_bytes(tx: &mut Producer, buf: &[u8]) -> Result<(), ShmError> {
    let mut at = 0;
    while at < buf.len() {
        let n = tx.write(&buf[at..])?;
        if n == 0 {
            std::hint::spin_loop();
        }
        at += n;
    }
    Ok(())
}

/// Fills all of `buf`, spinning while the ring is empty.
fn move_bytes(rx: &mut Consumer, buf: &mut [u8]) -> Result<(), ShmError> {
    let mut at = 0;
    while at < buf.len() {
        let n = rx.read(&mut buf[at..])?;
        if n == 0 {
            std::hint::spin_loop();
        }
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ping_pong_larger_than_the_ring_completes_every_round() {
        let samples = super::ping_pong(10_000, 100, super::super::MIN_RING, 5, 2).unwrap();
        assert_eq!(samples.len(), 5);
    }
}
