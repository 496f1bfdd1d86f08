//! Byte and frame counters, shared by every connection of a node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one node. Cheap to clone (shared); updated with relaxed atomics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Counters>,
}

/// Declares the counters once: the atomic `Counters` behind [`Metrics`], the plain
/// [`MetricsSnapshot`] with the same fields, and `Counters::snapshot`, which copies each field.
macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        #[derive(Debug, Default)]
        struct Counters {
            $($field: AtomicU64,)*
        }

        /// A point-in-time copy of [`Metrics`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl Counters {
            fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    frames_sent,
    frames_received,
    header_bytes_sent,
    key_bytes_sent,
    value_bytes_sent,
    extra_bytes_sent,
    header_bytes_received,
    key_bytes_received,
    value_bytes_received,
    extra_bytes_received,
    /// Value bytes that were copied on a send or receive path (the zero-copy paths add nothing).
    value_bytes_copied,
    /// RDMA bulk frames sent after a request to send and a clear-to-send (the rendezvous).
    bulk_frames_rendezvous,
    /// RDMA bulk frames written into a region the receiver advertised ahead.
    bulk_frames_landed,
    /// Frames rejected for breaking the wire format.
    rejected_frames,
    /// Connections added to an event loop (accepted or dialed) and removed from one: their
    /// difference is the connections open now.
    connections_opened,
    connections_closed,
    /// Connections a listener refused for its connection limit.
    connections_refused,
    /// Connections dropped because their handshake failed (wrong or missing secret, bad role).
    auth_failures,
}

impl MetricsSnapshot {
    /// All bytes sent, padding excluded.
    pub fn bytes_sent(&self) -> u64 {
        self.header_bytes_sent + self.key_bytes_sent + self.value_bytes_sent + self.extra_bytes_sent
    }

    /// All bytes received, padding excluded.
    pub fn bytes_received(&self) -> u64 {
        self.header_bytes_received
            + self.key_bytes_received
            + self.value_bytes_received
            + self.extra_bytes_received
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub(crate) fn frame_sent(&self, keys: usize, values: usize, extra: usize) {
        let c = &self.inner;
        add(&c.frames_sent, 1);
        add(&c.header_bytes_sent, crate::HEADER_LEN as u64);
        add(&c.key_bytes_sent, keys as u64);
        add(&c.value_bytes_sent, values as u64);
        add(&c.extra_bytes_sent, extra as u64);
    }

    pub(crate) fn frame_received(&self, header: &crate::Header) {
        let c = &self.inner;
        add(&c.frames_received, 1);
        add(&c.header_bytes_received, crate::HEADER_LEN as u64);
        add(&c.key_bytes_received, header.keys_len.get().into());
        add(&c.value_bytes_received, header.values_len.get().into());
        add(&c.extra_bytes_received, header.extra_len.get().into());
    }

    /// Records `n` value bytes copied (gathered for sending or moved between buffers).
    pub fn values_copied(&self, n: usize) {
        add(&self.inner.value_bytes_copied, n as u64);
    }

    /// Records how a bulk frame travelled: into an advertised region, or by the rendezvous.
    #[cfg_attr(not(feature = "rdma"), allow(dead_code))]
    pub(crate) fn bulk_frame_sent(&self, landed: bool) {
        let c = &self.inner;
        add(
            if landed {
                &c.bulk_frames_landed
            } else {
                &c.bulk_frames_rendezvous
            },
            1,
        );
    }

    pub(crate) fn connection_opened(&self) {
        add(&self.inner.connections_opened, 1);
    }

    pub(crate) fn connection_closed(&self) {
        add(&self.inner.connections_closed, 1);
    }

    pub(crate) fn connection_refused(&self) {
        add(&self.inner.connections_refused, 1);
    }

    pub(crate) fn auth_failed(&self) {
        add(&self.inner.auth_failures, 1);
    }

    pub(crate) fn frame_rejected(&self) {
        add(&self.inner.rejected_frames, 1);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.inner.snapshot()
    }
}
