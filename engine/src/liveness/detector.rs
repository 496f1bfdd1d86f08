//! The scheduler's failure detector: which registered nodes have gone silent or lost their
//! connection. It only reports [`Death`] events; what a death means (free a slot, end the job,
//! fail over) is decided by whoever consumes them.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::watch::{Silence, StallGuard};
use crate::config::LivenessConfig;

/// Why a node is considered dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No frame, heartbeats included, for `silent_for`, past `timeout`: stopped, hung, or cut
    /// off by the network.
    Silent {
        silent_for: Duration,
        timeout: Duration,
    },
    /// Its connection closed or failed (the text says how) before it said it was done.
    Disconnected(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Silent {
                silent_for,
                timeout,
            } => write!(
                f,
                "no heartbeat for {} (timeout {}): stopped, hung or cut off",
                super::secs(*silent_for),
                super::secs(*timeout)
            ),
            Cause::Disconnected(how) => write!(f, "its connection {how}"),
        }
    }
}

/// A node the detector gave up on; it is no longer watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death<K> {
    pub node: K,
    pub cause: Cause,
}

/// Watches nodes by key (the scheduler's connection ids): a node is watched from
/// [`Detector::watch`] until it dies or is [`Detector::forget`]-ten.
#[derive(Debug)]
pub struct Detector<K> {
    timeout: Duration,
    nodes: HashMap<K, Silence>,
    stall: StallGuard,
}

impl<K: Copy + Eq + Hash + Ord> Detector<K> {
    /// A detector judging by `cfg`'s heartbeat timeout. `now` starts its clock.
    pub fn new(cfg: &LivenessConfig, now: Instant) -> Detector<K> {
        Detector {
            timeout: cfg.heartbeat_timeout,
            nodes: HashMap::new(),
            // The loop looks every tick; one heartbeat interval without a look is a stall.
            stall: StallGuard::new(cfg.heartbeat_interval, now),
        }
    }

    /// Starts watching `node` (it just registered).
    pub fn watch(&mut self, node: K, now: Instant) {
        self.nodes.insert(node, Silence::new(self.timeout, now));
    }

    /// A frame from `node` was read at `now`.
    pub fn heard(&mut self, node: K, now: Instant) {
        if let Some(silence) = self.nodes.get_mut(&node) {
            silence.heard(now);
        }
    }

    /// Stops watching `node` (it said it was done); true if it was watched.
    pub fn forget(&mut self, node: K) -> bool {
        self.nodes.remove(&node).is_some()
    }

    /// `node`'s connection ended (`how`: "closed", "failed: ..."): its death if it was watched.
    pub fn disconnected(&mut self, node: K, how: impl Into<String>) -> Option<Death<K>> {
        self.forget(node).then(|| Death {
            node,
            cause: Cause::Disconnected(how.into()),
        })
    }

    /// The watched nodes silent past the timeout at `now` (lowest key first), no longer
    /// watched. None at the first look after the caller's loop stalled: what the nodes sent
    /// meanwhile has not been read yet.
    pub fn look(&mut self, now: Instant) -> Vec<Death<K>> {
        if !self.stall.fresh(now) {
            return Vec::new();
        }
        let mut silent: Vec<(K, Duration)> = self
            .nodes
            .iter()
            .filter_map(|(&k, s)| Some((k, s.exceeded(now)?)))
            .collect();
        silent.sort_by_key(|&(k, _)| k);
        silent
            .into_iter()
            .map(|(node, silent_for)| {
                self.nodes.remove(&node);
                Death {
                    node,
                    cause: Cause::Silent {
                        silent_for,
                        timeout: self.timeout,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> LivenessConfig {
        LivenessConfig {
            heartbeat_interval: 100 * MS,
            heartbeat_timeout: 500 * MS,
            startup_deadline: 10_000 * MS,
            ..LivenessConfig::default()
        }
    }

    /// Looks every 50 ms from `from` to `to`, hearing from the nodes in `beating` each time;
    /// returns the deaths reported.
    fn run(
        d: &mut Detector<u32>,
        t0: Instant,
        from: u64,
        to: u64,
        beating: &[u32],
    ) -> Vec<Death<u32>> {
        let mut deaths = Vec::new();
        for ms in (from..=to).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            for &n in beating {
                d.heard(n, now);
            }
            deaths.extend(d.look(now));
        }
        deaths
    }

    #[test]
    fn a_silent_node_dies_once_past_the_timeout_and_the_others_live() {
        let t0 = Instant::now();
        let mut d = Detector::new(&cfg(), t0);
        for n in [1, 2, 3] {
            d.watch(n, t0);
        }
        assert!(run(&mut d, t0, 0, 400, &[1, 2, 3]).is_empty());
        // Node 2 stops at 400 ms: dead once more than 500 ms passed, i.e. at the 950 ms look.
        assert!(run(&mut d, t0, 450, 900, &[1, 3]).is_empty());
        let deaths = run(&mut d, t0, 950, 2000, &[1, 3]);
        assert_eq!(
            deaths,
            vec![Death {
                node: 2,
                cause: Cause::Silent {
                    silent_for: 550 * MS,
                    timeout: 500 * MS
                }
            }],
            "reported once, then no longer watched"
        );
    }

    #[test]
    fn a_stall_of_the_watching_loop_kills_nobody_until_it_has_read_again() {
        let t0 = Instant::now();
        let mut d = Detector::new(&cfg(), t0);
        d.watch(7u32, t0);
        // The loop itself stops for 3 s: the first look after it judges nothing...
        assert!(d.look(t0 + 3000 * MS).is_empty());
        // ...and by the next look it has read the heartbeats that waited.
        d.heard(7, t0 + 3010 * MS);
        assert!(d.look(t0 + 3050 * MS).is_empty());
        // A node really silent is still found at the following looks.
        let deaths = run(&mut d, t0, 3100, 3600, &[]);
        assert_eq!(deaths.len(), 1);
    }

    #[test]
    fn closing_kills_only_watched_nodes_and_forgotten_ones_are_never_reported() {
        let t0 = Instant::now();
        let mut d = Detector::new(&cfg(), t0);
        d.watch(1u32, t0);
        d.watch(2, t0);
        assert!(d.forget(2), "node 2 said it was done");
        assert_eq!(
            d.disconnected(1, "closed"),
            Some(Death {
                node: 1,
                cause: Cause::Disconnected("closed".into())
            })
        );
        assert_eq!(d.disconnected(1, "closed"), None, "reported once");
        assert_eq!(d.disconnected(2, "closed"), None);
        assert!(run(&mut d, t0, 0, 5000, &[]).is_empty());
    }

    #[test]
    fn causes_read_as_sentences() {
        let silent = Cause::Silent {
            silent_for: 1600 * MS,
            timeout: 1500 * MS,
        };
        assert_eq!(
            silent.to_string(),
            "no heartbeat for 1.6 s (timeout 1.5 s): stopped, hung or cut off"
        );
        let short = Cause::Silent {
            silent_for: 300 * MS,
            timeout: 250 * MS,
        };
        assert_eq!(
            short.to_string(),
            "no heartbeat for 300 ms (timeout 250 ms): stopped, hung or cut off"
        );
        let closed = Cause::Disconnected("closed".into());
        assert_eq!(closed.to_string(), "its connection closed");
    }
}
