//! Servers that join the job after this worker connected: a spare that took a copy of a range
//! and then became its head (its chain's head died). When a routing names a head this worker
//! has no connection to, it connects to every server up to that rank (connections are
//! numbered by rank; a rank that cannot be dialed keeps its place, unconnected, and is dialed
//! again once a routing makes it a head) and says, in its `Hello`, how many clocks it has
//! completed, so that the new server counts this worker's clocks from where they are.

use ferrops_net::client::{DialOptions, Dialer, ServerAddrs};
use ferrops_net::BufferPool;

use super::State;
use crate::control::Control;

/// What it takes to dial one more server.
pub(super) struct Dialing {
    pub(super) dialer: Dialer,
    pub(super) options: DialOptions,
    pub(super) pool: BufferPool,
    /// The worker's `Hello`, sent with its clock at the time.
    pub(super) hello: Control,
}

impl State {
    /// Connects to the servers up to the highest rank that heads a range in the routing in
    /// use, and again to a head that could not be reached before. A server that cannot be
    /// reached takes its rank's place unconnected — the ranks after it are still dialed — and
    /// is left for the scheduler to take for dead: the requests for it fail over like those of
    /// any lost server.
    pub(super) fn connect_new_servers(&mut self) {
        let Some(highest) = self.routing.ranges.iter().map(|r| r.server).max() else {
            return;
        };
        for rank in 0..=highest {
            let known = (rank as usize) < self.io.num_servers();
            let heads = self.routing.ranges.iter().any(|r| r.server == rank);
            let lost = self.io.link(rank).is_none() || self.io.inbound.dead.contains(&rank);
            if known && !(heads && lost) {
                continue;
            }
            let Some(addr) = self.routing.server_addrs.get(rank as usize) else {
                return;
            };
            let rdma = self
                .routing
                .ranges
                .iter()
                .find(|r| r.server == rank)
                .and_then(|r| r.rdma_addr.clone());
            let to = ServerAddrs {
                server: rank,
                tcp: addr,
                rdma: rdma.as_deref(),
            };
            let mut hello = self.dialing.hello.clone();
            if let Control::Hello { clock, .. } = &mut hello {
                *clock = self.clock;
            }
            let d = &self.dialing;
            let pool = d.pool.clone();
            let dialed = match known {
                true => self
                    .io
                    .redial_server(rank, to, (&d.options, &d.dialer), pool, &hello),
                false => self.io.add_server(to, &d.options, &d.dialer, pool, &hello),
            };
            match dialed {
                Ok(()) => {
                    tracing::info!("connected to server {rank} at {addr}, which joined the job")
                }
                Err(e) => {
                    tracing::warn!("cannot connect to server {rank} at {addr}: {e}");
                    // A dial that failed takes no place; one whose `Hello` failed holds its own.
                    if self.io.num_servers() as u32 == rank {
                        self.io.add_unreachable_server();
                    }
                }
            }
        }
    }
}
