//! The metric families a node exports in Prometheus text format (`ferrops_*`), updated on the
//! request paths without slowing them: handles are looked up once per (connection, table)
//! ([`TableMeters`]) and then only bumped with relaxed atomics; what is not on a request path
//! (memory, clock lag, parked pulls) is set from the event loop's tick, and the transport's own
//! counters are read at scrape time ([`net`]). The endpoint's socket is net's
//! [`ScrapeEndpoint`]; this module names no socket.

mod histogram;
mod net;

use std::net::SocketAddr;
use std::sync::Arc;

use ferrops_net::{RenderMetrics, ScrapeEndpoint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{EngineError, Role};

pub use histogram::LatencyHistogram;

/// Who a request came from or went to, by the scheduler's names (`worker-0`, `server-1`), and
/// its table's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerTable {
    pub peer: String,
    pub table: String,
}

/// A table and a request kind (`push`, `pull`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOp {
    pub table: String,
    pub op: &'static str,
}

/// One shard of a server process.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Shard {
    pub shard: String,
}

/// A table's memory of one kind (`values`, `state`, `key_map`, `resolution_cache`) on a shard.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableMemoryLabels {
    pub table: String,
    pub kind: &'static str,
    pub shard: String,
}

/// Coordinates a filter saw, by what became of them (`offered`, `sent`, `delayed`, `dropped`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FilterLabels {
    pub filter: &'static str,
    pub outcome: &'static str,
}

/// The node's role, as an info series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

/// Every family of a node. Clones share the values.
#[derive(Clone, Debug, Default)]
pub struct Families {
    pub pushes: Family<PeerTable, Counter>,
    pub pulls: Family<PeerTable, Counter>,
    pub push_bytes: Family<PeerTable, Counter>,
    pub pull_bytes: Family<PeerTable, Counter>,
    /// Server: handling time of a request; worker: a request's round trip.
    pub latency: Family<TableOp, LatencyHistogram>,
    pub parked_pulls: Family<Shard, Gauge>,
    pub pulls_parked: Counter,
    pub clock_lag: Family<Shard, Gauge>,
    pub key_cache_hits: Counter,
    pub key_cache_misses: Counter,
    pub filter_coordinates: Family<FilterLabels, Counter>,
    pub table_memory: Family<TableMemoryLabels, Gauge>,
    /// Server: from forwarding an applied push down its range's chain to the chain's ack.
    pub replication_seconds: LatencyHistogram,
    /// Scheduler: server deaths replication covered (a new routing version each).
    pub failovers: Counter,
}

/// The handles of one (connection, table): looked up once, then bumped.
#[derive(Clone, Debug)]
pub struct TableMeters {
    pub pushes: Counter,
    pub pulls: Counter,
    pub push_bytes: Counter,
    pub pull_bytes: Counter,
    pub push_latency: LatencyHistogram,
    pub pull_latency: LatencyHistogram,
}

impl Families {
    /// The handles for requests of `table` to or from `peer` (allocates the labels: call once
    /// per connection and table, not per request).
    pub fn table_meters(&self, peer: &str, table: &str) -> TableMeters {
        let labels = PeerTable {
            peer: peer.to_string(),
            table: table.to_string(),
        };
        let latency = |op| {
            let labels = TableOp {
                table: table.to_string(),
                op,
            };
            self.latency.get_or_create(&labels).clone()
        };
        TableMeters {
            pushes: self.pushes.get_or_create(&labels).clone(),
            pulls: self.pulls.get_or_create(&labels).clone(),
            push_bytes: self.push_bytes.get_or_create(&labels).clone(),
            pull_bytes: self.pull_bytes.get_or_create(&labels).clone(),
            push_latency: latency("push"),
            pull_latency: latency("pull"),
        }
    }

    /// The gauge of `table`'s memory of `kind` on `shard`.
    pub fn table_memory(&self, table: &str, kind: &'static str, shard: usize) -> Gauge {
        let labels = TableMemoryLabels {
            table: table.to_string(),
            kind,
            shard: shard.to_string(),
        };
        self.table_memory.get_or_create(&labels).clone()
    }

    /// A gauge of a per-shard family.
    pub fn shard_gauge(family: &Family<Shard, Gauge>, shard: usize) -> Gauge {
        let labels = Shard {
            shard: shard.to_string(),
        };
        family.get_or_create(&labels).clone()
    }

    /// The counter of a filter's coordinates with `outcome`.
    pub fn filter(&self, filter: &'static str, outcome: &'static str) -> Counter {
        self.filter_coordinates
            .get_or_create(&FilterLabels { filter, outcome })
            .clone()
    }
}

/// A node's metrics: its families, the transport counters it reads at scrape time, and the
/// registry that renders them. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    families: Families,
    registry: Arc<Registry>,
    net: Arc<net::NetCollector>,
}

