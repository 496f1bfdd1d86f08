//! What a worker measures for its metrics: per server, the handles of each table it sent
//! requests of (looked up once, then bumped); a request's round trip is observed when its reply
//! completes it.

use std::time::Instant;

use crate::metrics::{Families, TableMeters};

/// Which handles a sub-request counts on, and when it was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metered {
    slot: u32,
    push: bool,
    sent: Instant,
}

/// The worker's handles, by server and table.
#[derive(Debug, Default)]
pub(crate) struct WorkerMeters {
    families: Option<Families>,
    per_server: Vec<Vec<(u32, TableMeters)>>,
}

impl WorkerMeters {
    pub fn new(families: Families) -> WorkerMeters {
        WorkerMeters {
            families: Some(families),
            per_server: Vec::new(),
        }
    }

    /// Counts a sub-request of `table` (named `name`) sent to `server` with `value_bytes` of
    /// values; what its completion needs to count it too.
    pub fn sent(
        &mut self,
        (server, table, name): (u32, u32, &str),
        push: bool,
        value_bytes: usize,
    ) -> Option<Metered> {
        let families = self.families.as_ref()?;
        let s = server as usize;
        if self.per_server.len() <= s {
            self.per_server.resize_with(s + 1, Vec::new);
        }
        let tables = &mut self.per_server[s];
        let slot = match tables.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                let meters = families.table_meters(&format!("server-{server}"), name);
                tables.push((table, meters));
                tables.len() - 1
            }
        };
        let m = &tables[slot].1;
        if push {
            m.pushes.inc();
            m.push_bytes.inc_by(value_bytes as u64);
        } else {
            m.pulls.inc();
        }
        Some(Metered {
            slot: slot as u32,
            push,
            sent: Instant::now(),
        })
    }

    /// Counts a sub-request answered by `server` (`value_bytes` of values for a pull).
    pub fn completed(&self, server: u32, metered: &Metered, value_bytes: usize) {
        let Some((_, m)) = self
            .per_server
            .get(server as usize)
            .and_then(|t| t.get(metered.slot as usize))
        else {
            return;
        };
        let took = metered.sent.elapsed();
        if metered.push {
            m.push_latency.observe(took);
        } else {
            m.pull_bytes.inc_by(value_bytes as u64);
            m.pull_latency.observe(took);
        }
    }
}
