//! Dialing a server: over RDMA when both ends can, over TCP otherwise.
//!
//! A server that can use RDMA listens on both transports and advertises both addresses. A
//! client dials the RDMA address when it may use RDMA itself ([`TransportMode`], resolved once
//! per [`Dialer`]) and the server offers one, and the TCP address otherwise: so a job may mix
//! nodes with and without RDMA. `TransportMode::Rdma` turns every fallback into an error.
//!
//! A server whose TCP address is one of this host's is dialed through shared memory (the
//! listener named after that address, [`crate::shm`]) first: with `TransportMode::Shm` that
//! dial must succeed (the server runs with `shm` too); with `Auto` a server that does not
//! listen for it (it runs with `tcp` or `rdma`), or a shared-memory connection that fails, is
//! dialed as below instead. Servers on other hosts are dialed as below.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::{self, Credentials};
use crate::shm::ShmError;
use crate::transport::{resolve, RdmaRequired};
use crate::{BufferPool, FrameLimits, Link, Metrics, NetError, Peer, TransportMode};

/// Where one server listens, as the routing table names it.
#[derive(Clone, Copy, Debug)]
pub struct ServerAddrs<'a> {
    /// The server's rank (for messages).
    pub server: u32,
    /// Its TCP address, `ip:port`.
    pub tcp: &'a str,
    /// Its RDMA (rdma_cm) address, when it offers one.
    pub rdma: Option<&'a str>,
}

/// How connections are set up.
#[derive(Clone, Debug)]
pub struct DialOptions {
    /// What this client proves and checks in the handshake.
    pub credentials: Credentials,
    /// The role (its wire index) a server must prove it has.
    pub server_role: u8,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// The frame limits of the new connection.
    pub limits: FrameLimits,
    /// How long an RDMA connection polls its completion queue before it sleeps.
    pub rdma_busy_poll: Duration,
}

/// Why a server could not be dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The addresses or the transport setting do not allow a connection.
    #[error("{0}")]
    Config(String),
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// Why a server is not reached through shared memory.
#[derive(Debug)]
enum ShmFallback {
    /// It is on another host.
    NotLocal,
    /// Nothing listens for its shared-memory connections (it runs with `tcp` or `rdma`).
    NotOffered(ShmError),
    /// The connection or its authentication failed.
    Failed(DialError),
}

impl From<ShmFallback> for DialError {
    fn from(why: ShmFallback) -> DialError {
        match why {
            ShmFallback::Failed(e) => e,
            ShmFallback::NotLocal => DialError::Config("the server is not on this host".into()),
            ShmFallback::NotOffered(e) => DialError::Net(e.into()),
        }
    }
}

/// What a client uses to reach its servers: whether it may use RDMA at all (decided once).
#[derive(Clone, Copy, Debug)]
pub struct Dialer {
    mode: TransportMode,
    rdma: bool,
}

impl Dialer {
    /// Resolves `mode` on this machine (see [`resolve`]).
    pub fn new(mode: TransportMode) -> Result<Dialer, RdmaRequired> {
        let rdma = resolve(mode)?.is_some();
        Ok(Dialer { mode, rdma })
    }

