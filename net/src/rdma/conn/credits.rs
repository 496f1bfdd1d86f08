//! Credit flow control, as pure bookkeeping (no verbs types, so it is tested without a
//! device).
//!
//! Every message that occupies one of the peer's receive buffers costs one credit: frames,
//! requests to send, clear-to-send answers, and the WRITE_WITH_IMM of a bulk payload (which
//! consumes a receive too). A side starts with [`CREDITS`] and never posts such a message
//! without one, so the peer's receive queue can never run dry. When our application frees a
//! receive buffer the peer paid for, we owe the peer a credit; owed credits ride in the
//! immediate of our next SEND, or in a credit-only message once [`CREDIT_RETURN_AT`] of them
//! have piled up. Credit-only messages and the goodbye cost nothing: they land in the
//! [`RESERVE`] buffers beyond the credit window, and are re-posted at once.

/// Credits a peer starts with: messages it may have in our receive buffers at once.
pub const CREDITS: u32 = 32;
/// Receive buffers beyond the credit window, for credit-only messages and the goodbye.
pub(super) const RESERVE: u32 = 8;
/// Credits owed to the peer before we send them in a message of their own.
pub(super) const CREDIT_RETURN_AT: u32 = CREDITS / 4;

// A peer that has consumed everything owes enough for a credit-only message, so a sender out
// of credits is never left waiting for credits nobody sends.
const _: () = assert!(CREDIT_RETURN_AT >= 1 && CREDIT_RETURN_AT <= CREDITS);
// Free messages that can be in flight at once: each credit-only message carries at least
// CREDIT_RETURN_AT of the CREDITS credits, and there is one goodbye. They fit the reserve.
const _: () = assert!(CREDITS / CREDIT_RETURN_AT < RESERVE);

/// One side's view of the credit window: what we may still send, what we owe the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Credits {
    /// Messages the peer has room for.
    available: u32,
    /// Receive buffers the peer paid for that we have freed and not yet reported.
    owed: u32,
}

impl Credits {
    /// A fresh connection: the whole window, nothing owed.
    pub(super) const fn new() -> Credits {
        Credits {
            available: CREDITS,
            owed: 0,
        }
    }

    /// Messages the peer has room for.
    #[inline]
    pub(super) fn available(&self) -> u32 {
        self.available
    }

    /// Whether a message may go now: one that costs a credit needs one left.
    #[inline]
    pub(super) fn allows(&self, costs_credit: bool) -> bool {
        !costs_credit || self.available > 0
    }

    /// A message that costs a credit is being posted. Only after [`Credits::allows`] said so.
    #[inline]
    pub(super) fn spend(&mut self) {
        self.available -= 1;
    }

    /// The peer handed back `n` credits (the immediate of its SEND).
    #[inline]
    pub(super) fn grant(&mut self, n: u32) {
        self.available += n;
    }

    /// We freed (re-posted) a receive buffer the peer paid a credit for.
    #[inline]
    pub(super) fn owe(&mut self) {
        self.owed += 1;
    }

    /// The owed credits, to ride in the immediate of the SEND being posted; owes nothing after.
    #[inline]
    pub(super) fn take_owed(&mut self) -> u32 {
        std::mem::take(&mut self.owed)
    }

