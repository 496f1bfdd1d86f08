//! Memory accounting: the process's resident set, the bytes held by all live segments, and
//! what the kernel reports about one mapping (/proc/self/smaps), so placement can be checked
//! rather than assumed.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sys;
use super::MemoryError;

/// Resident set size of this process in bytes (/proc/self/statm).
pub fn resident_set_bytes() -> Result<u64, MemoryError> {
    const PATH: &str = "/proc/self/statm";
    let text = fs::read_to_string(PATH).map_err(|e| MemoryError::read(PATH, e))?;
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MemoryError::parse(PATH, "no resident page count"))?;
    // statm counts normal pages; hugetlb pages are not part of the resident set.
    Ok(pages * sys::page_size() as u64)
}

/// Totals over every live [`super::Segment`] of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentTotals {
    /// Live segments.
    pub segments: u64,
    /// Address space reserved (capacity, rounded to pages).
    pub reserved_bytes: u64,
    /// Memory committed (rounded to pages: what the process really holds).
    pub committed_bytes: u64,
    /// Of the committed bytes, those locked in RAM.
    pub locked_bytes: u64,
    /// Of the committed bytes, those on 2 MiB hugetlb pages.
    pub hugetlb_bytes: u64,
}

static SEGMENTS: AtomicU64 = AtomicU64::new(0);
static RESERVED: AtomicU64 = AtomicU64::new(0);
static COMMITTED: AtomicU64 = AtomicU64::new(0);
static LOCKED: AtomicU64 = AtomicU64::new(0);
static HUGETLB: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the process-wide segment totals.
pub fn segment_totals() -> SegmentTotals {
    SegmentTotals {
        segments: SEGMENTS.load(Ordering::Relaxed),
        reserved_bytes: RESERVED.load(Ordering::Relaxed),
        committed_bytes: COMMITTED.load(Ordering::Relaxed),
        locked_bytes: LOCKED.load(Ordering::Relaxed),
        hugetlb_bytes: HUGETLB.load(Ordering::Relaxed),
    }
}

/// Updates to the totals, made by `Segment` only.
pub(crate) mod track {
    use super::*;

    pub(crate) fn reserved(bytes: usize) {
        SEGMENTS.fetch_add(1, Ordering::Relaxed);
        RESERVED.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn committed(bytes: usize, locked: bool, hugetlb: bool) {
        let b = bytes as u64;
        COMMITTED.fetch_add(b, Ordering::Relaxed);
        if locked {
            LOCKED.fetch_add(b, Ordering::Relaxed);
        }
        if hugetlb {
            HUGETLB.fetch_add(b, Ordering::Relaxed);
        }
    }

    pub(crate) fn released(reserved: usize, committed: usize, locked: usize, hugetlb: usize) {
        SEGMENTS.fetch_sub(1, Ordering::Relaxed);
        RESERVED.fetch_sub(reserved as u64, Ordering::Relaxed);
        COMMITTED.fetch_sub(committed as u64, Ordering::Relaxed);
        LOCKED.fetch_sub(locked as u64, Ordering::Relaxed);
        HUGETLB.fetch_sub(hugetlb as u64, Ordering::Relaxed);
    }
}

/// What /proc/self/smaps says about the mapping(s) covering an address range. Sizes in KiB as
/// the kernel reports them, summed over every mapping (VMA) overlapping the range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingReport {
    /// Mappings (VMAs) overlapping the range.
    pub mappings: usize,
    pub size_kib: u64,
    pub rss_kib: u64,
    pub locked_kib: u64,
    pub anon_huge_kib: u64,
    pub private_hugetlb_kib: u64,
    /// Every mapping's `KernelPageSize`, deduplicated (e.g. `[4]`, `[2048]` or both).
    pub kernel_page_sizes_kib: Vec<u64>,
    /// Every mapping has the `lo` (VM_LOCKED) flag.
    pub all_locked_flag: bool,
    /// Every mapping has the `hg` (MADV_HUGEPAGE) flag.
    pub all_hugepage_advised: bool,
}

