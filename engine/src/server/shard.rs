//! The server's threads: one shard per configured shard count, each an event loop on its own
//! thread, pinned to the NIC's NUMA node, with its own listener, key range and tables; and
//! what one shard does from start (listen, register) to its report.

use std::net::SocketAddr;

use ferrops_net::{Budget, EventLoop, Metrics};

use super::admission::register;
use super::report::{log_report, ServerReport};
use super::Server;
use crate::config::ServerConfig;
use crate::connect::connect_scheduler;
use crate::liveness::Heartbeat;
use crate::metrics::NodeMetrics;
use crate::{EngineError, Role};

/// Runs a server until the scheduler shuts the job down (Ok) or is lost (Err): one shard per
/// `cfg.cluster.server_shards`, each a run-to-completion event loop on its own thread with its
/// own listener, key range and tables (nothing shared, so no locks and no queue hop between the
/// thread that reads a frame and the one that owns its keys), pinned to the configured NUMA
/// node. With a fixed listen port, shard i listens on port + i.
pub fn run_server(cfg: &ServerConfig) -> Result<ServerReport, EngineError> {
    cfg.cluster.warn_if_insecure(Role::Server);
    let mut cfg = cfg.clone();
    if cfg.memory.numa_node.is_none() {
        cfg.memory.numa_node = nic_node(cfg.bind.ip());
    }
    let cfg = &cfg;
    // One budget for the process: every shard's connections count against it.
    let budget = Budget::new(cfg.cluster.budgets);
    // One set of metrics for the process: shards add to the same series (or label theirs).
    let metrics = NodeMetrics::new(Role::Server);
    let _endpoint = metrics.serve_if(cfg.cluster.metrics_addr)?;
    let shards = cfg.cluster.server_shards.max(1);
    if shards == 1 {
        pin_to_node(cfg.memory.numa_node)?;
        return run_shard(cfg, budget, &metrics, 0);
    }
    let handles: Vec<_> = (0..shards)
        .map(|i| {
            let mut shard = cfg.clone();
            let budget = budget.clone();
            let metrics = metrics.clone();
            if shard.bind.port() != 0 {
                shard.bind.set_port(shard.bind.port() + i as u16);
            }
            shard.cluster.rank = cfg.cluster.rank.map(|r| r * shards as u32 + i as u32);
            std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    pin_to_node(shard.memory.numa_node)?;
                    run_shard(&shard, budget, &metrics, i)
                })
                .map_err(|e| EngineError::Config(format!("cannot start shard {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut total = ServerReport::default();
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => total.merge(r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(EngineError::Config("a shard thread panicked".into()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// The NUMA node nearest the NIC that carries `ip`, when the machine has more than one node
/// and the address names one NIC (not a wildcard or loopback).
fn nic_node(ip: std::net::IpAddr) -> Option<usize> {
    let nic = ferrops_net::netdev::interface_of(ip)?;
    match crate::memory::node_of_netdev(&nic) {
        Ok(Some(node)) => {
            tracing::info!("serving on {nic}: memory and shards go to its NUMA node {node}");
            Some(node)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot tell the NUMA node of {nic}: {e}");
            None
        }
    }
}

fn pin_to_node(node: Option<usize>) -> Result<(), EngineError> {
    match node {
        Some(n) => crate::memory::pin_current_thread_to_node(n)
            .map_err(|e| EngineError::Config(format!("cannot pin to NUMA node {n}: {e}"))),
        None => Ok(()),
    }
}

/// Runs one shard: an event loop serving its own key range.
fn run_shard(
    cfg: &ServerConfig,
    budget: Budget,
    node_metrics: &NodeMetrics,
    shard: usize,
) -> Result<ServerReport, EngineError> {
    let metrics = Metrics::new();
    node_metrics.track_net(&metrics);
    let creds = cfg.cluster.credentials(Role::Server, None);
    let limits = cfg.cluster.limits;
    let mut ev = EventLoop::with_budget(Some(cfg.bind), limits, metrics.clone(), creds, budget)?;
    ev.set_payload_crc(cfg.cluster.payload_checksum);
    ev.set_busy_poll(cfg.cluster.busy_poll);
    ev.set_handshake_timeout(cfg.cluster.handshake_timeout);
    let liveness = &cfg.cluster.liveness;
    let mut tick = crate::liveness::tick(liveness);
    if cfg.cluster.replication_mode == crate::config::ReplicationMode::Aggregated {
        // A batch waits at most the aggregation window; the loop must wake to send it.
        tick = tick.min(super::AGGREGATION_WINDOW);
    }
    ev.set_tick(tick);
    let (mut peer, identity) = connect_scheduler(
        &cfg.cluster,
        Role::Server,
        ev.pool().clone(),
        metrics.clone(),
    )?;
    let to_scheduler = peer.share_writes(liveness.heartbeat_timeout)?;
    let scheduler = ev.adopt(peer, identity)?;
    let listen = ev
        .local_addr()
        .ok_or_else(|| EngineError::Config("no listen address".into()))?;
    let advertised = advertised_addr(listen, ev.local_addr_of(scheduler));
    let rdma_addr = crate::transport::listen_rdma(&mut ev, &cfg.cluster, cfg.bind, listen)?;
    crate::transport::listen_shm(&mut ev, &cfg.cluster, advertised)?;
    register(&mut ev, scheduler, advertised, rdma_addr, cfg.cluster.rank)?;
    let heartbeat = Heartbeat::start(
        to_scheduler,
        liveness.heartbeat_interval,
        cfg.cluster.payload_checksum,
    )?;
    let meters = super::ServerMeters::new(node_metrics, shard);
    let rejoin = super::rejoin::Rejoining {
        cluster: cfg.cluster.clone(),
        pool: ev.pool().clone(),
        metrics: metrics.clone(),
        addr: advertised.to_string(),
        rdma_addr: rdma_addr.map(|a| a.to_string()),
        heartbeat: Some(heartbeat),
        job_size: (0, 0),
        lost_workers: Vec::new(),
        outage: None,
    };
    let mut server = Server::new(cfg, scheduler, meters, rejoin);
    let ran = ev.run(&mut server);
    // Connections first: RDMA ones hold registrations of the tables' segments.
    drop(ev);
    server.rejoin.heartbeat = None;
    ran?;
    server.report.net = metrics.snapshot();
    server.report.tables = server
        .tables
        .values()
        .map(|t| (t.spec().name.clone(), t.memory()))
        .collect();
    server.report.contents = server
        .tables
        .iter()
        .filter(|_| cfg.digest_on_exit)
        .map(|(&(_, range), t)| super::RangeContents {
            table: t.spec().name.clone(),
            range,
            keys: t.len() as u64,
            digest: t.digest(),
        })
        .collect();
    server.report.resident_bytes = crate::memory::accounting::resident_set_bytes().unwrap_or(0);
    log_report(&server.report, server.rank);
    match server.stop.take() {
        Some(Err(e)) => Err(e),
        _ => Ok(server.report),
    }
}

/// The address workers should dial: the listen address, or, when it is a wildcard, the local
/// address of our connection to the scheduler with the listen port.
fn advertised_addr(listen: SocketAddr, towards_scheduler: Option<SocketAddr>) -> SocketAddr {
    match towards_scheduler {
        Some(local) if listen.ip().is_unspecified() => SocketAddr::new(local.ip(), listen.port()),
        _ => listen,
    }
}