    /// Whether enough is owed to be worth a credit-only message of its own.
    #[inline]
    pub(super) fn return_due(&self) -> bool {
        self.owed >= CREDIT_RETURN_AT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_starts_with_the_whole_window_and_owes_nothing() {
        let c = Credits::new();
        assert_eq!(c.available(), CREDITS);
        assert!(c.allows(true));
        assert!(!c.return_due());
        let mut c = c;
        assert_eq!(c.take_owed(), 0);
    }

    #[test]
    fn each_paid_message_consumes_one_credit_until_none_is_left() {
        let mut c = Credits::new();
        for left in (0..CREDITS).rev() {
            assert!(c.allows(true));
            c.spend();
            assert_eq!(c.available(), left);
        }
        // Exhausted: paid messages wait (backpressure), free ones still go.
        assert!(!c.allows(true));
        assert!(c.allows(false));
    }

    #[test]
    fn returned_credits_reopen_the_window() {
        let mut c = Credits::new();
        for _ in 0..CREDITS {
            c.spend();
        }
        c.grant(0);
        assert!(!c.allows(true), "an immediate of 0 returns nothing");
        c.grant(3);
        assert_eq!(c.available(), 3);
        for _ in 0..3 {
            assert!(c.allows(true));
            c.spend();
        }
        assert!(!c.allows(true));
    }

    #[test]
    fn owed_credits_are_handed_over_once() {
        let mut c = Credits::new();
        for _ in 0..5 {
            c.owe();
        }
        assert_eq!(c.take_owed(), 5);
        assert_eq!(
            c.take_owed(),
            0,
            "the same credits must not be returned twice"
        );
        // Owing does not touch our own window.
        assert_eq!(c.available(), CREDITS);
    }

    #[test]
    fn a_credit_only_message_is_due_at_the_threshold_not_before() {
        let mut c = Credits::new();
        for _ in 1..CREDIT_RETURN_AT {
            c.owe();
            assert!(!c.return_due());
        }
        c.owe();
        assert!(c.return_due());
        c.take_owed();
        assert!(!c.return_due());
    }

    /// A message in flight in the model below.
    #[derive(Clone, Copy, Debug)]
    struct Msg {
        costs_credit: bool,
        imm: u32,
    }

    /// One side of the model: its credits, the frames sitting in its receive buffers, and
    /// what it has put on the wire towards the other side.
    #[derive(Debug)]
    struct Side {
        credits: Credits,
        held: u32,
        outbox: Vec<Msg>,
        // Highest number of paid messages in our receive buffers at once.
        most_held: u32,
    }

    impl Side {
        fn new() -> Side {
            Side {
                credits: Credits::new(),
                held: 0,
                outbox: Vec::new(),
                most_held: 0,
            }
        }

        /// The application sends a frame if the window allows (else it would be queued).
        fn send_frame(&mut self) -> bool {
            if !self.credits.allows(true) {
                return false;
            }
            self.credits.spend();
            let imm = self.credits.take_owed();
            self.outbox.push(Msg {
                costs_credit: true,
                imm,
            });
            true
        }

        /// What the connection does after sending or receiving: return credits on their own
        /// when enough are owed.
        fn maybe_return_credits(&mut self) {
            if self.credits.return_due() && self.credits.allows(false) {
                let imm = self.credits.take_owed();
                self.outbox.push(Msg {
                    costs_credit: false,
                    imm,
                });
            }
        }

        fn deliver(&mut self, msg: Msg) {
            self.credits.grant(msg.imm);
            if msg.costs_credit {
                self.held += 1;
                self.most_held = self.most_held.max(self.held);
            }
        }

        /// The application takes one frame; its receive buffer is re-posted.
        fn consume(&mut self) -> bool {
            if self.held == 0 {
                return false;
            }
            self.held -= 1;
            self.credits.owe();
            true
        }
    }

    /// Credits of the direction `from` -> `to` that exist somewhere: still available to the
    /// sender, spent on a message in flight or held, owed by the receiver, or on their way back.
    fn accounted(from: &Side, to: &Side) -> u32 {
        let in_flight: u32 = from.outbox.iter().filter(|m| m.costs_credit).count() as u32;
        let returning: u32 = to.outbox.iter().map(|m| m.imm).sum();
        from.credits.available() + in_flight + to.held + to.credits.owed + returning
    }

    /// xorshift64: a fixed, reproducible interleaving of the two sides.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn credits_are_conserved_and_a_receiver_never_holds_more_than_the_window() {
        for seed in 1..=20u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut sides = [Side::new(), Side::new()];
            let mut blocked = 0u32;
            for _ in 0..20_000 {
                let r = next(&mut rng);
                let who = (r & 1) as usize;
                let other = 1 - who;
                match (r >> 1) % 4 {
                    0 => blocked += u32::from(!sides[who].send_frame()),
                    // The wire delivers the oldest message (RC keeps order).
                    1 if !sides[who].outbox.is_empty() => {
                        let msg = sides[who].outbox.remove(0);
                        sides[other].deliver(msg);
                    }
                    // A slow receiver: it consumes less often than the peer sends.
                    2 if (r >> 8) & 3 == 0 => {
                        sides[who].consume();
                    }
                    _ => {}
                }
                sides[who].maybe_return_credits();
                sides[other].maybe_return_credits();
                assert_eq!(accounted(&sides[0], &sides[1]), CREDITS, "seed {seed}");
                assert_eq!(accounted(&sides[1], &sides[0]), CREDITS, "seed {seed}");
            }
            for side in &sides {
                assert!(side.most_held <= CREDITS, "seed {seed}: {side:?}");
            }
            assert!(
                blocked > 0,
                "seed {seed}: the slow receiver never pushed back"
            );
        }
    }

    #[test]
    fn a_drained_receiver_returns_the_whole_window() {
        let (mut a, mut b) = (Side::new(), Side::new());
        while a.send_frame() {}
        assert_eq!(a.credits.available(), 0);
        for msg in std::mem::take(&mut a.outbox) {
            b.deliver(msg);
        }
        assert_eq!(b.held, CREDITS);
        while b.consume() {
            b.maybe_return_credits();
        }
        for msg in std::mem::take(&mut b.outbox) {
            a.deliver(msg);
        }
        assert_eq!(b.credits.take_owed(), 0, "everything owed was sent back");
        assert_eq!(a.credits.available(), CREDITS);
    }
}