impl MappingReport {
    /// Reads /proc/self/smaps for the mappings overlapping `[addr, addr + len)`.
    pub fn for_range(addr: *const u8, len: usize) -> Result<Self, MemoryError> {
        const PATH: &str = "/proc/self/smaps";
        let text = fs::read_to_string(PATH).map_err(|e| MemoryError::read(PATH, e))?;
        Ok(Self::parse(&text, addr as u64, addr as u64 + len as u64))
    }

    fn parse(smaps: &str, start: u64, end: u64) -> Self {
        let mut report = MappingReport {
            all_locked_flag: true,
            all_hugepage_advised: true,
            ..Default::default()
        };
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((lo, hi)) = header_range(line) {
                inside = lo < end && start < hi;
                if inside {
                    report.mappings += 1;
                }
                continue;
            }
            if !inside {
                continue;
            }
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            if key == "VmFlags" {
                let flags: Vec<&str> = rest.split_whitespace().collect();
                report.all_locked_flag &= flags.contains(&"lo");
                report.all_hugepage_advised &= flags.contains(&"hg");
                continue;
            }
            let kib = rest
                .trim()
                .strip_suffix("kB")
                .and_then(|v| v.trim().parse::<u64>().ok());
            let Some(kib) = kib else { continue };
            match key {
                "Size" => report.size_kib += kib,
                "Rss" => report.rss_kib += kib,
                "Locked" => report.locked_kib += kib,
                "AnonHugePages" => report.anon_huge_kib += kib,
                "Private_Hugetlb" => report.private_hugetlb_kib += kib,
                "KernelPageSize" if !report.kernel_page_sizes_kib.contains(&kib) => {
                    report.kernel_page_sizes_kib.push(kib);
                }
                _ => {}
            }
        }
        if report.mappings == 0 {
            report.all_locked_flag = false;
            report.all_hugepage_advised = false;
        }
        report
    }
}

/// The address range of an smaps header line ("7f00-7f10 rw-p ...").
fn header_range(line: &str) -> Option<(u64, u64)> {
    let first = line.split_whitespace().next()?;
    let (lo, hi) = first.split_once('-')?;
    Some((
        u64::from_str_radix(lo, 16).ok()?,
        u64::from_str_radix(hi, 16).ok()?,
    ))
}

/// A "Key:   123 kB" value of a /proc status-style file, in KiB.
pub(crate) fn proc_status_kib(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The machine's physical memory in bytes (MemTotal of /proc/meminfo); `None` if unreadable.
pub fn physical_memory_bytes() -> Option<u64> {
    proc_status_kib("/proc/meminfo", "MemTotal:").map(|kib| kib * 1024)
}

/// "1.5 GiB", "800.0 MiB", "12 B".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
00400000-00600000 rw-p 00000000 00:00 0
Size:               2048 kB
KernelPageSize:        4 kB
Rss:                2048 kB
AnonHugePages:      2048 kB
Locked:             2048 kB
VmFlags: rd wr mr mw me ac lo hg
7f0000000000-7f0000400000 rw-p 00000000 00:0f 1234   /anon_hugepage (deleted)
Size:               4096 kB
KernelPageSize:     2048 kB
Rss:                   0 kB
Private_Hugetlb:    4096 kB
Locked:                0 kB
VmFlags: rd wr mr mw me de ht lo
";

    #[test]
    fn smaps_report_sums_overlapping_mappings() {
        let r = MappingReport::parse(SAMPLE, 0x0040_0000, 0x7f00_0000_0001);
        assert_eq!(r.mappings, 2);
        assert_eq!(r.size_kib, 6144);
        assert_eq!(r.kernel_page_sizes_kib, vec![4, 2048]);
        assert_eq!(r.private_hugetlb_kib, 4096);
        assert!(r.all_locked_flag);
        assert!(!r.all_hugepage_advised);

        let first = MappingReport::parse(SAMPLE, 0x0040_0000, 0x0040_1000);
        assert_eq!(first.mappings, 1);
        assert_eq!(first.anon_huge_kib, 2048);
        assert!(first.all_hugepage_advised);

        let none = MappingReport::parse(SAMPLE, 0x1000, 0x2000);
        assert_eq!(none.mappings, 0);
        assert!(!none.all_locked_flag);
    }

    #[test]
    fn byte_formatting() {
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(format_bytes(3 << 19), "1.5 MiB");
        assert_eq!(format_bytes(800 << 20), "800.0 MiB");
    }
}
