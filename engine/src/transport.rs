//! Which transport each worker↔server connection uses (see [`TransportMode`]), in the terms
//! of the engine's configuration: the policy of where a server listens for RDMA, and the
//! options a worker dials its servers with (the dialing itself is `ferrops_net::client`).
//!
//! A server that can use RDMA listens on both TCP and RDMA and registers both addresses with
//! the scheduler; the routing table carries them. A worker dials a server's RDMA address when
//! it can use RDMA itself and the server offers it, and its TCP address otherwise: so a job
//! may mix nodes with and without RDMA. `transport = rdma` turns every fallback into an error.
//! With `transport = shm` or `auto` a server also listens for shared-memory connections, and
//! a worker reaches the servers on its own host through shared memory: under `shm` it must,
//! under `auto` only those servers that listen for it (the others over RDMA or TCP).

use std::net::{IpAddr, SocketAddr};

use ferrops_net::client::{DialError, DialOptions, Dialer};
use ferrops_net::transport::resolve;
use ferrops_net::{EventLoop, TransportMode};

use crate::config::ClusterConfig;
use crate::{EngineError, Role};

/// Starts the RDMA listener of a server shard when the transport calls for it; returns the
/// address to advertise. The listener uses the TCP listener's port number (rdma_cm ports are
/// their own space) on the bind address, or on the RDMA interface's address when the server
/// binds a wildcard or loopback address (loopback cannot carry RDMA).
pub(crate) fn listen_rdma(
    ev: &mut EventLoop,
    cluster: &ClusterConfig,
    bind: SocketAddr,
    listen: SocketAddr,
) -> Result<Option<SocketAddr>, EngineError> {
    let mode = cluster.transport;
    let Some(device) = resolve(mode).map_err(|e| EngineError::Config(e.to_string()))? else {
        return Ok(None);
    };
    let ip = match bind.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => device.ipv4,
    };
    let fallback = |why: String| -> Result<Option<SocketAddr>, EngineError> {
        if mode == TransportMode::Rdma {
            return Err(EngineError::Config(why));
        }
        tracing::warn!("{why}; serving over TCP only");
        Ok(None)
    };
    let Some(ip) = ip else {
        return fallback(format!(
            "RDMA device {} has no IPv4 interface address; give the server one with --bind IP:PORT",
            device.device
        ));
    };
    let addr = SocketAddr::new(IpAddr::V4(ip), listen.port());
    match ferrops_net::transport::listen_rdma(ev, addr) {
        Ok(addr) => Ok(Some(addr)),
        Err(e) => fallback(format!("cannot listen for RDMA on {addr}: {e}")),
    }
}

/// Starts the shared-memory listener of a server shard, known to workers as `advertised`,
/// when the transport is `shm` or `auto` (workers on this host then dial it instead of its
/// TCP port; see `ferrops_net::shm`). Under `auto` a listener that cannot start is a warning
/// (workers then use TCP or RDMA); under `shm` it is an error.
pub(crate) fn listen_shm(
    ev: &mut EventLoop,
    cluster: &ClusterConfig,
    advertised: SocketAddr,
) -> Result<(), EngineError> {
    let mode = cluster.transport;
    if !matches!(mode, TransportMode::Shm | TransportMode::Auto) {
        return Ok(());
    }
    match ev.listen_shm(advertised) {
        Ok(name) => {
            tracing::info!("listening for shared-memory connections on @{name}");
            Ok(())
        }
        Err(e) if mode == TransportMode::Auto => {
            tracing::warn!("{e}; workers on this host will use TCP or RDMA");
            Ok(())
        }
        Err(e) => Err(EngineError::Net(e)),
    }
}

/// What a worker uses to reach its servers: whether it may use RDMA at all (decided once).
pub(crate) fn dialer(cluster: &ClusterConfig) -> Result<Dialer, EngineError> {
    Dialer::new(cluster.transport).map_err(|e| EngineError::Config(e.to_string()))
}

/// How the connections of worker `node` to its servers are set up.
pub(crate) fn dial_options(cluster: &ClusterConfig, node: u32) -> DialOptions {
    DialOptions {
        credentials: cluster.credentials(Role::Worker, Some(node)),
        server_role: Role::Server.wire_index(),
        connect_timeout: cluster.connect_timeout,
        limits: cluster.limits,
        rdma_busy_poll: cluster.busy_poll,
    }
}

/// A failed dial in the engine's terms.
pub(crate) fn dial_error(e: DialError) -> EngineError {
    match e {
        DialError::Config(why) => EngineError::Config(why),
        DialError::Net(e) => EngineError::Net(e),
    }
}
