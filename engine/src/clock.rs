//! Worker clocks as seen by one server, and the pulls held back until the clocks allow them.

use std::collections::{BTreeMap, BTreeSet};

/// Completed clocks of each worker (by node id), and which workers are live.
#[derive(Debug, Default, Clone)]
pub struct ClockTracker {
    completed: BTreeMap<u32, u32>,
    live: BTreeSet<u32>,
    /// The clocks every worker has completed before it sends any (a restored job's clock).
    start: u32,
}

impl ClockTracker {
    /// Counts every worker from `clock` completed clocks (a job restored from a checkpoint
    /// taken at that clock), before any of them sends one.
    pub fn start_at(&mut self, clock: u32) {
        self.start = clock;
    }

    /// Sets the live workers: only their clocks count; a new one starts at the job's first
    /// clock (`start_at`, 0 unless restored).
    pub fn set_live(&mut self, workers: &[u32]) {
        self.live = workers.iter().copied().collect();
    }

    /// Makes `worker` live from `start` completed clocks on (it joined a running job): its
    /// next clock record is `start + 1`.
    pub fn join(&mut self, worker: u32, start: u32) {
        let c = self.completed.entry(worker).or_insert(0);
        *c = (*c).max(start);
        self.live.insert(worker);
    }

    /// The node ids of the live workers.
    pub fn live_workers(&self) -> Vec<u32> {
        self.live.iter().copied().collect()
    }

    /// (worker, completed clocks) of every live worker, by node id.
    pub fn live_clocks(&self) -> Vec<(u32, u32)> {
        self.live
            .iter()
            .map(|&w| (w, self.completed.get(&w).copied().unwrap_or(0)))
            .collect()
    }

    /// Records that `worker` has completed `completed` clocks. A worker's clocks arrive one at
    /// a time, so a record may advance its count by one at most: a larger step (a peer's bug
    /// or a forged frame, which would release every parked pull) is refused and changes
    /// nothing; an old count is ignored. Returns whether the worker is live (so that waiting
    /// requests may now be released).
    pub fn record(&mut self, worker: u32, completed: u32) -> Result<bool, ClockJump> {
        let c = self.completed.entry(worker).or_insert(self.start);
        if completed > c.saturating_add(1) {
            return Err(ClockJump {
                worker,
                from: *c,
                to: completed,
            });
        }
        *c = (*c).max(completed);
        Ok(self.live.contains(&worker))
    }

    /// Every worker's completed clocks, by node id.
    pub fn completed(&self) -> Vec<(u32, u32)> {
        self.completed.iter().map(|(&w, &c)| (w, c)).collect()
    }

    /// Takes what another server knew of `worker`'s clocks (a range copy, a worker saying
    /// where it stands when it connects): the larger count wins, without the one-step check
    /// [`ClockTracker::record`] makes of a worker's own clock frames.
    /// Returns whether that is more than this tracker knew.
    pub fn merge(&mut self, worker: u32, completed: u32) -> bool {
        let c = self.completed.entry(worker).or_insert(0);
        let more = completed > *c;
        *c = (*c).max(completed);
        more
    }

    /// Clocks between the live worker that completed the most and the one that completed the
    /// fewest (0 with fewer than two live workers).
    pub fn lag(&self) -> u32 {
        let done = self
            .live
            .iter()
            .map(|w| self.completed.get(w).copied().unwrap_or(self.start));
        let (min, max) = done.fold((u32::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
        max.saturating_sub(min)
    }

    /// The fewest clocks any live worker has completed (`u32::MAX` when none is live, so that
    /// nothing waits on an empty set).
    pub fn min_completed(&self) -> u32 {
        self.live
            .iter()
            .map(|w| self.completed.get(w).copied().unwrap_or(self.start))
            .min()
            .unwrap_or(u32::MAX)
    }
}

/// A clock record that skips clocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker {worker} jumped from {from} to {to} completed clocks; clocks advance by one")]
pub struct ClockJump {
    pub worker: u32,
    pub from: u32,
    pub to: u32,
}

/// Requests waiting for `min_completed` to reach their requirement, answered in arrival order.
#[derive(Debug)]
pub struct Parked<T> {
    waiting: Vec<(u32, T)>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Parked {
            waiting: Vec::new(),
        }
    }
}

impl<T> Parked<T> {
    /// Holds `item` until every live worker has completed `required` clocks.
    pub fn park(&mut self, required: u32, item: T) {
        self.waiting.push((required, item));
    }

