//! NUMA placement: which nodes exist and which CPUs they hold, which node a network (or RDMA)
//! device is attached to, and pinning threads to a node.
//!
//! Discovery goes through hwloc (crate `hwlocality`, engine feature `numa`). Without the
//! feature the machine is treated as a single node holding every CPU the process may use, so
//! the same calls work and placement requests become no-ops.
//!
//! On a machine with one node, binding and pinning are no-ops that log one line each
//! (`tracing::info`), not errors: the same configuration then runs on a laptop and a
//! two-socket server.

#[cfg(not(feature = "numa"))]
mod fallback;
#[cfg(feature = "numa")]
mod hwloc;

use std::fmt;
use std::fs;
use std::sync::{Once, OnceLock};

use super::sys;
use super::MemoryError;

#[cfg(not(feature = "numa"))]
use fallback as backend;
#[cfg(feature = "numa")]
use hwloc as backend;

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaNode {
    /// The node's OS index (as in /sys/devices/system/node/nodeN and `numactl`).
    pub os_index: usize,
    /// OS indices of the CPUs local to the node.
    pub cpus: Vec<usize>,
    /// Memory local to the node in bytes (0 when unknown).
    pub memory_bytes: u64,
}

/// A device with the NUMA node it is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLocality {
    /// Interface or device name (`eth0`, `mlx5_0`, ...).
    pub name: String,
    /// The node it hangs off, if the machine says.
    pub node: Option<usize>,
}

/// The machine's NUMA layout as discovered once per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaTopology {
    /// Nodes in OS-index order; never empty.
    pub nodes: Vec<NumaNode>,
    /// Network and RDMA devices that sit on a bus with a known locality.
    pub devices: Vec<DeviceLocality>,
    /// Where the layout came from ("hwloc 2.9.0" or "single-node fallback").
    pub source: String,
}

