//! The transport's counters (net's [`Metrics`], one per event loop or client driver), read at
//! scrape time: connections, frames and bytes cost the request path nothing more.

use std::sync::Mutex;

use ferrops_net::{Metrics, MetricsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The transports a node runs; locked only to add one and to scrape.
#[derive(Debug, Default)]
pub(super) struct NetCollector {
    tracked: Mutex<Vec<Metrics>>,
}

impl NetCollector {
    pub(super) fn track(&self, metrics: Metrics) {
        self.lock().push(metrics);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Metrics>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn total(&self) -> MetricsSnapshot {
        let mut t = MetricsSnapshot::default();
        for m in self.lock().iter() {
            let s = m.snapshot();
            t.frames_sent += s.frames_sent;
            t.frames_received += s.frames_received;
            t.header_bytes_sent += s.bytes_sent();
            t.header_bytes_received += s.bytes_received();
            t.rejected_frames += s.rejected_frames;
            t.connections_opened += s.connections_opened;
            t.connections_closed += s.connections_closed;
            t.connections_refused += s.connections_refused;
            t.auth_failures += s.auth_failures;
        }
        t
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for NetCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.total();
        let open = t.connections_opened.saturating_sub(t.connections_closed);
        let g = ConstGauge::new(i64::try_from(open).unwrap_or(i64::MAX));
        let help = "Connections of this process open now (accepted or dialed)";
        g.encode(e.encode_descriptor("connections_open", help, None, g.metric_type())?)?;
        let counters = [
            (
                "connections_refused",
                "Connections refused for a listener's connection limit",
                t.connections_refused,
            ),
            (
                "auth_failures",
                "Connections dropped because they failed or never finished the handshake",
                t.auth_failures,
            ),
            (
                "connections_opened",
                "Connections added (accepted or dialed)",
                t.connections_opened,
            ),
            ("frames_sent", "Frames sent", t.frames_sent),
            ("frames_received", "Frames received", t.frames_received),
            (
                "bytes_sent",
                "Bytes sent (headers, keys, values, extra)",
                t.header_bytes_sent,
            ),
            (
                "bytes_received",
                "Bytes received (headers, keys, values, extra)",
                t.header_bytes_received,
            ),
            (
                "rejected_frames",
                "Frames rejected for breaking the wire format",
                t.rejected_frames,
            ),
        ];
        for (name, help, v) in counters {
            counter(&mut e, name, help, v)?;
        }
        Ok(())
    }
}
