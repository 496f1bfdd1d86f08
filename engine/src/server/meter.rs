//! What a server measures for its metrics: each admitted worker connection carries the handles
//! of the tables it used (looked up once, then bumped), and the tick sets what is not on a
//! request path (parked pulls, clock lag, each table's memory).

use std::collections::BTreeMap;
use std::time::Instant;

use ferrops_net::Opcode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::Server;
use crate::metrics::{Families, NodeMetrics, TableMeters};

/// An admitted worker connection: the node it authenticated as, its name in the metrics and
/// the handles of each table it used.
pub(super) struct Admitted {
    pub(super) node: u32,
    name: String,
    tables: Vec<(u32, TableMeters, u64)>,
}

impl Admitted {
    /// Worker node ids are `WORKER_NODE_BASE + rank`: named by rank, as the scheduler names
    /// them.
    pub(super) fn new(node: u32) -> Admitted {
        let rank = node.checked_sub(crate::role::WORKER_NODE_BASE);
        Admitted {
            node,
            name: rank.map_or_else(|| format!("node-{node}"), |r| format!("worker-{r}")),
            tables: Vec::new(),
        }
    }
}

/// The server's handles that are not per connection.
pub(super) struct ServerMeters {
    families: Families,
    shard: usize,
    key_cache_hits: Counter,
    key_cache_misses: Counter,
    pulls_parked: Counter,
    parked: Gauge,
    clock_lag: Gauge,
    /// `changed_since` filter: rows offered, sent, dropped.
    pub(super) changed: [Counter; 3],
    /// Each table's memory gauges: values, state, key map, resolution cache.
    memory: Vec<(u32, [Gauge; 4])>,
    replication: crate::metrics::LatencyHistogram,
}

impl ServerMeters {
    /// A forwarded push came back acknowledged by the rest of its chain after `lag`.
    pub(super) fn replicated(&self, lag: std::time::Duration) {
        self.replication.observe(lag);
    }

    pub(super) fn new(metrics: &NodeMetrics, shard: usize) -> ServerMeters {
        let f = metrics.families();
        ServerMeters {
            families: f.clone(),
            replication: f.replication_seconds.clone(),
            shard,
            key_cache_hits: f.key_cache_hits.clone(),
            key_cache_misses: f.key_cache_misses.clone(),
            pulls_parked: f.pulls_parked.clone(),
            parked: Families::shard_gauge(&f.parked_pulls, shard),
            clock_lag: Families::shard_gauge(&f.clock_lag, shard),
            changed: ["offered", "sent", "dropped"].map(|o| f.filter("changed_since", o)),
            memory: Vec::new(),
        }
    }

    pub(super) fn key_cache(&self, hit: bool) {
        if hit {
            self.key_cache_hits.inc();
        } else {
            self.key_cache_misses.inc();
        }
    }

    pub(super) fn parked(&self) {
        self.pulls_parked.inc();
    }
}

/// What one push or pull was, taken from its frame before it is handled.
pub(super) struct Measured {
    pub(super) started: Instant,
    pub(super) op: Opcode,
    pub(super) table: u32,
    pub(super) keys: u32,
    pub(super) value_bytes: u32,
}

impl Server {
    /// Counts a handled push or pull on its connection's handles of its table.
    pub(super) fn measure(&mut self, peer: ferrops_net::PeerId, m: &Measured) {
        let Some(conn) = self.workers.get_mut(&peer) else {
            return;
        };
        let meters = match conn.tables.iter().position(|(t, ..)| *t == m.table) {
            Some(i) => &conn.tables[i],
            None => {
                let spec = self.tables.range((m.table, 0)..=(m.table, u32::MAX)).next();
                let Some((_, store)) = spec else {
                    return; // refused: the table is not declared
                };
                let spec = store.spec();
                let meters = self.meters.families.table_meters(&conn.name, &spec.name);
                conn.tables.push((m.table, meters, u64::from(spec.dim)));
                &conn.tables[conn.tables.len() - 1]
            }
        };
        let (t, dim) = (&meters.1, meters.2);
        if m.op == Opcode::Push {
            t.pushes.inc();
            t.push_bytes.inc_by(u64::from(m.value_bytes));
            t.push_latency.observe(m.started.elapsed());
        } else {
            t.pulls.inc();
            t.pull_bytes.inc_by(u64::from(m.keys) * dim * 4);
            t.pull_latency.observe(m.started.elapsed());
        }
    }

    /// Sets what is not counted on a request path: parked pulls, clock lag, tables' memory.
    pub(super) fn refresh_meters(&mut self) {
        let m = &mut self.meters;
        m.parked.set(self.parked.len() as i64);
        m.clock_lag.set(i64::from(self.clocks.lag()));
        // A table's stores of every range this shard holds (head and replica) add up.
        let mut totals: BTreeMap<u32, ([u64; 4], &str)> = BTreeMap::new();
        for (&(id, _), store) in &self.tables {
            let mem = store.memory();
            let bytes = [
                mem.values_bytes,
                mem.state_bytes,
                mem.key_map_bytes,
                mem.resolution_cache_bytes,
            ];
            let total = totals.entry(id).or_insert(([0; 4], &store.spec().name));
            for (t, b) in total.0.iter_mut().zip(bytes) {
                *t += b;
            }
        }
        for (id, (bytes, name)) in totals {
            let i = match m.memory.iter().position(|(t, _)| *t == id) {
                Some(i) => i,
                None => {
                    let gauges = ["values", "state", "key_map", "resolution_cache"]
                        .map(|kind| m.families.table_memory(name, kind, m.shard));
                    m.memory.push((id, gauges));
                    m.memory.len() - 1
                }
            };
            for (g, b) in m.memory[i].1.iter().zip(bytes) {
                g.set(i64::try_from(b).unwrap_or(i64::MAX));
            }
        }
    }
}
