//! What a segment is asked for ([`SegmentOptions`]) and what it got ([`Backing`]).

use serde::{Deserialize, Serialize};

/// Whether segment memory is locked in RAM (`mlock`), so it is never swapped out and its
/// physical pages stay put (what RDMA registration relies on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockPolicy {
    /// Locking must succeed; `grow_to` fails otherwise (with the memlock limit and its fix).
    Required,
    /// Lock if possible; a failure is logged once per segment and `Backing::locked` is false.
    #[default]
    BestEffort,
    /// Do not lock.
    Off,
}

/// Which pages back a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HugePolicy {
    /// 2 MiB hugetlb pages when enough are reserved on the machine (`vm.nr_hugepages`),
    /// otherwise normal pages with transparent-hugepage advice (`MADV_HUGEPAGE`).
    #[default]
    Auto,
    /// 2 MiB hugetlb pages or an error.
    Require,
    /// Normal pages, no advice.
    Off,
}

/// How a segment's memory is to be provided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentOptions {
    pub lock: LockPolicy,
    pub hugepages: HugePolicy,
    /// NUMA node (OS index) to bind the memory to; `None` leaves placement to the kernel.
    /// See [`super::numa::node_of_netdev`] to find the node nearest a NIC. On a machine
    /// with a single node this is accepted and ignored (with one log line).
    pub numa_node: Option<usize>,
}

impl SegmentOptions {
    /// Locking required, hugepages where available, bound to `numa_node`: what a server uses
    /// for parameter storage that will be registered with an RDMA device.
    pub fn pinned(numa_node: Option<usize>) -> Self {
        Self {
            lock: LockPolicy::Required,
            hugepages: HugePolicy::Auto,
            numa_node,
        }
    }

    /// Plain memory: not locked, normal pages, no binding (tests, small tables).
    pub fn plain() -> Self {
        Self {
            lock: LockPolicy::Off,
            hugepages: HugePolicy::Off,
            numa_node: None,
        }
    }
}

/// What actually backs a segment's committed memory. Each flag holds for *all* committed
/// bytes; an empty segment reports all false and no node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backing {
    /// Backed by 2 MiB hugetlb pages.
    pub hugepages_2m: bool,
    /// Normal pages advised with `MADV_HUGEPAGE` (the kernel may back them with transparent
    /// hugepages).
    pub thp_advised: bool,
    /// Locked in RAM: `mlock`ed normal pages, or hugetlb pages (which the kernel never swaps,
    /// although /proc/self/smaps does not show them as `Locked`).
    pub locked: bool,
    /// The node the memory is bound to (`None`: not bound, e.g. on a one-node machine).
    pub numa_node: Option<usize>,
}
