//! The kinds of fault the harness injects into a server, and how long a stall or a partition
//! lasts against the heartbeat timeout.

use std::fmt;
use std::time::Duration;

use ferrops::internal::synth::Rng;

/// A fault injected into one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL; a spare is started in its place.
    Kill,
    /// SIGSTOP for a while, then SIGCONT: a stop past the heartbeat timeout makes the scheduler
    /// take the server for dead, and the server must find itself fenced when it resumes.
    Stall,
    /// Its veth down for a while, then up again: like a stall for the others, while the server
    /// itself keeps running.
    Partition,
    /// SIGKILL of the scheduler, restarted with `--recover` on the same address after a
    /// while: pushes and pulls go on meanwhile, and the nodes rebuild its state.
    Scheduler,
}

impl FaultKind {
    /// The name `--kinds` takes.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Stall => "stall",
            FaultKind::Partition => "partition",
            FaultKind::Scheduler => "scheduler",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long stalls and partitions last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hold {
    /// Shorter than the heartbeat timeout (20–60 % of it): the server must not be taken for dead.
    Short,
    /// Longer than the heartbeat timeout (150–300 % of it): the server is failed over and fenced.
    Long,
    /// Either, at random.
    Any,
}

impl Hold {
    /// A duration for one stall or partition: short or long as asked (at random for `Any`),
    /// scaled to `timeout`; returns it and whether it is longer than the timeout.
    pub fn draw(self, timeout: Duration, rng: &mut Rng) -> (Duration, bool) {
        let long = match self {
            Hold::Short => false,
            Hold::Long => true,
            Hold::Any => rng.unit() < 0.5,
        };
        let (lo, hi) = if long { (1.5, 3.0) } else { (0.2, 0.6) };
        let factor = lo + (hi - lo) * rng.unit();
        (timeout.mul_f64(factor), long)
    }
}

/// One fault as injected.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// The server it hit (the harness's label).
    pub target: String,
    /// How long a stall or partition lasted (zero for a kill).
    pub hold: Duration,
    /// Whether the hold was longer than the heartbeat timeout.
    pub long: bool,
    /// The slowest worker's clock when it was injected.
    pub clock: u32,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Kill => write!(f, "kill {} at clock {}", self.target, self.clock),
            FaultKind::Scheduler => write!(
                f,
                "kill the scheduler at clock {}, restarted after {} ms",
                self.clock,
                self.hold.as_millis()
            ),
            kind => write!(
                f,
                "{kind} {} at clock {} for {} ms ({} than the heartbeat timeout)",
                self.target,
                self.clock,
                self.hold.as_millis(),
                if self.long { "longer" } else { "shorter" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_fall_on_their_side_of_the_timeout() {
        let timeout = Duration::from_millis(1000);
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            let (d, long) = Hold::Short.draw(timeout, &mut rng);
            assert!(!long && d < timeout.mul_f64(0.61), "{d:?}");
            let (d, long) = Hold::Long.draw(timeout, &mut rng);
            assert!(long && d > timeout.mul_f64(1.49), "{d:?}");
        }
    }

    #[test]
    fn any_draws_both_sides() {
        let mut rng = Rng::new(1);
        let longs = (0..200)
            .filter(|_| Hold::Any.draw(Duration::from_secs(1), &mut rng).1)
            .count();
        assert!((50..150).contains(&longs), "{longs}");
    }
}