impl NodeMetrics {
    /// The families of a node of `role`, registered under `ferrops_`.
    pub fn new(role: Role) -> NodeMetrics {
        let families = Families::default();
        let net = Arc::new(net::NetCollector::default());
        let mut r = Registry::with_prefix("ferrops");
        let f = &families;
        let info = Family::<RoleLabel, Gauge>::default();
        info.get_or_create(&RoleLabel { role: role.name() }).set(1);
        r.register("role", "The role this process runs (always 1)", info);
        let (dir, peer) = match role {
            Role::Worker => ("sent", "server"),
            _ => ("received", "worker"),
        };
        r.register(
            "pushes",
            format!("Pushes {dir}, by table and {peer}"),
            f.pushes.clone(),
        );
        r.register(
            "pulls",
            format!("Pulls {dir}, by table and {peer}"),
            f.pulls.clone(),
        );
        r.register(
            "push_bytes",
            format!("Value bytes of pushes {dir} (as on the wire), by table and {peer}"),
            f.push_bytes.clone(),
        );
        r.register(
            "pull_bytes",
            format!("Value bytes pulls answered (uncompressed), by table and {peer}"),
            f.pull_bytes.clone(),
        );
        match role {
            Role::Worker => r.register(
                "round_trip_seconds",
                "Round trip of a request to one server, from sending to its reply",
                f.latency.clone(),
            ),
            _ => r.register(
                "request_seconds",
                "Server-side handling time of a request (a parked pull's wait excluded)",
                f.latency.clone(),
            ),
        }
        if role == Role::Server {
            r.register(
                "parked_pulls",
                "Pulls waiting for slower workers' clocks now, by shard",
                f.parked_pulls.clone(),
            );
            r.register(
                "pulls_parked",
                "Pulls that had to wait for slower workers' clocks",
                f.pulls_parked.clone(),
            );
            r.register(
                "clock_lag",
                "Clocks between the fastest and the slowest live worker, by shard",
                f.clock_lag.clone(),
            );
            r.register(
                "key_cache_hits",
                "Requests whose key list was found in the connection's key cache",
                f.key_cache_hits.clone(),
            );
            r.register(
                "key_cache_misses",
                "Requests naming a key list the connection's key cache did not hold",
                f.key_cache_misses.clone(),
            );
            r.register(
                "filter_coordinates",
                "Coordinates a bandwidth filter saw, by filter and outcome",
                f.filter_coordinates.clone(),
            );
            r.register(
                "table_memory_bytes",
                "Memory held by a table, by kind and shard",
                f.table_memory.clone(),
            );
            r.register(
                "replication_seconds",
                "Replication lag of a push: from forwarding it down its range's chain, once \
                 applied here, to the chain's acknowledgement (R > 1 only)",
                f.replication_seconds.clone(),
            );
        }
        if role == Role::Scheduler {
            r.register(
                "failovers",
                "Server deaths that replication covered: the dead server left every chain, \
                 the next servers took over, a new routing version went out",
                f.failovers.clone(),
            );
        }
        r.register_collector(Box::new(net.clone()));
        NodeMetrics {
            families,
            registry: Arc::new(r),
            net,
        }
    }

    /// The families, to take handles from.
    pub fn families(&self) -> &Families {
        &self.families
    }

    /// Adds a transport's counters (one per event loop or client driver) to what is scraped.
    pub fn track_net(&self, metrics: &ferrops_net::Metrics) {
        self.net.track(metrics.clone());
    }

    /// Everything, in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if let Err(e) = prometheus_client::encoding::text::encode(out, &self.registry) {
            tracing::warn!("cannot render metrics: {e}");
        }
    }

    /// Serves the metrics on `addr` (port 0 picks one) until the returned endpoint is dropped,
    /// and logs where.
    pub fn serve(&self, addr: SocketAddr) -> Result<ScrapeEndpoint, EngineError> {
        let me = self.clone();
        let render: RenderMetrics = Arc::new(move |out: &mut String| me.render(out));
        let endpoint = ScrapeEndpoint::start(addr, render)
            .map_err(|e| EngineError::Config(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!("metrics on http://{}/metrics", endpoint.local_addr());
        Ok(endpoint)
    }

    /// Serves the metrics when `addr` is set.
    pub fn serve_if(
        &self,
        addr: Option<SocketAddr>,
    ) -> Result<Option<ScrapeEndpoint>, EngineError> {
        addr.map(|a| self.serve(a)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_move_the_rendered_series() {
        let m = NodeMetrics::new(Role::Server);
        let meters = m.families().table_meters("worker-0", "emb");
        meters.pushes.inc();
        meters.push_bytes.inc_by(64);
        meters
            .push_latency
            .observe(std::time::Duration::from_micros(30));
        let mut text = String::new();
        m.render(&mut text);
        let series = "ferrops_pushes_total{peer=\"worker-0\",table=\"emb\"} 1";
        assert!(text.contains(series), "{text}");
        assert!(text.contains("ferrops_push_bytes_total{peer=\"worker-0\",table=\"emb\"} 64"));
        let count = "ferrops_request_seconds_count{table=\"emb\",op=\"push\"} 1";
        assert!(text.contains(count), "{text}");
        assert!(text.contains("ferrops_role{role=\"server\"} 1"), "{text}");
        assert!(text.contains("ferrops_connections_open 0"), "{text}");
    }
}
