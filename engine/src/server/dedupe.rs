//! Exactly once: which pushes of each worker a server has applied to each of its ranges, so
//! that a resend is dropped whatever order resends arrive in.
//!
//! A worker numbers its pushes with one counter and states with each push how far back its
//! oldest unfinished push is (`Header::open_span`): every push numbered below that floor is
//! finished — acknowledged, or given up — and is never sent again. A server keeps, per (range,
//! worker), the floor and the numbers applied at or above it: a push is a resend if it is
//! below the floor or among them. Its memory is the worker's unfinished pushes, not its
//! history. A replica sees the same pushes with the same numbers and spans in the same order
//! as its head (forwards carry both), so its state is always the head's at an earlier push,
//! and after a failover the new head drops exactly what it applied.

use std::collections::{BTreeSet, HashMap};

/// How far past a worker's highest applied push a sequence number may be. A worker numbers all
/// its pushes with one counter, so a server sees gaps (pushes that went to other servers);
/// 2^40 pushes is more than any job makes, and a forged or corrupt number beyond it is refused.
pub(super) const SEQ_WINDOW: u64 = 1 << 40;

/// The pushes applied, by (range index, worker node).
#[derive(Debug, Default)]
pub(super) struct AppliedPushes {
    by_sender: HashMap<(u32, u32), SenderPushes>,
}

#[derive(Debug, Default)]
struct SenderPushes {
    /// Every push numbered below it is finished at the worker.
    floor: u64,
    /// The numbers applied at or above `floor`.
    applied: BTreeSet<u64>,
    /// The highest number applied.
    highest: u64,
}

/// What a server does with a push, by its number.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not applied yet: apply it, then `record` it.
    Apply,
    /// Applied before (or finished at the worker): drop it, acknowledge it.
    Resend,
    /// Numbered more than `SEQ_WINDOW` past the highest applied: refuse it.
    TooFar { highest: u64 },
}

impl AppliedPushes {
    /// Judges push `seq` of `worker` to `range`, which states `open_span` (0: no floor stated),
    /// and raises the floor it states. Number 0 is never deduplicated.
    pub fn judge(&mut self, range: u32, worker: u32, seq: u64, open_span: u32) -> Verdict {
        if seq == 0 {
            return Verdict::Apply;
        }
        let sender = self.by_sender.entry((range, worker)).or_default();
        if seq > sender.highest.saturating_add(SEQ_WINDOW) {
            return Verdict::TooFar {
                highest: sender.highest,
            };
        }
        if open_span != 0 {
            let floor = (seq + 1).saturating_sub(u64::from(open_span));
            if floor > sender.floor {
                sender.floor = floor;
                sender.applied = sender.applied.split_off(&floor);
            }
        }
        if seq < sender.floor || sender.applied.contains(&seq) {
            Verdict::Resend
        } else {
            Verdict::Apply
        }
    }

    /// Records push `seq` of `worker` as applied to `range`.
    pub fn record(&mut self, range: u32, worker: u32, seq: u64) {
        if seq == 0 {
            return;
        }
        let sender = self.by_sender.entry((range, worker)).or_default();
        sender.applied.insert(seq);
        sender.highest = sender.highest.max(seq);
    }

    /// Records the pushes `(worker, sequence, open span)` an aggregated update's rows reflect
    /// (see `aggregate`), in order, judging each as if it came alone; how many were new here.
    pub fn record_reflected(&mut self, range: u32, pushes: &[(u32, u64, u32)]) -> u64 {
        let mut new = 0;
        for &(worker, seq, span) in pushes {
            if self.judge(range, worker, seq, span) == Verdict::Apply {
                self.record(range, worker, seq);
                new += 1;
            }
        }
        new
    }

    /// What is kept for `range`, to copy it to a learner: per worker, (worker, floor, highest,
    /// the numbers applied at or above the floor).
    pub fn export(&self, range: u32) -> Vec<(u32, u64, u64, Vec<u64>)> {
        self.by_sender
            .iter()
            .filter(|(&(r, _), _)| r == range)
            .map(|(&(_, w), s)| (w, s.floor, s.highest, s.applied.iter().copied().collect()))
            .collect()
    }

