//! Connecting to the scheduler, which may start after the node that dials it.

use std::time::{Duration, Instant};

use ferrops_net::auth::{self, Identity};
use ferrops_net::{BufferPool, Metrics, NetError, Peer};

use crate::config::ClusterConfig;
use crate::{EngineError, Role};

/// Dials the scheduler every 50 ms until it answers or `cluster.connect_timeout` passes, and
/// authenticates the connection as a node of `role`: returns it with the scheduler's identity.
/// A refused authentication is final (a wrong secret does not get better by retrying).
pub(crate) fn connect_scheduler(
    cluster: &ClusterConfig,
    role: Role,
    pool: BufferPool,
    metrics: Metrics,
) -> Result<(Peer, Identity), EngineError> {
    let started = Instant::now();
    loop {
        let attempt = dial_once(cluster, role, Duration::from_secs(2), &pool, &metrics);
        match attempt {
            Ok((peer, id)) if id.role == Role::Scheduler.wire_index() => return Ok((peer, id)),
            Ok((_, id)) => {
                return Err(EngineError::Config(format!(
                    "{} answered as {:?}, not as the scheduler",
                    cluster.scheduler,
                    Role::from_wire_index(id.role)
                )))
            }
            Err(e) if refused(&e) => return Err(EngineError::Net(e)),
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

/// One attempt: dials the scheduler (within `timeout`) and authenticates as a node of `role`.
pub(crate) fn dial_once(
    cluster: &ClusterConfig,
    role: Role,
    timeout: Duration,
    pool: &BufferPool,
    metrics: &Metrics,
) -> Result<(Peer, Identity), NetError> {
    let creds = cluster.credentials(role, None);
    let mut peer = Peer::connect(
        cluster.scheduler,
        timeout,
        cluster.limits,
        pool.clone(),
        metrics.clone(),
    )?;
    let id = auth::authenticate(&mut peer, &creds, cluster.handshake_timeout)?;
    Ok((peer, id))
}

/// Whether the scheduler refused this node (a wrong secret, say): retrying cannot help, unlike
/// a scheduler that was not ready or a connection that broke.
pub(crate) fn refused(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Auth { source, .. }
            if !matches!(source, auth::AuthError::Closed | auth::AuthError::Timeout(_))
    )
}
