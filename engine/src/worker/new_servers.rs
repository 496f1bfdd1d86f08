//! Servers that join the job after this worker connected: a spare that took a copy of a range
//! and then became its head (its chain's head died). When a routing names a head this worker
//! has no connection to, it connects to every server up to that rank (connections are
//! numbered by rank) and says, in its `Hello`, how many clocks it has completed, so that the
//! new server counts this worker's clocks from where they are.

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
    /// use. A server that cannot be reached is left for the scheduler to take for dead: the
    /// requests for it fail over like those of any lost server.
    pub(super) fn connect_new_servers(&mut self) {
        let Some(highest) = self.routing.ranges.iter().map(|r| r.server).max() else {
            return;
        };
        while self.io.num_servers() as u32 <= highest {
            let rank = self.io.num_servers() as u32;
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
            if let Err(e) = self.io.add_server(to, &d.options, &d.dialer, pool, &hello) {
                tracing::warn!("cannot connect to server {rank} at {addr}: {e}");
                return;
            }
            tracing::info!("connected to server {rank} at {addr}, which joined the job");
        }
    }
}