    /// Replaces what is kept for `range` with a copy's (see [`AppliedPushes::export`]).
    pub fn import(&mut self, range: u32, copied: Vec<(u32, u64, u64, Vec<u64>)>) {
        self.by_sender.retain(|&(r, _), _| r != range);
        for (worker, floor, highest, applied) in copied {
            let sender = SenderPushes {
                floor,
                applied: applied.into_iter().collect(),
                highest,
            };
            self.by_sender.insert((range, worker), sender);
        }
    }

    /// Forgets the ranges `held` says this server no longer holds.
    pub fn keep_ranges(&mut self, held: impl Fn(u32) -> bool) {
        self.by_sender.retain(|&(r, _), _| held(r));
    }

    /// How many numbers are kept for `worker` in `range` (what its unfinished pushes cost).
    #[cfg(test)]
    fn kept(&self, range: u32, worker: u32) -> usize {
        self.by_sender
            .get(&(range, worker))
            .map_or(0, |s| s.applied.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(a: &mut AppliedPushes, seq: u64, span: u32) -> bool {
        let verdict = a.judge(0, 7, seq, span);
        if verdict == Verdict::Apply {
            a.record(0, 7, seq);
        }
        verdict == Verdict::Apply
    }

    #[test]
    fn a_copy_drops_the_same_resends_as_the_original() {
        let mut a = AppliedPushes::default();
        for seq in [1, 2, 5] {
            assert!(apply(&mut a, seq, 3));
        }
        let mut b = AppliedPushes::default();
        b.import(0, a.export(0));
        for (seq, expected) in [(5, false), (4, true), (2, false), (3, true)] {
            assert_eq!(apply(&mut b, seq, 3), expected, "push {seq}");
        }
    }

    #[test]
    fn resends_in_any_order_are_dropped_and_missing_pushes_applied() {
        let mut a = AppliedPushes::default();
        // 1..=4 outstanding (floor 1); 3 and 4 reached this server, 1 and 2 did not.
        assert!(apply(&mut a, 3, 3));
        assert!(apply(&mut a, 4, 4));
        // Resent newest first: 4 and 3 are dropped, 2 and 1 applied once.
        for (seq, expected) in [(4, false), (3, false), (2, true), (1, true), (2, false)] {
            assert_eq!(apply(&mut a, seq, seq as u32), expected, "push {seq}");
        }
    }

    #[test]
    fn the_floor_forgets_finished_pushes_and_drops_them_if_they_come_back() {
        let mut a = AppliedPushes::default();
        for seq in 1..=100 {
            assert!(apply(&mut a, seq, 1), "push {seq}");
        }
        assert_eq!(a.kept(0, 7), 1, "only the last push is unfinished");
        assert!(!apply(&mut a, 50, 1), "a finished push is a resend");
        // Pushes numbered in between went to other servers, or are still on their way here.
        assert!(apply(&mut a, 200, 101));
        assert!(apply(&mut a, 150, 51));
        assert!(!apply(&mut a, 150, 51));
    }

    #[test]
    fn without_a_stated_floor_every_applied_number_is_kept() {
        let mut a = AppliedPushes::default();
        for seq in [5, 2, 9] {
            assert!(apply(&mut a, seq, 0));
        }
        assert!(!apply(&mut a, 2, 0));
        assert_eq!(a.kept(0, 7), 3);
    }

    #[test]
    fn a_number_far_past_the_highest_is_refused_and_zero_never_deduplicated() {
        let mut a = AppliedPushes::default();
        assert!(apply(&mut a, 10, 1));
        let far = a.judge(0, 7, 11 + SEQ_WINDOW, 1);
        assert_eq!(far, Verdict::TooFar { highest: 10 });
        assert!(apply(&mut a, 0, 0) && apply(&mut a, 0, 0));
    }
}
