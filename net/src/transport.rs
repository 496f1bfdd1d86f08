//! Which transport a node uses for worker↔server data: `--transport auto|rdma|tcp|shm`.
//!
//! `auto` uses shared memory ([`crate::shm`]) to a server on the same host that listens for
//! it, and for the others RDMA when a verbs device with an active port exists and TCP
//! otherwise; `rdma` insists (an error names why RDMA is unavailable); `tcp` never looks.
//! `shm` insists on shared memory to every server on the same host and uses TCP to servers
//! elsewhere. A server with `auto` or `shm` also listens for shared-memory connections. The
//! RDMA choice is made per process and logged once; the shared-memory one per server, by the
//! dialer. The scheduler connections are always TCP (control traffic).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::OnceLock;

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportMode {
    /// Shared memory to servers on this host that offer it; to the others RDMA where a
    /// device with an active port exists, TCP elsewhere.
    #[default]
    Auto,
    /// RDMA or fail.
    Rdma,
    /// TCP only.
    Tcp,
    /// Shared memory to servers on this host, TCP to the others.
    Shm,
}

impl FromStr for TransportMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TransportMode::Auto),
            "rdma" => Ok(TransportMode::Rdma),
            "tcp" => Ok(TransportMode::Tcp),
            "shm" => Ok(TransportMode::Shm),
            other => Err(format!(
                "unknown transport `{other}` (expected auto, rdma, tcp or shm)"
            )),
        }
    }
}

impl fmt::Display for TransportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportMode::Auto => "auto",
            TransportMode::Rdma => "rdma",
            TransportMode::Tcp => "tcp",
            TransportMode::Shm => "shm",
        })
    }
}

/// The RDMA device a node uses, and the address of the interface under it (RoCE carries
/// rdma_cm addresses on that interface; loopback cannot carry RDMA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdmaEndpoint {
    pub device: String,
    pub ipv4: Option<Ipv4Addr>,
}

/// `--transport rdma` on a node that cannot use RDMA.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--transport rdma was asked for, but {reason}")]
pub struct RdmaRequired {
    pub reason: String,
}

/// Resolves `mode` on this machine: `Ok(Some(device))` to use RDMA, `Ok(None)` for TCP (or
/// shared memory, which needs no device).
/// The decision of `auto` is logged once per process.
pub fn resolve(mode: TransportMode) -> Result<Option<RdmaEndpoint>, RdmaRequired> {
    match mode {
        TransportMode::Tcp | TransportMode::Shm => Ok(None),
        TransportMode::Rdma => probe().map(Some).map_err(|reason| RdmaRequired { reason }),
        TransportMode::Auto => {
            static LOGGED: OnceLock<()> = OnceLock::new();
            let found = probe();
            LOGGED.get_or_init(|| match &found {
                Ok(dev) => tracing::info!(
                    "transport auto: using RDMA on {} ({})",
                    dev.device,
                    dev.ipv4
                        .map_or("no IPv4 address".into(), |ip| ip.to_string())
                ),
                Err(reason) => tracing::info!("transport auto: using TCP ({reason})"),
            });
            Ok(found.ok())
        }
    }
}

#[cfg(feature = "rdma")]
fn probe() -> Result<RdmaEndpoint, String> {
    let dev = crate::rdma::available().map_err(|u| u.reason)?;
    // InfiniBand ports have no Ethernet interface under them (IPoIB addresses are set by the
    // operator): then the server must be given an address to bind (`--bind IP:PORT`).
    let ipv4 = crate::rdma::device_ipv4(&dev.name);
    Ok(RdmaEndpoint {
        device: dev.name,
        ipv4,
    })
}

#[cfg(not(feature = "rdma"))]
fn probe() -> Result<RdmaEndpoint, String> {
    Err("this build has no RDMA support (feature `rdma` is off)".into())
}

/// Starts `ev`'s RDMA listener on `addr` and returns the address it listens on; an error in a
/// build without RDMA support.
pub fn listen_rdma(
    ev: &mut crate::EventLoop,
    addr: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, crate::NetError> {
    #[cfg(feature = "rdma")]
    {
        ev.listen_rdma(addr)
    }
    #[cfg(not(feature = "rdma"))]
    {
        let _ = (ev, addr);
        Err(crate::NetError::Rdma("built without RDMA support".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_modes_and_rejects_others() {
        assert_eq!("auto".parse(), Ok(TransportMode::Auto));
        assert_eq!(" RDMA ".parse(), Ok(TransportMode::Rdma));
        assert_eq!("tcp".parse(), Ok(TransportMode::Tcp));
        assert_eq!("Shm".parse(), Ok(TransportMode::Shm));
        let err = "udp".parse::<TransportMode>().unwrap_err();
        assert!(
            err.contains("udp") && err.contains("auto, rdma, tcp or shm"),
            "{err}"
        );
        assert_eq!(TransportMode::Rdma.to_string(), "rdma");
        assert_eq!(TransportMode::Shm.to_string(), "shm");
    }

    #[test]
    fn tcp_never_probes_and_rdma_agrees_with_auto() {
        assert_eq!(resolve(TransportMode::Tcp), Ok(None));
        assert_eq!(resolve(TransportMode::Shm), Ok(None));
        let auto = resolve(TransportMode::Auto).unwrap();
        match resolve(TransportMode::Rdma) {
            Ok(dev) => assert_eq!(auto, dev),
            Err(e) => {
                assert_eq!(auto, None);
                assert!(e.to_string().starts_with("--transport rdma was asked for"));
            }
        }
    }
}
