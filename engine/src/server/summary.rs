//! What a server tells the scheduler when asked (`Control::Summarize`): the clocks it counts
//! for each live worker (the scheduler sets a joining worker's start clock from them) and the
//! keys and bytes of each table in the ranges it heads (for `ferrops ctl status`).

use std::collections::BTreeMap;

use ferrops_net::Io;

use super::Server;
use crate::control::status::{ServerSummary, TableHeld};
use crate::control::{reply_control, Control};

impl Server {
    /// Answers the scheduler's `Summarize { id }`.
    pub(super) fn summarize(&self, id: u64, io: &mut Io<'_>) {
        let mut held: BTreeMap<u32, TableHeld> = BTreeMap::new();
        for (&(table, range), store) in &self.tables {
            let heads = self
                .routing
                .ranges
                .get(range as usize)
                .is_some_and(|r| Some(r.server) == self.rank);
            if !heads {
                continue;
            }
            let memory = store.memory();
            let entry = held.entry(table).or_insert_with(|| TableHeld {
                table,
                ..TableHeld::default()
            });
            entry.keys += memory.keys;
            entry.bytes += memory.values_bytes + memory.state_bytes;
        }
        let summary = ServerSummary {
            clocks: self.clocks.live_clocks(),
            tables: held.into_values().collect(),
        };
        reply_control(io, self.scheduler, &Control::Summary { id, summary });
    }

    /// A worker joined the running job: its clocks count from `start_clock` on.
    pub(super) fn worker_joined(&mut self, node_id: u32, start_clock: u32) {
        tracing::info!("worker node {node_id} joins at clock {start_clock}");
        self.clocks.join(node_id, start_clock);
    }
}
