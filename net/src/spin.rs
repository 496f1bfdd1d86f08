//! The polling policy's one shared rule: when a busy-polling spin (the event loop's, the
//! client driver's) offers its core to other threads between rounds.

use std::time::{Duration, Instant};

/// How long a spin on shared-memory links runs alone after the last frame before it starts
/// offering the core to other threads every round: long enough that a back-to-back exchange
/// makes no system call, short enough that a peer waiting for this core (on an
/// oversubscribed host) loses microseconds, not a scheduler time slice.
pub(crate) const SPIN_ALONE: Duration = Duration::from_micros(20);

/// When a busy-polling spin offers its core to other threads between rounds (the polling
/// policy, shared by the event loop and the client driver): a spin over TCP links every
/// round, one over shared-memory links once it has run alone for [`SPIN_ALONE`] since it
/// (re)started, one over RDMA links never (`Link::yields_while_spinning`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinYield {
    tcp: bool,
    shm: bool,
    from: Instant,
}

impl SpinYield {
    /// A spin that offers no core.
    pub(crate) fn never() -> SpinYield {
        SpinYield {
            tcp: false,
            shm: false,
            from: Instant::now(),
        }
    }

    /// The spin (re)started at `now` by a link of these kinds: what it already was, plus
    /// them, with the spin alone counted from `now`.
    pub(crate) fn restart(self, now: Instant, tcp: bool, yields: bool) -> SpinYield {
        SpinYield {
            tcp: self.tcp || tcp,
            shm: self.shm || yields,
            from: now + SPIN_ALONE,
        }
    }

    /// Whether the spin offers its core at `now`.
    pub(crate) fn at(self, now: Instant) -> bool {
        self.tcp || (self.shm && now >= self.from)
    }
}
