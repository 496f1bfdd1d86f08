//! Parameter memory: where a server's parameter values live.
//!
//! Parameters live in [`Segment`]s: large regions the engine owns, reserved once as a fixed
//! range of address space and committed as tables grow, so the memory never moves and can be
//! registered with an RDMA device once. Committed memory is zeroed, and, as
//! [`SegmentOptions`] ask:
//!
//! - **locked** in RAM (`mlock`; [`LockPolicy`]): never swapped, physical pages stay put. A
//!   lock refused because of the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) is reported
//!   as [`MemoryError::MemlockLimit`], which names the limit and how to raise it;
//! - on **2 MiB hugepages** ([`HugePolicy`]): hugetlb pages when the machine has them reserved
//!   (`vm.nr_hugepages`), otherwise normal pages with transparent-hugepage advice;
//! - **bound to a NUMA node** (`mbind`), normally the node nearest the NIC
//!   ([`numa::node_of_netdev`]). Serving threads go to the same node with
//!   [`numa::pin_current_thread_to_node`].
//!
//! [`Segment::backing`] reports what the kernel actually gave. [`preflight()`] checks the
//! machine before a server starts (memlock limit, hugepage pool, NUMA layout) and prints a
//! readable report. [`accounting`] has the process resident set, totals over all segments and
//! a reader of /proc/self/smaps for one mapping.
//!
//! Modules, one job each: `options` (what is asked / what was given), `segment` (the
//! reservation and its growth), `sys` (the system calls, where the `unsafe` is), `hugepages`
//! (the hugepage pool), `limits` (the memlock limit), `numa` (topology, placement, pinning;
//! hwloc behind the `numa` feature), `preflight` (start-up report), `accounting`.
//!
//! Linux only.

pub mod accounting;
mod error;
pub mod hugepages;
pub mod limits;
pub mod numa;
mod options;
mod preflight;
mod segment;
mod sys;

pub use error::MemoryError;
pub use numa::{node_of_netdev, pin_current_thread_to_node};
pub use options::{Backing, HugePolicy, LockPolicy, SegmentOptions};
pub use preflight::{preflight, Preflight};
pub use segment::Segment;

/// Asks for transparent hugepages for the whole 2 MiB pages inside `[start, start + len)`, an
/// allocation not touched yet (large in-process tables such as the key map: one TLB entry per
/// 2 MiB instead of per 4 KiB keeps their random probes from paying a page walk each). Only a
/// hint: nothing happens where the kernel declines.
pub fn advise_hugepages_inside(start: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let (begin, end) = (start as usize, start as usize + len);
    let first = begin.div_ceil(HUGE) * HUGE;
    let last = end / HUGE * HUGE;
    if let (true, Some(addr)) = (last > first, std::ptr::NonNull::new(first as *mut u8)) {
        sys::advise_hugepages(addr, last - first).ok();
    }
}
