//! Plain configuration structs for the three roles. The `ferrops` binary fills them from flags,
//! environment and TOML; library users build them directly.

use std::net::SocketAddr;
use std::time::Duration;

use ferrops_net::auth::{ClusterKey, Credentials, Identity};
use ferrops_net::{Budgets, FrameLimits, TransportMode};

use crate::Role;

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
    /// What every connection of the job is authenticated with: the cluster secret all its
    /// nodes share, or `Insecure` (a node with a secret refuses one without). See
    /// `docs/security.md`.
    pub key: ClusterKey,
    /// How long a connection may take to authenticate.
    pub handshake_timeout: Duration,
    /// What peers can make a scheduler or server process hold: queued replies per connection
    /// and in all (backpressure), large incoming frames, connections per listener.
    pub budgets: Budgets,
    /// How long a node waits for the scheduler before giving up.
    pub connect_timeout: Duration,
    /// Keys of resolved key lists each worker→server connection caches at both ends, so that a
    /// list sent before travels as its signature alone (0 turns key caching off). The default,
    /// [`default_key_cache_keys`], follows the machine's memory.
    pub key_cache_keys: u64,
    /// Whether the frames this node sends carry a CRC-32C of their payload (the header always
    /// has one; a receiver checks every frame that carries it). Off by default: TCP checksums
    /// every segment and RDMA every packet, and over TCP the extra pass on each side cost as
    /// much as the 40 MB's trip itself (docs/performance.md, "The payload checksum").
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
    /// How long a waiting worker, and a server after each request it handled, keep polling
    /// their connections before they sleep (TCP by non-blocking reads, RDMA by polling the
    /// completion queues): latency against a core. Zero sleeps at once. The scheduler never
    /// spins.
    pub busy_poll: Duration,
    /// Heartbeats between the scheduler and every node, and the start-up deadline.
    pub liveness: LivenessConfig,
    /// The rank this node asks the scheduler for (`None`: the lowest free one). A launcher
    /// numbering its processes sets it so that its names and the scheduler's agree; shard i of
    /// a server asking for rank r gets rank `r × server_shards + i`.
    pub rank: Option<u32>,
    /// Where this node serves its metrics in Prometheus text format (`GET /metrics`; port 0
    /// picks one); `None`: no endpoint. Node-local: every node of a job has its own.
    pub metrics_addr: Option<SocketAddr>,
    /// Replication factor R: how many server processes hold each key range, as a chain whose
    /// head serves it (1 to `num_servers`; see [`ClusterConfig::validate_replication`]).
    /// The default, 1, keeps one copy and today's speed; the scheduler decides the chains.
    pub replication: usize,
    /// When a head replicates the pushes of the ranges it heads (see [`ReplicationMode`]).
    pub replication_mode: ReplicationMode,
}

/// When a chain's head sends its range's updates down the chain.
///
/// `Each` (the default) forwards every push as it is applied, and acknowledges it once the
/// tail has: a push costs one chain round trip and the bytes of its values on every link.
/// `Aggregated` is the OSDI'14 paper's replication after aggregation: the head applies pushes
/// at once but holds their acknowledgements, and sends one update for a batch of them — the
/// resulting rows (values and rule state) of every key the batch touched, with the batch's
/// (worker, sequence) numbers — once every live worker has a push in the batch or its oldest
/// push has waited [`AGGREGATION_WINDOW`](crate::server::AGGREGATION_WINDOW); the batch's
/// pushes are acknowledged when the tail has applied it. Replicas stay bit-identical to the
/// head (they take its rows, not the pushes), an acknowledged push is on every live replica as
/// with `Each`, and a worker resending after a failover is dropped by whichever replica has
/// the batch. What it trades: a link carries each touched row once per batch instead of once
/// per push, and a push waits for its batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicationMode {
    #[default]
    Each,
    Aggregated,
}

impl std::fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationMode::Each => "each",
            ReplicationMode::Aggregated => "aggregated",
        })
    }
}

impl std::str::FromStr for ReplicationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "each" => Ok(ReplicationMode::Each),
            "aggregated" => Ok(ReplicationMode::Aggregated),
            other => Err(format!(
                "unknown replication mode `{other}` (expected `each` or `aggregated`)"
            )),
        }
    }
}

/// How the scheduler and the nodes watch each other (`crate::liveness`).
///
/// The defaults: a heartbeat every 500 ms (a 88-byte frame each way, sent by a thread of its own
/// so that a shard busy applying a large push or a worker computing never delays it), and death
/// declared after 5 s of silence, ten missed heartbeats: enough for a loaded machine that
/// leaves a thread unscheduled for a second or two, short enough that a stopped or partitioned
/// node ends the job in seconds rather than hanging it (a killed node is noticed at once, by its
/// closed connection). The job has 2 minutes to assemble: a batch system starting processes on
/// many hosts needs seconds to a minute, and a missing node is then named instead of waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How often every node sends the scheduler a heartbeat (the scheduler answers each).
    pub heartbeat_interval: Duration,
    /// Silence after which the scheduler declares a node dead, and a node the scheduler.
    pub heartbeat_timeout: Duration,
    /// How long the scheduler waits for every node to register and every server to be ready
    /// before it ends the job, naming who never arrived.
    pub startup_deadline: Duration,
    /// How long a node goes on without the scheduler (serving, pushing and pulling by the
    /// routing it has, redialing it) before it gives up: time for a scheduler restarted with
    /// `--recover` to come back (`scheduler_outage_ms`).
    pub scheduler_outage: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(5),
            startup_deadline: Duration::from_secs(120),
            scheduler_outage: Duration::from_secs(300),
        }
    }
}

