//! Plain configuration structs for the three roles. The `ferrops` binary fills them from flags,
//! environment and TOML; library users build them directly.

use std::net::SocketAddr;
use std::time::Duration;

use ferrops_net::{FrameLimits, TransportMode};

use crate::memory::{HugePolicy, LockPolicy, SegmentOptions};

/// Settings every role shares.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where the scheduler listens.
    pub scheduler: SocketAddr,
    /// How many servers the job runs.
    pub num_servers: usize,
    /// How many workers the job runs.
    pub num_workers: usize,
    /// Largest frame sections a node accepts from a peer.
    pub limits: FrameLimits,
    /// Cluster secret for the connect-time challenge; `None` is only accepted on loopback.
    pub secret: Option<String>,
    /// How long a node waits for the scheduler before giving up.
    pub connect_timeout: Duration,
    /// Keys of resolved key lists each worker→server connection caches at both ends, so that a
    /// list sent before travels as its signature alone (0 turns key caching off).
    pub key_cache_keys: u64,
    /// Whether frames carry a CRC-32C of their payload (the header is always checked).
    pub payload_checksum: bool,
    /// Whether key lists travel delta + bit packed when that makes them smaller.
    pub key_packing: bool,
    /// Shards per server process: each is a thread with its own listener, key range and
    /// tables, pinned to the server's NUMA node. The routing table has
    /// `num_servers × server_shards` ranges.
    pub server_shards: usize,
    /// Transport between workers and servers (`auto`: RDMA where a device is up, TCP
    /// elsewhere; nodes of one job may differ, a worker uses RDMA with the servers that offer
    /// it). The scheduler is always reached over TCP.
    pub transport: TransportMode,
    /// How long a waiting worker keeps polling its RDMA connections before it sleeps on their
    /// completion channels: latency against a core.
    pub rdma_busy_poll: Duration,
    /// The rank this node asks the scheduler for (`None`: the lowest free one). A launcher
    /// numbering its processes sets it so that its names and the scheduler's agree; shard i of
    /// a server asking for rank r gets rank `r × server_shards + i`.
    pub rank: Option<u32>,
}

impl ClusterConfig {
    /// Key ranges in the job: one per shard of every server.
    pub fn total_shards(&self) -> usize {
        self.num_servers * self.server_shards.max(1)
    }
}

impl ClusterConfig {
    /// A configuration for a cluster whose scheduler listens at `scheduler`.
    pub fn new(scheduler: SocketAddr, num_servers: usize, num_workers: usize) -> Self {
        Self {
            scheduler,
            num_servers,
            num_workers,
            limits: FrameLimits::default(),
            secret: None,
            connect_timeout: Duration::from_secs(30),
            key_cache_keys: 1 << 24,
            payload_checksum: true,
            key_packing: true,
            server_shards: 1,
            transport: TransportMode::Auto,
            rdma_busy_poll: Duration::from_micros(500),
            rank: None,
        }
    }
}

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub cluster: ClusterConfig,
    /// Address to listen on (port 0 picks a free port; the chosen address is reported).
    pub bind: SocketAddr,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub cluster: ClusterConfig,
    /// Address to listen on for workers (port 0 picks a free port).
    pub bind: SocketAddr,
    /// How parameter memory is provided (locking, hugepages, NUMA node).
    pub memory: SegmentOptions,
    /// Address space reserved per value or state array of a table (memory is committed only as
    /// keys arrive; this bounds how large one table may grow on one server).
    pub table_capacity_bytes: usize,
    /// At most this many keys of key lists cached per worker connection, whatever the worker
    /// asks for (`None`: what it asks). A server that holds less than its worker assumes
    /// answers a signature it lost with `KeysUnknown`; the worker then forgets that list and
    /// sends the keys again: slower, never wrong.
    pub key_cache_cap_keys: Option<u64>,
}

impl ServerConfig {
    /// A server of `cluster` listening on `bind`, with parameter memory locked where the
    /// memlock limit allows, on hugepages where available, and 16 GiB of address space per
    /// table array.
    pub fn new(cluster: ClusterConfig, bind: SocketAddr) -> ServerConfig {
        ServerConfig {
            cluster,
            bind,
            memory: SegmentOptions {
                lock: LockPolicy::BestEffort,
                hugepages: HugePolicy::Auto,
                numa_node: None,
            },
            table_capacity_bytes: 16 << 30,
            key_cache_cap_keys: None,
        }
    }
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub cluster: ClusterConfig,
}
