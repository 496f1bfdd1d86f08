//! Memory budgets and the connection limit of a process's event loops: what a peer can make
//! this node hold, so that a slow or hostile peer meets backpressure or a refusal, never an
//! allocation failure.
//!
//! - **Replies**: bytes a connection's socket has not taken yet wait in its send queue. While a
//!   connection holds more than [`Budgets::reply_bytes_per_connection`] of them, or the whole
//!   process holds more than [`Budgets::reply_bytes_total`] and this connection holds some, its
//!   requests are not read: a reader that does not read its replies stops being served, and it
//!   is read again once its queue drains. The check is two loads per frame.
//! - **Frames**: a frame's payload buffer is allocated whole when it is small and grows as its
//!   bytes arrive when it is large (a header alone reserves nothing big); the large buffers of
//!   the whole process count against [`Budgets::frame_bytes_total`], and a frame that would pass
//!   it — or whose memory cannot be allocated — is refused with an error naming the budget and
//!   its connection dropped.
//! - **Connections**: a listener holds at most [`Budgets::max_connections`]; one more is told
//!   so in an error frame and closed. An accept that fails (out of descriptors) is retried at
//!   the next tick: mio is edge-triggered, and connections already queued would otherwise never
//!   be announced again.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{FrameParts, Header, Opcode, PeerId, Status, WireError};

/// Limits on what peers can make one process hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// Queued reply bytes above which a connection's requests are not read.
    pub reply_bytes_per_connection: usize,
    /// Queued reply bytes of every connection of the process above which connections that
    /// hold queued replies are not read.
    pub reply_bytes_total: usize,
    /// Bytes of large incoming frames (partly read, or handed on and not yet dropped) the
    /// process holds at most.
    pub frame_bytes_total: usize,
    /// Connections one listener (event loop) holds at most.
    pub max_connections: usize,
}

impl Default for Budgets {
    /// 64 MiB of replies per connection, 1 GiB in all, 4 GiB of large frames (one frame at
    /// the default size limits fits), and as many connections as the descriptor limit leaves
    /// room for (see [`default_max_connections`]).
    fn default() -> Self {
        Budgets {
            reply_bytes_per_connection: 64 << 20,
            reply_bytes_total: 1 << 30,
            frame_bytes_total: 4 << 30,
            max_connections: default_max_connections(),
        }
    }
}

/// Descriptors kept free for everything that is not a connection (listeners, epoll, files,
/// the refusal of one connection over the limit).
const SPARE_DESCRIPTORS: u64 = 64;
/// The default connection limit never goes above this.
const MAX_DEFAULT_CONNECTIONS: u64 = 65_536;

/// The soft descriptor limit less `SPARE_DESCRIPTORS` (at least 16, at most 65,536), so
/// that a listener refuses connections before the process runs out of descriptors.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if ok { limit.rlim_cur } else { 1024 };
    soft.saturating_sub(SPARE_DESCRIPTORS)
        .clamp(16, MAX_DEFAULT_CONNECTIONS) as usize
}

/// A process's budgets and what is charged against them; cheap to clone (shared), so every
/// event loop of a process (the shards of a server) can share one.
#[derive(Clone, Debug)]
pub struct Budget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: Budgets,
    replies: AtomicUsize,
    frames: AtomicUsize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Budgets::default())
    }
}

impl Budget {
    /// A budget with nothing charged yet.
    pub fn new(limits: Budgets) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                limits,
                replies: AtomicUsize::new(0),
                frames: AtomicUsize::new(0),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Budgets {
        &self.inner.limits
    }

    /// Reply bytes queued on every connection that shares this budget.
    pub fn queued_reply_bytes(&self) -> usize {
        self.inner.replies.load(Ordering::Relaxed)
    }

    /// Bytes of large incoming frames held now.
    pub fn frame_bytes(&self) -> usize {
        self.inner.frames.load(Ordering::Relaxed)
    }

