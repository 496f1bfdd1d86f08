//! Without hwloc (engine feature `numa` off): one node with every CPU the process may use.

use super::{NumaNode, NumaTopology};
use crate::memory::accounting::proc_status_kib;
use crate::memory::{sys, MemoryError};

pub(super) fn detect() -> Result<NumaTopology, MemoryError> {
    let cpus = sys::thread_affinity().map_err(|e| MemoryError::read("sched_getaffinity", e))?;
    let memory_bytes = proc_status_kib("/proc/meminfo", "MemTotal:").map_or(0, |k| k * 1024);
    Ok(NumaTopology {
        nodes: vec![NumaNode {
            os_index: 0,
            cpus,
            memory_bytes,
        }],
        devices: Vec::new(),
        source: "single-node fallback: built without the `numa` feature".to_string(),
    })
}
