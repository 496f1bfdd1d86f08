//! Going on without the scheduler: a node that lost its scheduler connection keeps serving,
//! pushing and pulling by the routing it has, and redials the scheduler's address with backoff
//! (50 ms doubling to 1 s) until one answers — a scheduler restarted with `--recover`, which
//! the node then tells who it is (`Control::Rejoin`) — or until `scheduler_outage` has passed,
//! when it gives up (`EngineError::SchedulerOutage`, naming the setting).

use std::time::{Duration, Instant};

use ferrops_net::auth::Identity;
use ferrops_net::{BufferPool, Metrics, Peer};

use crate::config::ClusterConfig;
use crate::connect::{dial_once, refused};
use crate::{EngineError, Role};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long one dial may take (the node's own thread waits for it).
const DIAL_TIMEOUT: Duration = Duration::from_millis(500);

/// A scheduler outage in progress: since when, and when to dial next.
#[derive(Debug)]
pub(crate) struct Outage {
    since: Instant,
    next_try: Instant,
    backoff: Duration,
    allowed: Duration,
}

impl Outage {
    /// The scheduler was lost now; the node waits for another at most `allowed`.
    pub(crate) fn new(allowed: Duration) -> Outage {
        let now = Instant::now();
        Outage {
            since: now,
            next_try: now,
            backoff: FIRST_BACKOFF,
            allowed,
        }
    }

    /// How long the scheduler has been gone.
    pub(crate) fn down_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// Dials the scheduler if the backoff allows it now: `Ok(Some(..))` with a connection
    /// authenticated as a node of `role` (the first connection's handshake), `Ok(None)` when it
    /// is not time yet or nobody answered, an error once the outage lasted longer than allowed
    /// or the scheduler refused this node (a wrong secret does not get better by retrying).
    pub(crate) fn redial(
        &mut self,
        cluster: &ClusterConfig,
        role: Role,
        pool: &BufferPool,
        metrics: &Metrics,
    ) -> Result<Option<(Peer, Identity)>, EngineError> {
        let now = Instant::now();
        if now.duration_since(self.since) > self.allowed {
            return Err(EngineError::SchedulerOutage {
                down_for: now.duration_since(self.since),
                allowed: self.allowed,
            });
        }
        if now < self.next_try {
            return Ok(None);
        }
        match dial_once(cluster, role, DIAL_TIMEOUT, pool, metrics) {
            Ok((peer, id)) if id.role == Role::Scheduler.wire_index() => Ok(Some((peer, id))),
            Ok(_) => Err(EngineError::Config(format!(
                "{} answered, but not as the scheduler",
                cluster.scheduler
            ))),
            Err(e) if refused(&e) => Err(EngineError::Net(e)),
            Err(e) => {
                tracing::debug!(
                    "the scheduler at {} does not answer yet: {e}",
                    cluster.scheduler
                );
                self.next_try = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_the_outage_allowed() {
        let cluster = ClusterConfig::new("127.0.0.1:9".parse().unwrap(), 1, 1);
        let mut outage = Outage::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        let e = outage
            .redial(&cluster, Role::Worker, &BufferPool::new(), &Metrics::new())
            .unwrap_err();
        assert!(e.to_string().contains("scheduler_outage_ms"), "{e}");
    }
}
