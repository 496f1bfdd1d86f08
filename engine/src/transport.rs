//! Which transport each worker↔server connection uses (see [`TransportMode`]).
//!
//! A server that can use RDMA listens on both TCP and RDMA and registers both addresses with
//! the scheduler; the routing table carries them. A worker dials a server's RDMA address when
//! it can use RDMA itself and the server offers it, and its TCP address otherwise: so a job
//! may mix nodes with and without RDMA. `transport = rdma` turns every fallback into an error.

use std::net::{IpAddr, SocketAddr};

use ferrops_net::transport::resolve;
use ferrops_net::{BufferPool, EventLoop, Link, Metrics, Peer, TransportMode};

use crate::config::ClusterConfig;
use crate::routing::KeyRange;
use crate::EngineError;

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
    match start_listener(ev, addr) {
        Ok(addr) => Ok(Some(addr)),
        Err(e) => fallback(format!("cannot listen for RDMA on {addr}: {e}")),
    }
}

#[cfg(feature = "rdma")]
fn start_listener(ev: &mut EventLoop, addr: SocketAddr) -> Result<SocketAddr, EngineError> {
    Ok(ev.listen_rdma(addr)?)
}

#[cfg(not(feature = "rdma"))]
fn start_listener(_: &mut EventLoop, _: SocketAddr) -> Result<SocketAddr, EngineError> {
    Err(EngineError::Config("built without RDMA support".into()))
}

/// What a worker uses to reach its servers: whether it may use RDMA at all (decided once).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialer {
    mode: TransportMode,
    rdma: bool,
}

impl Dialer {
    pub fn new(cluster: &ClusterConfig) -> Result<Dialer, EngineError> {
        let rdma = resolve(cluster.transport)
            .map_err(|e| EngineError::Config(e.to_string()))?
            .is_some();
        Ok(Dialer {
            mode: cluster.transport,
            rdma,
        })
    }

    /// Connects to the server of `range`: over RDMA when both ends can, otherwise TCP.
    pub fn connect(
        &self,
        range: &KeyRange,
        cluster: &ClusterConfig,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<Link, EngineError> {
        let parse = |text: &str| -> Result<SocketAddr, EngineError> {
            text.parse().map_err(|e| {
                EngineError::Config(format!(
                    "server {} has a bad address {text}: {e}",
                    range.server
                ))
            })
        };
        if self.rdma {
            match &range.rdma_addr {
                Some(rdma) => {
                    let addr = parse(rdma)?;
                    match dial_rdma(addr, cluster, pool.clone(), metrics.clone()) {
                        Ok(link) => return Ok(link),
                        Err(e) if self.mode == TransportMode::Rdma => return Err(e),
                        Err(e) => tracing::warn!(
                            "server {}: RDMA connection to {addr} failed ({e}); using TCP",
                            range.server
                        ),
                    }
                }
                None if self.mode == TransportMode::Rdma => {
                    return Err(EngineError::Config(format!(
                        "--transport rdma was asked for, but server {} offers no RDMA address \
                         (it runs without an RDMA device or with --transport tcp)",
                        range.server
                    )))
                }
                None => tracing::info!(
                    "server {} offers no RDMA address: using TCP to it",
                    range.server
                ),
            }
        }
        let addr = parse(&range.addr)?;
        let peer = Peer::connect(addr, cluster.connect_timeout, cluster.limits, pool, metrics)?;
        Ok(Link::Tcp(peer))
    }
}

#[cfg(feature = "rdma")]
fn dial_rdma(
    addr: SocketAddr,
    cluster: &ClusterConfig,
    pool: BufferPool,
    metrics: Metrics,
) -> Result<Link, EngineError> {
    let mut conn = ferrops_net::rdma::RdmaConn::connect_with(addr, cluster.limits, pool, metrics)
        .map_err(ferrops_net::NetError::from)?;
    conn.set_busy_poll(cluster.rdma_busy_poll);
    Ok(conn.into())
}

#[cfg(not(feature = "rdma"))]
fn dial_rdma(
    _: SocketAddr,
    _: &ClusterConfig,
    _: BufferPool,
    _: Metrics,
) -> Result<Link, EngineError> {
    Err(EngineError::Config("built without RDMA support".into()))
}
