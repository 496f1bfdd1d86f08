//! The machine's 2 MiB hugepage pool (hugetlbfs, `vm.nr_hugepages`) and transparent-hugepage
//! mode, as the kernel reports them.

use std::fmt;
use std::fs;

use super::MemoryError;

const MEMINFO: &str = "/proc/meminfo";
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// State of the default hugepage pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugepageStatus {
    /// Size of a default hugepage in bytes (`Hugepagesize`).
    pub page_bytes: u64,
    /// Pages in the pool (`HugePages_Total`).
    pub total: u64,
    /// Pages not yet faulted in (`HugePages_Free`); includes reserved ones.
    pub free: u64,
    /// Pages promised to mappings but not yet faulted in (`HugePages_Rsvd`).
    pub reserved: u64,
    /// Transparent-hugepage mode ("always", "madvise" or "never"), if the kernel has THP.
    pub thp_mode: Option<String>,
}

impl HugepageStatus {
    /// Reads /proc/meminfo and the THP mode.
    pub fn read() -> Result<Self, MemoryError> {
        let text = fs::read_to_string(MEMINFO).map_err(|e| MemoryError::read(MEMINFO, e))?;
        let field = |key: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        let page_kib = field("Hugepagesize:").unwrap_or(2048);
        Ok(Self {
            page_bytes: page_kib * 1024,
            total: field("HugePages_Total:").unwrap_or(0),
            free: field("HugePages_Free:").unwrap_or(0),
            reserved: field("HugePages_Rsvd:").unwrap_or(0),
            thp_mode: thp_mode(),
        })
    }

    /// Pages a new mapping can still reserve.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }
}

impl fmt::Display for HugepageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} KiB pages: {} in pool, {} free, {} promised",
            self.page_bytes / 1024,
            self.total,
            self.free,
            self.reserved
        )?;
        match &self.thp_mode {
            Some(mode) => write!(f, "; transparent hugepages: {mode}"),
            None => write!(f, "; transparent hugepages: not supported"),
        }
    }
}

/// Free 2 MiB pages in the pool of one NUMA node (None if the kernel does not say).
pub fn node_free_2m(node: usize) -> Option<u64> {
    let path =
        format!("/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/free_hugepages");
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The bracketed word of /sys/kernel/mm/transparent_hugepage/enabled.
fn thp_mode() -> Option<String> {
    let text = fs::read_to_string(THP_ENABLED).ok()?;
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}
