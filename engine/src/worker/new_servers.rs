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
    /// use. A server in a chain of the routing that cannot be reached is left for the
    /// scheduler to take for dead: the requests for it fail over like those of any lost server,
    /// and the next routing tries again. One in no chain (a spare that died before this worker
    /// needed it) takes its rank's place without a connection, so that the ranks after it are
    /// dialed; it is dialed again if a later routing puts it in a chain.
    pub(super) fn connect_new_servers(&mut self) {
        let Some(highest) = self.routing.ranges.iter().map(|r| r.server).max() else {
            return;
        };
        for rank in 0..self.io.num_servers() as u32 {
            if self.io.is_absent(rank) && self.in_a_chain(rank) {
                self.dial(rank, true);
            }
        }
        while self.io.num_servers() as u32 <= highest {
            let rank = self.io.num_servers() as u32;
            if self.dial(rank, false) || self.io.num_servers() as u32 > rank {
                continue; // connected (a failed Hello fails over like a lost server)
            }
            if self.in_a_chain(rank) {
                return;
            }
            self.io.add_absent_server();
        }
    }

    /// Whether the routing in use puts server `rank` in a range's chain.
    fn in_a_chain(&self, rank: u32) -> bool {
        self.routing.ranges.iter().any(|r| r.chain.contains(&rank))
    }

    /// Dials server `rank` (into its absent place when `again`); whether it is connected.
    fn dial(&mut self, rank: u32, again: bool) -> bool {
        let Some(addr) = self.routing.server_addrs.get(rank as usize) else {
            return false;
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
        let dialed = match again {
            false => self.io.add_server(to, &d.options, &d.dialer, pool, &hello),
            true => self
                .io
                .redial_server(to, &d.options, &d.dialer, pool, &hello),
        };
        if let Err(e) = dialed {
            tracing::warn!("cannot connect to server {rank} at {addr}: {e}");
            return false;
        }
        tracing::info!("connected to server {rank} at {addr}, which joined the job");
        true
    }
}