impl NumaTopology {
    /// The machine's topology, discovered on first use and cached for the process.
    pub fn get() -> Result<&'static NumaTopology, MemoryError> {
        static CACHE: OnceLock<NumaTopology> = OnceLock::new();
        if let Some(t) = CACHE.get() {
            return Ok(t);
        }
        let detected = backend::detect()?;
        Ok(CACHE.get_or_init(|| detected))
    }

    /// Whether there is only one node (placement is then meaningless).
    pub fn is_single_node(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The node with OS index `os_index`.
    pub fn node(&self, os_index: usize) -> Option<&NumaNode> {
        self.nodes.iter().find(|n| n.os_index == os_index)
    }

    /// The node with OS index `os_index`, or `NoSuchNode` naming the nodes there are.
    pub fn require_node(&self, os_index: usize) -> Result<&NumaNode, MemoryError> {
        self.node(os_index).ok_or_else(|| MemoryError::NoSuchNode {
            node: os_index,
            available: self
                .nodes
                .iter()
                .map(|n| n.os_index.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The node a network interface or RDMA device is attached to: what hwloc found, else
    /// the PCI device's `numa_node` in sysfs. `Ok(None)` when the machine does not say
    /// (virtual interfaces, one-node machines); `NoSuchInterface` when there is no such
    /// network interface or RDMA device.
    pub fn node_of_device(&self, name: &str) -> Result<Option<usize>, MemoryError> {
        if let Some(dev) = self.devices.iter().find(|d| d.name == name) {
            return Ok(dev.node);
        }
        for class in ["net", "infiniband"] {
            let dir = format!("/sys/class/{class}/{name}");
            if fs::metadata(&dir).is_ok() {
                let node = fs::read_to_string(format!("{dir}/device/numa_node"))
                    .ok()
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .and_then(|v| usize::try_from(v).ok());
                return Ok(node.filter(|&n| self.node(n).is_some()));
            }
        }
        Err(MemoryError::NoSuchInterface {
            name: name.to_string(),
        })
    }
}

impl fmt::Display for NumaTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.nodes.len() == 1 { "" } else { "s" };
        writeln!(
            f,
            "{} NUMA node{plural} ({})",
            self.nodes.len(),
            self.source
        )?;
        for node in &self.nodes {
            write!(f, "  node {}: cpus {}", node.os_index, cpu_list(&node.cpus))?;
            if node.memory_bytes > 0 {
                write!(
                    f,
                    ", {}",
                    super::accounting::format_bytes(node.memory_bytes)
                )?;
            }
            writeln!(f)?;
        }
        if self.devices.is_empty() {
            write!(f, "  network/RDMA devices with known locality: none")?;
        } else {
            write!(f, "  network/RDMA devices:")?;
            for dev in &self.devices {
                match dev.node {
                    Some(n) => write!(f, " {} (node {n})", dev.name)?,
                    None => write!(f, " {} (node unknown)", dev.name)?,
                }
            }
        }
        Ok(())
    }
}

/// The NUMA node nearest a network interface (`eth0`) or RDMA device (`mlx5_0`); see
/// [`NumaTopology::node_of_device`].
pub fn node_of_netdev(name: &str) -> Result<Option<usize>, MemoryError> {
    NumaTopology::get()?.node_of_device(name)
}

/// Restricts the calling thread to the CPUs of NUMA node `node`. On a one-node machine this
/// does nothing (and says so once in the log).
pub fn pin_current_thread_to_node(node: usize) -> Result<(), MemoryError> {
    let topology = NumaTopology::get()?;
    static SAID: Once = Once::new();
    if single_node_said_once(topology, &SAID, node, "thread pinning to a node is a no-op") {
        return Ok(());
    }
    let target = topology.require_node(node)?;
    sys::set_thread_affinity(&target.cpus).map_err(|source| MemoryError::Pin {
        node,
        cpus: cpu_list(&target.cpus),
        source,
    })
}

/// The CPUs the calling thread may run on (its affinity mask).
pub fn current_thread_cpus() -> Result<Vec<usize>, MemoryError> {
    sys::thread_affinity().map_err(|e| MemoryError::read("sched_getaffinity", e))
}

/// The node holding the page at `addr` (faulting it in if absent), as the kernel reports it.
pub fn node_of_address(addr: *const u8) -> Result<usize, MemoryError> {
    sys::node_of_address(addr).map_err(|e| MemoryError::read("get_mempolicy", e))
}

/// Where a segment's memory should go given the requested node: `Ok(None)` means "do not
/// bind" (no node asked for, or a one-node machine, which is logged once).
pub(crate) fn placement_for(requested: Option<usize>) -> Result<Option<usize>, MemoryError> {
    let Some(node) = requested else {
        return Ok(None);
    };
    let topology = NumaTopology::get()?;
    static SAID: Once = Once::new();
    if single_node_said_once(
        topology,
        &SAID,
        node,
        "segment memory is not bound to a node",
    ) {
        return Ok(None);
    }
    topology.require_node(node)?;
    Ok(Some(node))
}

/// Whether this is a one-node machine; if so, logs (once per `said`) that `what` follows.
fn single_node_said_once(
    topology: &NumaTopology,
    said: &'static Once,
    node: usize,
    what: &str,
) -> bool {
    let single = topology.is_single_node();
    if single {
        said.call_once(|| tracing::info!(node, "one NUMA node on this machine: {what}"));
    }
    single
}

/// "0-3,8,10-11".
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_collapse_ranges() {
        assert_eq!(cpu_list(&[3, 0, 1, 2, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(cpu_list(&[5]), "5");
        assert_eq!(cpu_list(&[]), "none");
    }

    #[test]
    fn topology_has_a_node_with_cpus() {
        let t = NumaTopology::get().expect("topology");
        assert!(!t.nodes.is_empty());
        assert!(t.nodes.iter().any(|n| !n.cpus.is_empty()));
        assert!(matches!(
            t.require_node(usize::MAX),
            Err(MemoryError::NoSuchNode { .. })
        ));
    }

    #[test]
    fn unknown_interface_is_an_error() {
        let t = NumaTopology::get().expect("topology");
        assert!(matches!(
            t.node_of_device("no-such-if0"),
            Err(MemoryError::NoSuchInterface { .. })
        ));
    }
}