    /// Takes, in arrival order, every item whose requirement `min_completed` now meets.
    pub fn release(&mut self, min_completed: u32) -> Vec<T> {
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(req, _)| *req <= min_completed);
        self.waiting = still;
        ready.into_iter().map(|(_, t)| t).collect()
    }

    /// Drops the items `gone` says no longer have anyone to answer.
    pub fn forget(&mut self, gone: impl Fn(&T) -> bool) {
        self.waiting.retain(|(_, t)| !gone(t));
    }

    /// Takes everything (shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Number of held items.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_worker_counts_from_its_start_clock() {
        let mut t = ClockTracker::default();
        t.set_live(&[1, 2]);
        advance(&mut t, 1, 5);
        advance(&mut t, 2, 4);
        t.join(7, 4);
        assert_eq!(
            t.min_completed(),
            4,
            "the newcomer does not hold the others back"
        );
        assert_eq!(t.live_clocks(), vec![(1, 5), (2, 4), (7, 4)]);
        assert!(
            t.record(7, 6).is_err(),
            "its clocks still advance one at a time"
        );
        assert_eq!(t.record(7, 5), Ok(true));
        t.set_live(&[1, 7]);
        assert_eq!(t.min_completed(), 5, "a later live set keeps its count");
    }

    /// Records `worker`'s clocks one by one up to `to`; whether the worker is live.
    fn advance(t: &mut ClockTracker, worker: u32, to: u32) -> bool {
        let mut live = false;
        for c in 1..=to {
            live = t
                .record(worker, c)
                .expect("one clock at a time is accepted");
        }
        live
    }

    #[test]
    fn lag_is_the_spread_of_live_workers_clocks() {
        let mut t = ClockTracker::default();
        assert_eq!(t.lag(), 0, "no live worker");
        t.set_live(&[1, 2]);
        advance(&mut t, 1, 5);
        advance(&mut t, 2, 2);
        assert_eq!(t.lag(), 3);
        advance(&mut t, 9, 20);
        assert_eq!(t.lag(), 3, "a dead worker's clocks do not count");
    }

    #[test]
    fn slowest_live_worker_sets_the_pace_and_dead_ones_do_not() {
        let mut t = ClockTracker::default();
        t.set_live(&[1, 2, 3]);
        advance(&mut t, 1, 5);
        advance(&mut t, 2, 3);
        assert_eq!(t.min_completed(), 0, "worker 3 has completed nothing");
        advance(&mut t, 3, 4);
        assert_eq!(t.min_completed(), 3);
        t.record(2, 1).unwrap();
        assert_eq!(t.min_completed(), 3, "clocks never go backwards");
        t.set_live(&[1, 3]);
        assert_eq!(t.min_completed(), 4, "the dead worker no longer counts");
        assert!(
            !advance(&mut t, 2, 9),
            "records of dead workers release nothing"
        );
        advance(&mut t, 7, 2);
        t.set_live(&[1, 3, 7]);
        assert_eq!(
            t.min_completed(),
            2,
            "a clock recorded before the worker was live counts"
        );
    }

    #[test]
    fn a_clock_that_skips_ahead_is_refused_and_changes_nothing() {
        // A forged `Clock{clock = u32::MAX}` would otherwise mark the worker as far ahead
        // forever and release every sequential pull early.
        let mut t = ClockTracker::default();
        t.set_live(&[1]);
        assert_eq!(
            t.record(1, u32::MAX),
            Err(ClockJump {
                worker: 1,
                from: 0,
                to: u32::MAX
            })
        );
        assert_eq!(t.min_completed(), 0);
        assert_eq!(t.record(1, 1), Ok(true));
        assert!(t.record(1, 3).is_err());
        assert_eq!(t.min_completed(), 1);
    }

    #[test]
    fn parked_items_come_out_in_order_once_allowed() {
        let mut p = Parked::default();
        p.park(2, "a");
        p.park(1, "b");
        p.park(3, "c");
        assert!(p.release(0).is_empty());
        assert_eq!(p.release(2), vec!["a", "b"]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.release(u32::MAX), vec!["c"]);
    }
}
