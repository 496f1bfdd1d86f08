//! Topology discovery with hwloc (through `hwlocality`), including I/O devices so a NIC's
//! node can be found.

use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::{OSDeviceType, ObjectType};
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::TypeFilter;
use hwlocality::Topology;

use super::{DeviceLocality, NumaNode, NumaTopology};
use crate::memory::MemoryError;

pub(super) fn detect() -> Result<NumaTopology, MemoryError> {
    let topology = Topology::builder()
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| MemoryError::Topology(e.to_string()))?
        .build()
        .map_err(|e| MemoryError::Topology(e.to_string()))?;

    let mut nodes: Vec<NumaNode> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|obj| {
            Some(NumaNode {
                os_index: obj.os_index()?,
                cpus: obj
                    .cpuset()
                    .map(|set| set.iter_set().map(usize::from).collect())
                    .unwrap_or_default(),
                memory_bytes: obj.total_memory(),
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.os_index);
    if nodes.is_empty() {
        return Err(MemoryError::Topology("hwloc reported no NUMA node".into()));
    }

    // Network interfaces and RDMA devices are OS devices below a PCI device; their locality
    // is the node set of their first non-I/O ancestor.
    let devices = topology
        .os_devices()
        .filter(|dev| is_network_or_rdma(dev))
        .filter_map(|dev| {
            let name = dev.name()?.to_str().ok()?.to_string();
            Some(DeviceLocality {
                name,
                node: single_node_of(dev),
            })
        })
        .collect();

    Ok(NumaTopology {
        nodes,
        devices,
        source: format!("hwloc, API {}", hwloc_version()),
    })
}

/// Network interfaces (`eth0`) and RDMA devices (`mlx5_0`), not disks or GPUs.
fn is_network_or_rdma(dev: &TopologyObject) -> bool {
    matches!(
        dev.attributes(),
        Some(ObjectAttributes::OSDevice(attr))
            if matches!(attr.device_type(), OSDeviceType::Network | OSDeviceType::OpenFabrics)
    )
}

/// The one node local to an I/O object, if its locality is exactly one node.
fn single_node_of(dev: &TopologyObject) -> Option<usize> {
    let nodeset = dev.first_non_io_ancestor()?.nodeset()?;
    if nodeset.weight() == Some(1) {
        nodeset.first_set().map(usize::from)
    } else {
        None
    }
}

fn hwloc_version() -> String {
    let v = hwlocality::hwloc_api_version();
    format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}