    /// Connects to `to` (over RDMA when both ends can, otherwise TCP) and authenticates the
    /// connection: the server must prove it holds the cluster secret and is a server.
    pub fn connect(
        &self,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<Link, DialError> {
        let parse = |text: &str| -> Result<SocketAddr, DialError> {
            text.parse().map_err(|e| {
                DialError::Config(format!(
                    "server {} has a bad address {text}: {e}",
                    to.server
                ))
            })
        };
        if matches!(self.mode, TransportMode::Shm | TransportMode::Auto) {
            let addr = parse(to.tcp)?;
            match self.dial_shm(addr, to, options, pool.clone(), metrics.clone()) {
                Ok(link) => return Ok(link),
                Err(ShmFallback::NotLocal) => {}
                Err(why) if self.mode == TransportMode::Shm => return Err(why.into()),
                Err(ShmFallback::NotOffered(_)) => tracing::info!(
                    "server {} at {addr} offers no shared memory (it runs with --transport \
                     tcp or rdma): not using it",
                    to.server
                ),
                Err(ShmFallback::Failed(e)) => tracing::warn!(
                    "server {} at {addr}: shared-memory connection failed ({e}); using {}",
                    to.server,
                    if self.rdma && to.rdma.is_some() {
                        "RDMA"
                    } else {
                        "TCP"
                    }
                ),
            }
        }
        if self.rdma {
            match to.rdma {
                Some(rdma) => {
                    let addr = parse(rdma)?;
                    match dial_rdma(addr, options, pool.clone(), metrics.clone()) {
                        Ok(link) => return authenticated(link, to, options),
                        Err(e) if self.mode == TransportMode::Rdma => return Err(e),
                        Err(e) => tracing::warn!(
                            "server {}: RDMA connection to {addr} failed ({e}); using TCP",
                            to.server
                        ),
                    }
                }
                None if self.mode == TransportMode::Rdma => {
                    return Err(DialError::Config(format!(
                        "--transport rdma was asked for, but server {} offers no RDMA address \
                         (it runs without an RDMA device or with --transport tcp)",
                        to.server
                    )))
                }
                None => tracing::info!(
                    "server {} offers no RDMA address: using TCP to it",
                    to.server
                ),
            }
        }
        let addr = parse(to.tcp)?;
        let peer = Peer::connect(addr, options.connect_timeout, options.limits, pool, metrics)?;
        authenticated(Link::Tcp(peer), to, options)
    }

    /// Connects to the server at `addr` through shared memory when it runs on this host and
    /// listens for it, and authenticates the connection.
    fn dial_shm(
        &self,
        addr: SocketAddr,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        pool: BufferPool,
        metrics: Metrics,
    ) -> Result<Link, ShmFallback> {
        if !crate::shm::is_local(addr.ip()) {
            tracing::info!(
                "server {} at {addr} is on another host: not using shared memory to it",
                to.server
            );
            return Err(ShmFallback::NotLocal);
        }
        let conn = crate::shm::ShmConn::connect(
            addr,
            crate::shm::DEFAULT_RING,
            options.connect_timeout,
            options.limits,
            pool,
            metrics,
        );
        let refused = |e: &ShmError| {
            matches!(e, ShmError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused)
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) if refused(&e) => return Err(ShmFallback::NotOffered(e)),
            Err(e) => return Err(ShmFallback::Failed(NetError::from(e).into())),
        };
        let link = authenticated(conn.into(), to, options).map_err(ShmFallback::Failed)?;
        tracing::info!("server {} at {addr}: through shared memory", to.server);
        Ok(link)
    }
}

/// `link` once the server at its other end has proved it holds the cluster secret and is a
/// server (an authentication failure is final: it does not fall back to another transport).
fn authenticated(
    mut link: Link,
    to: ServerAddrs<'_>,
    options: &DialOptions,
) -> Result<Link, DialError> {
    let identity = auth::authenticate(
        &mut link,
        &options.credentials,
        auth::DEFAULT_HANDSHAKE_TIMEOUT,
    )?;
    if identity.role != options.server_role {
        return Err(DialError::Config(format!(
            "server {} at {} authenticated as role {} (node {}), not as a server",
            to.server, to.tcp, identity.role, identity.node
        )));
    }
    Ok(link)
}

#[cfg(feature = "rdma")]
fn dial_rdma(
    addr: SocketAddr,
    options: &DialOptions,
    pool: BufferPool,
    metrics: Metrics,
) -> Result<Link, DialError> {
    let mut conn = crate::rdma::RdmaConn::connect_with(addr, options.limits, pool, metrics)
        .map_err(NetError::from)?;
    conn.set_busy_poll(options.rdma_busy_poll);
    Ok(conn.into())
}

#[cfg(not(feature = "rdma"))]
fn dial_rdma(_: SocketAddr, _: &DialOptions, _: BufferPool, _: Metrics) -> Result<Link, DialError> {
    Err(DialError::Config("built without RDMA support".into()))
}
