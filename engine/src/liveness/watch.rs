//! The two clocks liveness is judged by: how long a peer has been silent ([`Silence`]), and
//! whether the loop that judges it has been looking at all ([`StallGuard`]).

use std::time::{Duration, Instant};

/// How long one peer has said nothing.
#[derive(Debug, Clone)]
pub(crate) struct Silence {
    timeout: Duration,
    last_heard: Instant,
}

impl Silence {
    /// A peer heard from at `now`, declared silent after `timeout` without a frame.
    pub(crate) fn new(timeout: Duration, now: Instant) -> Silence {
        Silence {
            timeout,
            last_heard: now,
        }
    }

    /// A frame from the peer was read at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// How long the peer has been silent at `now`, if that is past the timeout.
    pub(crate) fn exceeded(&self, now: Instant) -> Option<Duration> {
        let silent_for = now.saturating_duration_since(self.last_heard);
        (silent_for > self.timeout).then_some(silent_for)
    }

    /// The timeout this silence is judged by.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Whether an event loop has looked at its connections recently enough that what its peers sent
/// has been read. After a gap longer than `max_gap` (the loop was busy or the process stopped)
/// frames may wait unread, so that look must not judge silence; the next one can.
#[derive(Debug, Clone)]
pub(crate) struct StallGuard {
    max_gap: Duration,
    last_look: Instant,
}

impl StallGuard {
    pub(crate) fn new(max_gap: Duration, now: Instant) -> StallGuard {
        StallGuard {
            max_gap,
            last_look: now,
        }
    }

    /// Records a look at `now`; false if the previous look was more than `max_gap` before.
    pub(crate) fn fresh(&mut self, now: Instant) -> bool {
        let gap = now.saturating_duration_since(self.last_look);
        self.last_look = self.last_look.max(now);
        gap <= self.max_gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn silence_counts_from_the_last_frame_and_only_past_the_timeout() {
        let t0 = Instant::now();
        let mut s = Silence::new(1000 * MS, t0);
        assert_eq!(s.exceeded(t0 + 1000 * MS), None);
        assert_eq!(s.exceeded(t0 + 1001 * MS), Some(1001 * MS));
        s.heard(t0 + 900 * MS);
        assert_eq!(s.exceeded(t0 + 1500 * MS), None);
        assert_eq!(s.exceeded(t0 + 2000 * MS), Some(1100 * MS));
        // A frame stamped earlier (read out of order) never moves the clock back.
        s.heard(t0);
        assert_eq!(s.exceeded(t0 + 2000 * MS), Some(1100 * MS));
    }

    #[test]
    fn a_look_after_a_stall_does_not_judge_but_the_next_one_does() {
        let t0 = Instant::now();
        let mut g = StallGuard::new(200 * MS, t0);
        assert!(g.fresh(t0 + 100 * MS));
        assert!(g.fresh(t0 + 300 * MS));
        assert!(!g.fresh(t0 + 5000 * MS), "5 s without a look: a stall");
        assert!(g.fresh(t0 + 5100 * MS));
    }
}
