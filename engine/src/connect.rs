//! Connecting to the scheduler, which may start after the node that dials it.

use std::time::{Duration, Instant};

use ferrops_net::{BufferPool, Metrics, Peer};

use crate::config::ClusterConfig;
use crate::EngineError;

/// Dials the scheduler every 50 ms until it answers or `cluster.connect_timeout` passes.
pub(crate) fn connect_scheduler(
    cluster: &ClusterConfig,
    pool: BufferPool,
    metrics: Metrics,
) -> Result<Peer, EngineError> {
    let started = Instant::now();
    loop {
        let attempt = Peer::connect(
            cluster.scheduler,
            Duration::from_secs(2),
            cluster.limits,
            pool.clone(),
            metrics.clone(),
        );
        match attempt {
            Ok(peer) => return Ok(peer),
            Err(e) if started.elapsed() >= cluster.connect_timeout => {
                return Err(EngineError::SchedulerUnreachable {
                    addr: cluster.scheduler.to_string(),
                    secs: cluster.connect_timeout.as_secs(),
                    reason: e.to_string(),
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