    /// A connection's queue went from `before` to `after` bytes.
    pub(crate) fn replies_changed(&self, before: usize, after: usize) {
        if after > before {
            self.inner
                .replies
                .fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.inner
                .replies
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Whether a connection with `queued` reply bytes must not be read now.
    pub(crate) fn holds_reads(&self, queued: usize) -> bool {
        queued > 0
            && (queued >= self.inner.limits.reply_bytes_per_connection
                || self.queued_reply_bytes() >= self.inner.limits.reply_bytes_total)
    }

    /// Charges `bytes` of a large frame, or says why not.
    pub(crate) fn charge_frame(&self, bytes: usize) -> Result<(), WireError> {
        let limit = self.inner.limits.frame_bytes_total;
        let before = self.inner.frames.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > limit {
            self.inner.frames.fetch_sub(bytes, Ordering::Relaxed);
            return Err(WireError::OverBudget {
                needed: bytes as u64,
                held: before as u64,
                limit: limit as u64,
            });
        }
        Ok(())
    }

    /// Gives back `bytes` charged with [`Budget::charge_frame`].
    pub(crate) fn release_frame(&self, bytes: usize) {
        self.inner.frames.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Bytes of one buffer charged to a budget, given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    charged: Option<(Budget, usize)>,
}

impl Charge {
    /// Charges `total` bytes in all (adding what is not charged yet).
    pub(crate) fn grow_to(&mut self, budget: &Budget, total: usize) -> Result<(), WireError> {
        let held = self.charged.as_ref().map_or(0, |(_, n)| *n);
        if total <= held {
            return Ok(());
        }
        budget.charge_frame(total - held)?;
        self.charged = Some((budget.clone(), total));
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = self.charged.take() {
            budget.release_frame(bytes);
        }
    }
}

/// Connections whose reads wait for their replies to drain.
#[derive(Debug, Default)]
pub(crate) struct HeldReads {
    peers: Vec<PeerId>,
}

impl HeldReads {
    /// `peer` is not read until [`HeldReads::release`] finds it under budget.
    pub(crate) fn hold(&mut self, peer: PeerId) {
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
        }
    }

    /// Moves every held peer that may be read again (or is gone: `queued` says `None`) to
    /// `ready`.
    pub(crate) fn release(
        &mut self,
        budget: &Budget,
        queued: impl Fn(PeerId) -> Option<usize>,
        ready: &mut Vec<PeerId>,
    ) {
        if self.peers.is_empty() {
            return;
        }
        self.peers.retain(|&peer| match queued(peer) {
            Some(q) if budget.holds_reads(q) => true,
            Some(_) => {
                ready.push(peer);
                false
            }
            None => false,
        });
    }
}

/// Refusing connections over the limit, and retrying accepts that failed.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Connections of the listener now open.
    pub(crate) open: usize,
    /// An accept failed (e.g. out of descriptors): try again at the next tick.
    pub(crate) retry: bool,
    refused: u64,
    last_warning: Option<Instant>,
}

/// Refusals over the limit are logged at most this often (with a count).
const WARN_EVERY: Duration = Duration::from_secs(1);

impl Admission {
    /// The next connection to add from `listener`: those over the limit are refused on the
    /// way; `None` once none is waiting or accepting failed (then retried at the next tick).
    pub(crate) fn next(
        &mut self,
        listener: &mio::net::TcpListener,
        budgets: &Budgets,
        metrics: &crate::Metrics,
    ) -> Option<(mio::net::TcpStream, std::net::SocketAddr)> {
        loop {
            match listener.accept() {
                Ok((stream, addr)) if self.open >= budgets.max_connections => {
                    metrics.connection_refused();
                    self.refuse(stream, addr, budgets.max_connections);
                }
                Ok(accepted) => return Some(accepted),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.accept_failed(&e);
                    return None;
                }
            }
        }
    }

    /// Tells a connection over the limit why it is closed (an error frame, best effort: the
    /// socket is new and takes it) and closes it.
    fn refuse(
        &mut self,
        mut stream: mio::net::TcpStream,
        addr: std::net::SocketAddr,
        limit: usize,
    ) {
        self.refused += 1;
        let message = format!("connection limit of {limit} reached; try again later");
        let mut header = Header::new(Opcode::Error);
        header.status = (Status::Busy as u16).into();
        let mut frame = FrameParts::with_extra(header, message.as_bytes());
        frame.finish(true);
        let bytes: Vec<u8> = crate::writer::frame_slices(&frame).concat();
        let _ = stream.write(&bytes);
        let now = Instant::now();
        if self.last_warning.is_none_or(|t| now - t >= WARN_EVERY) {
            self.last_warning = Some(now);
            tracing::warn!(
                "refused connection from {addr}: {message} ({} refused so far)",
                self.refused
            );
        }
    }

    /// An accept failed: say so once per episode and retry at the next tick.
    fn accept_failed(&mut self, e: &std::io::Error) {
        if !self.retry {
            tracing::warn!(
                "accept failed: {e}; retrying every tick ({} connections open)",
                self.open
            );
        }
        self.retry = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Budget {
        Budget::new(Budgets {
            reply_bytes_per_connection: 100,
            reply_bytes_total: 250,
            frame_bytes_total: 1000,
            max_connections: 2,
        })
    }

    #[test]
    fn reads_are_held_per_connection_and_for_the_process() {
        let b = small();
        assert!(!b.holds_reads(0));
        assert!(!b.holds_reads(99));
        assert!(b.holds_reads(100), "at the connection's budget");
        b.replies_changed(0, 260);
        assert!(b.holds_reads(1), "the process is over its budget");
        assert!(
            !b.holds_reads(0),
            "a connection with nothing queued is still read"
        );
        b.replies_changed(260, 10);
        assert_eq!(b.queued_reply_bytes(), 10);
        assert!(!b.holds_reads(10));
    }

    #[test]
    fn frame_charges_are_refused_past_the_budget_and_given_back_on_drop() {
        let b = small();
        let mut first = Charge::default();
        first.grow_to(&b, 600).unwrap();
        first.grow_to(&b, 900).unwrap();
        assert_eq!(b.frame_bytes(), 900);
        let mut second = Charge::default();
        let err = second.grow_to(&b, 200).unwrap_err();
        assert!(err.to_string().contains("1000"), "{err}");
        assert_eq!(b.frame_bytes(), 900, "a refused charge holds nothing");
        drop(first);
        assert_eq!(b.frame_bytes(), 0);
        second.grow_to(&b, 200).unwrap();
        assert_eq!(b.frame_bytes(), 200);
    }

    #[test]
    fn held_peers_are_released_once_under_budget_or_gone() {
        let b = small();
        let mut held = HeldReads::default();
        held.hold(3);
        held.hold(3);
        held.hold(5);
        let mut ready = Vec::new();
        held.release(&b, |p| if p == 3 { Some(150) } else { Some(0) }, &mut ready);
        assert_eq!(ready, vec![5]);
        held.release(&b, |_| None, &mut ready);
        assert_eq!(ready, vec![5], "a closed peer is dropped, not read");
        assert!(held.peers.is_empty());
    }

    #[test]
    fn the_default_connection_limit_leaves_descriptors_spare() {
        let n = default_max_connections();
        assert!((16..=65_536).contains(&n), "{n}");
    }
}
