//! The one error type of the memory module.

use std::io;
use std::path::PathBuf;

use super::limits::MemlockLimit;

/// Why a memory operation failed. Every message says what was attempted and, where there is
/// one, what to change on the machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// `Segment::reserve` was asked for zero bytes.
    #[error("a segment needs a capacity of at least one byte")]
    ZeroCapacity,

    /// The capacity does not fit the address space once rounded to whole pages.
    #[error("a segment capacity of {requested} bytes is too large for the address space")]
    CapacityTooLarge { requested: usize },

    /// `mmap` refused to reserve the address range.
    #[error("cannot reserve {bytes} bytes of address space for a segment: {source}")]
    Reserve { bytes: usize, source: io::Error },

    /// `grow_to` was asked for more than the segment reserved.
    #[error("cannot grow a segment to {requested} bytes: its capacity is {capacity} bytes")]
    PastCapacity { requested: usize, capacity: usize },

    /// Committing memory (mapping, advising or populating it) failed.
    #[error("cannot commit {bytes} bytes at offset {offset} of a segment ({step}): {source}")]
    Commit {
        offset: usize,
        bytes: usize,
        step: &'static str,
        source: io::Error,
    },

    /// `HugePolicy::Require` and not enough 2 MiB hugepages are reserved on the machine.
    #[error(
        "2 MiB hugepages are required but {needed} are needed and only {available} are \
         available{where_}; reserve more as root with `sysctl vm.nr_hugepages=<count>` \
         (or per node in /sys/devices/system/node/node<N>/hugepages/hugepages-2048kB/nr_hugepages), \
         or use HugePolicy::Auto"
    )]
    HugepagesUnavailable {
        needed: usize,
        available: usize,
        /// Empty, or " on NUMA node N".
        where_: String,
    },

    /// Locking failed because of the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`).
    #[error(
        "cannot lock {bytes} bytes of segment memory in RAM: {source}. The locked-memory limit \
         RLIMIT_MEMLOCK (`ulimit -l`) is {limit}, and {locked_bytes} bytes are already locked \
         by this process. Raise it before starting the process: `ulimit -l unlimited` in the \
         launching shell, a `memlock` line in /etc/security/limits.conf (e.g. \
         `*  -  memlock  unlimited`, then log in again), `LimitMEMLOCK=infinity` for a systemd \
         service, or `--ulimit memlock=-1` for a container. RDMA registration needs the same \
         limit."
    )]
    MemlockLimit {
        bytes: usize,
        locked_bytes: u64,
        limit: MemlockLimit,
        source: io::Error,
    },

    /// Locking failed for a reason other than the limit (e.g. the machine is out of memory).
    #[error("cannot lock {bytes} bytes of segment memory in RAM: {source}")]
    Lock { bytes: usize, source: io::Error },

    /// The NUMA node asked for does not exist on this machine.
    #[error("NUMA node {node} does not exist; this machine has node(s) {available}")]
    NoSuchNode { node: usize, available: String },

    /// `mbind` refused to bind segment memory to a node.
    #[error("cannot bind segment memory to NUMA node {node}: {source}")]
    Bind { node: usize, source: io::Error },

    /// Setting the calling thread's CPU affinity failed.
    #[error("cannot pin the current thread to the cpus {cpus} of NUMA node {node}: {source}")]
    Pin {
        node: usize,
        cpus: String,
        source: io::Error,
    },

    /// hwloc could not load the hardware topology.
    #[error("cannot read the hardware topology with hwloc: {0}")]
    Topology(String),

    /// A network interface named in the configuration does not exist.
    #[error("network interface {name:?} does not exist (see `ip link`)")]
    NoSuchInterface { name: String },

    /// Reading a /proc or /sys file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// A /proc or /sys file did not have the expected form.
    #[error("unexpected contents in {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
}

impl MemoryError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self::Parse {
            path: path.into(),
            what: what.into(),
        }
    }
}