impl LivenessConfig {
    /// Checks the settings: positive, and a timeout of at least two intervals (one late
    /// heartbeat must never kill a node).
    pub fn validate(&self) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis();
        if self.heartbeat_interval.is_zero() {
            return Err("the heartbeat interval must be at least 1 ms".into());
        }
        if self.startup_deadline.is_zero() {
            return Err("the start-up deadline must be at least 1 ms".into());
        }
        if self.heartbeat_timeout < 2 * self.heartbeat_interval {
            return Err(format!(
                "the heartbeat timeout ({} ms) must be at least twice the heartbeat interval \
                 ({} ms), or one late heartbeat would declare a live node dead",
                ms(self.heartbeat_timeout),
                ms(self.heartbeat_interval)
            ));
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// What a node of `role` (node id `node`, once it has one) presents and checks on every
    /// connection.
    pub fn credentials(&self, role: Role, node: Option<u32>) -> Credentials {
        Credentials {
            key: self.key.clone(),
            me: Identity {
                role: role.wire_index(),
                node: node.unwrap_or(Identity::UNASSIGNED),
            },
        }
    }

    /// Warns, once per role, when this node runs without authentication.
    pub(crate) fn warn_if_insecure(&self, role: Role) {
        if self.key.is_insecure() {
            tracing::warn!(
                "{role} running without a cluster secret (--insecure): any process that can \
                 reach this node's ports can join the job, read the model and change it"
            );
        }
    }

    /// Key ranges in the job: one per shard of every server.
    pub fn total_shards(&self) -> usize {
        self.num_servers * self.server_shards.max(1)
    }

    /// Checks the replication factor against the job: at least 1, and no more than the server
    /// processes that can hold distinct copies (two shards of one process die together, so
    /// they never hold two copies of one range).
    pub fn validate_replication(&self) -> Result<(), String> {
        let servers = self.num_servers;
        if self.replication == 0 {
            return Err("the replication factor must be at least 1 (1: no replicas)".into());
        }
        if self.replication > servers {
            return Err(format!(
                "replication factor {} needs at least {} servers, but the job has {servers} \
                 (a chain never holds two copies on one server)",
                self.replication, self.replication
            ));
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// A configuration for a cluster whose scheduler listens at `scheduler`, with a freshly
    /// generated secret: every node configured from a clone of it belongs to the same job.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn new(scheduler: SocketAddr, num_servers: usize, num_workers: usize) -> Self {
        Self {
            scheduler,
            num_servers,
            num_workers,
            limits: FrameLimits::default(),
            key: ClusterKey::generate().expect("the system's random source works"),
            handshake_timeout: ferrops_net::auth::DEFAULT_HANDSHAKE_TIMEOUT,
            budgets: Budgets::default(),
            connect_timeout: Duration::from_secs(30),
            key_cache_keys: default_key_cache_keys(),
            payload_checksum: false,
            key_packing: true,
            server_shards: 1,
            transport: TransportMode::Auto,
            busy_poll: ferrops_net::DEFAULT_BUSY_POLL,
            liveness: LivenessConfig::default(),
            rank: None,
            metrics_addr: None,
            replication: 1,
            replication_mode: ReplicationMode::Each,
        }
    }
}

/// The default key cache of a connection: a sixteenth of the machine's memory in 8-byte keys,
/// and 2^24 keys at least (201M keys on a 24 GiB machine, enough to send a 100M-key list by
/// signature). A list above it travels whole with every request, and the server resolves it
/// anew each time (both ends log it once per connection).
pub fn default_key_cache_keys() -> u64 {
    let physical = crate::memory::accounting::physical_memory_bytes().unwrap_or(0);
    (physical / 16 / 8).max(1 << 24)
}

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub cluster: ClusterConfig,
    /// Address to listen on (port 0 picks a free port; the chosen address is reported).
    pub bind: SocketAddr,
    /// A checkpoint directory to start the job from: its tables exist, with their saved
    /// values and rule state, before any worker declares them.
    pub restore: Option<std::path::PathBuf>,
    /// Start by recovering a job whose scheduler was lost: wait this long for its nodes to
    /// rejoin (`Control::Rejoin`) and rebuild the job's state from what they report.
    pub recover: Option<Duration>,
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
    /// Set (by the binary's SIGTERM handler) to ask this server to leave the job: it asks the
    /// scheduler to drain it — move every range it holds to other servers — and exits once
    /// drained, or with the scheduler's reason when it cannot be. Before it is welcomed, or
    /// once its job is over, it stops at once.
    pub leave: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Whether the server's report lists what each store holds (`ServerReport::contents`: keys
    /// and a digest of every key's values and state), for comparing replicas. It is a pass over
    /// every key and value at exit (11 ms for 250k keys of dim 5, minutes at 10^10 keys), so it
    /// is off unless asked for.
    pub digest_on_exit: bool,
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
            leave: None,
            digest_on_exit: false,
        }
    }
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub cluster: ClusterConfig,
}
