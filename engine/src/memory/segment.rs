//! [`Segment`]: a fixed range of address space, reserved once, into which parameter memory is
//! committed as a table grows.
//!
//! Layout: the whole capacity is reserved up front as one inaccessible, 2 MiB-aligned mapping
//! that costs no memory. `grow_to` turns the next part of it into real memory, in whole 2 MiB
//! steps, by mapping fresh zeroed memory over it in place (`MAP_FIXED`): the base address never
//! changes, so slices and RDMA registrations of the committed prefix stay valid. Each newly
//! committed chunk is, in this order: mapped (on hugetlb pages if chosen), bound to its NUMA
//! node, advised for transparent hugepages (normal pages only), populated, and locked, so every
//! page is allocated under the binding and is resident before `grow_to` returns. A step that
//! fails returns the chunk to the reserved state, leaving the segment as it was.

use std::fmt;
use std::io;
use std::ptr::NonNull;

use super::accounting::track;
use super::hugepages::{node_free_2m, HugepageStatus};
use super::limits::{locked_bytes, MemlockLimit};
use super::options::{Backing, HugePolicy, LockPolicy, SegmentOptions};
use super::{numa, sys, MemoryError};

/// Pinned parameter memory: see the module documentation.
pub struct Segment {
    /// Start of the reservation; 2 MiB-aligned; never changes.
    base: NonNull<u8>,
    /// Bytes of address space reserved: `capacity` rounded up to 2 MiB.
    reserved: usize,
    /// Bytes the caller asked to be able to hold.
    capacity: usize,
    /// Bytes the caller asked to be committed (what the slices cover).
    len: usize,
    /// Bytes really committed: `len` rounded up to 2 MiB (at most `reserved`).
    committed: usize,
    opts: SegmentOptions,
    /// The node memory is bound to, after resolving `opts.numa_node` against the machine.
    node: Option<usize>,
    /// Committed bytes on hugetlb pages, advised for THP, and locked.
    hugetlb_bytes: usize,
    advised_bytes: usize,
    locked_bytes: usize,
    /// A best-effort lock failure was already logged for this segment.
    lock_failure_logged: bool,
}

// SAFETY: a Segment exclusively owns its mapping (like a Box<[u8]>); nothing about it is tied
// to the thread that created it (mlock and mbind are properties of the memory, not of the
// thread).
unsafe impl Send for Segment {}
// SAFETY: `&Segment` only gives shared read access (`as_f32`, `as_bytes`); mutation needs
// `&mut Segment`.
unsafe impl Sync for Segment {}

/// A committed range and how it ended up backed.
struct Chunk {
    hugetlb: bool,
    advised: bool,
    locked: bool,
}

impl Segment {
    /// Reserves `capacity_bytes` of address space once (inaccessible and costing no memory) and
    /// commits nothing yet. The mapping never moves, so slices handed out stay valid as the
    /// segment grows. Fails for a zero capacity or a NUMA node the machine does not have.
    pub fn reserve(capacity_bytes: usize, opts: &SegmentOptions) -> Result<Segment, MemoryError> {
        if capacity_bytes == 0 {
            return Err(MemoryError::ZeroCapacity);
        }
        let reserved =
            round_up(capacity_bytes, sys::HUGE_PAGE).ok_or(MemoryError::CapacityTooLarge {
                requested: capacity_bytes,
            })?;
        let node = numa::placement_for(opts.numa_node)?;
        let base =
            sys::reserve(reserved, sys::HUGE_PAGE).map_err(|source| MemoryError::Reserve {
                bytes: reserved,
                source,
            })?;
        track::reserved(reserved);
        Ok(Segment {
            base,
            reserved,
            capacity: capacity_bytes,
            len: 0,
            committed: 0,
            opts: *opts,
            node,
            hugetlb_bytes: 0,
            advised_bytes: 0,
            locked_bytes: 0,
            lock_failure_logged: false,
        })
    }

    /// Commits memory (zeroed, locked, hugepage-backed and bound to the NUMA node, each as the
    /// options ask) so that the first `bytes` bytes are usable. Never shrinks: a smaller
    /// `bytes` than `len()` does nothing. Fails past the capacity, and when a required lock or
    /// hugepage backing cannot be had; the segment is then unchanged.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), MemoryError> {
        if bytes > self.capacity {
            return Err(MemoryError::PastCapacity {
                requested: bytes,
                capacity: self.capacity,
            });
        }
        if bytes <= self.len {
            return Ok(());
        }
        if bytes > self.committed {
            // `reserved` is a multiple of 2 MiB, so this stays in bounds and 2 MiB-aligned.
            let target = round_up(bytes, sys::HUGE_PAGE)
                .unwrap_or(self.reserved)
                .min(self.reserved);
            let chunk = self.commit_chunk(self.committed, target - self.committed)?;
            let added = target - self.committed;
            self.committed = target;
            if chunk.hugetlb {
                self.hugetlb_bytes += added;
            }
            if chunk.advised {
                self.advised_bytes += added;
            }
            if chunk.locked {
                self.locked_bytes += added;
            }
            track::committed(added, chunk.locked, chunk.hugetlb);
        }
        // Bytes between the old and the new length were never handed out: still zero.
        self.len = bytes;
        Ok(())
    }

    /// Bytes usable (the committed prefix the slices cover).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is committed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the segment can grow to.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of memory the segment really holds (`len` rounded up to 2 MiB).
    pub fn committed_bytes(&self) -> usize {
        self.committed
    }

    /// The committed prefix as `f32`s (`len() / 4` of them).
    pub fn as_f32(&self) -> &[f32] {
        // SAFETY: base is 2 MiB-aligned (so f32-aligned) and the first `len` bytes are
        // committed, initialised (zero or written through as_f32_mut) read-write memory that
        // lives as long as self; any bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<f32>(), self.len / 4) }
    }

    /// The committed prefix as mutable `f32`s.
    pub fn as_f32_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in as_f32; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<f32>(), self.len / 4) }
    }

    /// The committed prefix as bytes (e.g. for a vectored write to a socket).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are committed, initialised memory owned by self.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    /// All committed memory (the usable prefix and the zeroed rest of its last 2 MiB step):
    /// what a transport registers once, so that later growth inside it needs no new
    /// registration.
    pub fn committed_region(&self) -> &[u8] {
        // SAFETY: the first `committed` bytes are committed, zero-initialised or written,
        // read-write memory owned by self.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.committed) }
    }

    /// Start of the segment, for RDMA registration: stable for the segment's lifetime, and
    /// the whole capacity can be registered once since the address range never moves (only
    /// the committed prefix may be accessed).
    pub fn as_ptr(&self) -> *const u8 {
        self.base.as_ptr()
    }

    /// What backs the committed memory.
    pub fn backing(&self) -> Backing {
        let all = |bytes: usize| self.committed > 0 && bytes == self.committed;
        Backing {
            hugepages_2m: all(self.hugetlb_bytes),
            thp_advised: all(self.advised_bytes),
            locked: all(self.locked_bytes),
            numa_node: if self.committed > 0 { self.node } else { None },
        }
    }

    /// The options the segment was reserved with.
    pub fn options(&self) -> &SegmentOptions {
        &self.opts
    }

    /// Commits `[offset, offset + len)` (2 MiB-aligned, inside the reservation, currently
    /// reserved-only).
    fn commit_chunk(&mut self, offset: usize, len: usize) -> Result<Chunk, MemoryError> {
        // SAFETY: offset < reserved, so the pointer stays inside the reservation.
        let addr = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) };
        let commit_err = |step: &'static str| {
            move |source: io::Error| MemoryError::Commit {
                offset,
                bytes: len,
                step,
                source,
            }
        };

        let mut hugetlb = self.hugetlb_wanted(len)?;
        loop {
            // SAFETY: the chunk is inside our reservation and holds nothing yet.
            match unsafe { sys::commit(addr, len, hugetlb) } {
                Ok(()) => {}
                Err(e) if hugetlb && self.opts.hugepages == HugePolicy::Auto => {
                    tracing::debug!(error = %e, "hugetlb pages unavailable, using normal pages");
                    hugetlb = false;
                    continue;
                }
                Err(e) if hugetlb => return Err(self.hugepages_unavailable(len, Some(e))),
                Err(e) => return Err(commit_err("mmap")(e)),
            }
            match self.prepare_chunk(addr, len, hugetlb) {
                Ok(chunk) => return Ok(chunk),
                Err(e) => {
                    // SAFETY: the chunk was committed just now and never handed out.
                    let _ = unsafe { sys::decommit(addr, len) };
                    if hugetlb
                        && self.opts.hugepages == HugePolicy::Auto
                        && matches!(
                            e,
                            MemoryError::Commit {
                                step: "populate",
                                ..
                            }
                        )
                    {
                        // The node ran out of hugetlb pages while faulting: use normal pages.
                        hugetlb = false;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Bind, advise, populate and lock a freshly committed chunk.
    fn prepare_chunk(
        &mut self,
        addr: NonNull<u8>,
        len: usize,
        hugetlb: bool,
    ) -> Result<Chunk, MemoryError> {
        let offset = addr.as_ptr() as usize - self.base.as_ptr() as usize;
        if let Some(node) = self.node {
            sys::bind_to_node(addr, len, node)
                .map_err(|source| MemoryError::Bind { node, source })?;
        }
        let advised = !hugetlb
            && self.opts.hugepages != HugePolicy::Off
            && sys::advise_hugepages(addr, len).is_ok();
        // SAFETY: the chunk is committed read-write memory owned by this segment.
        unsafe { sys::populate(addr, len) }.map_err(|source| MemoryError::Commit {
            offset,
            bytes: len,
            step: "populate",
            source,
        })?;
        let locked = match self.opts.lock {
            LockPolicy::Off => false,
            // hugetlb pages are never swapped or migrated, so they are locked by nature; the
            // kernel ignores mlock on them (no VM_LOCKED) but would still charge the memlock
            // limit for the call.
            _ if hugetlb => true,
            LockPolicy::Required => {
                let before = locked_bytes();
                sys::lock(addr, len).map_err(|e| lock_error(len, before, e))?;
                true
            }
            LockPolicy::BestEffort => {
                let before = locked_bytes();
                match sys::lock(addr, len) {
                    Ok(()) => true,
                    Err(e) => {
                        if !self.lock_failure_logged {
                            self.lock_failure_logged = true;
                            tracing::warn!(
                                "segment memory is not locked (LockPolicy::BestEffort): {}",
                                lock_error(len, before, e)
                            );
                        }
                        false
                    }
                }
            }
        };
        Ok(Chunk {
            hugetlb,
            advised,
            locked,
        })
    }

    /// Whether the next `len` bytes should go on hugetlb pages; errors when they must and
    /// cannot.
    fn hugetlb_wanted(&self, len: usize) -> Result<bool, MemoryError> {
        if self.opts.hugepages == HugePolicy::Off {
            return Ok(false);
        }
        let enough = self.hugetlb_shortfall(len).is_none();
        match self.opts.hugepages {
            HugePolicy::Require if !enough => Err(self.hugepages_unavailable(len, None)),
            _ => Ok(enough),
        }
    }

    /// `None` if `len` bytes of 2 MiB pages can be had (globally, and on the bound node), else
    /// `(needed, available, where)`.
    fn hugetlb_shortfall(&self, len: usize) -> Option<(usize, usize, String)> {
        let needed = len.div_ceil(sys::HUGE_PAGE);
        let status = HugepageStatus::read().ok();
        let global = match &status {
            Some(s) if s.page_bytes == sys::HUGE_PAGE as u64 => s.available() as usize,
            _ => 0,
        };
        if global < needed {
            return Some((needed, global, String::new()));
        }
        if let Some(node) = self.node {
            let on_node = node_free_2m(node).unwrap_or(0) as usize;
            if on_node < needed {
                return Some((needed, on_node, format!(" on NUMA node {node}")));
            }
        }
        None
    }

    fn hugepages_unavailable(&self, len: usize, cause: Option<io::Error>) -> MemoryError {
        let needed = len.div_ceil(sys::HUGE_PAGE);
        let (needed, available, where_) =
            self.hugetlb_shortfall(len)
                .unwrap_or((needed, 0, String::new()));
        if let Some(cause) = cause {
            tracing::debug!(error = %cause, "hugetlb mapping failed");
        }
        MemoryError::HugepagesUnavailable {
            needed,
            available,
            where_,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the reservation is owned by self and no borrow of it outlives self.
        unsafe { sys::unmap(self.base, self.reserved) };
        track::released(
            self.reserved,
            self.committed,
            self.locked_bytes,
            self.hugetlb_bytes,
        );
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("committed", &self.committed)
            .field("capacity", &self.capacity)
            .field("backing", &self.backing())
            .finish()
    }
}

/// The error for a failed mlock of `bytes`: names RLIMIT_MEMLOCK when the limit is the cause.
fn lock_error(bytes: usize, locked_before: u64, source: io::Error) -> MemoryError {
    let limit_related = matches!(
        source.raw_os_error(),
        Some(libc::ENOMEM) | Some(libc::EPERM) | Some(libc::EAGAIN)
    );
    match MemlockLimit::current() {
        Ok(limit) if limit_related && !limit.allows(locked_before, bytes as u64) => {
            MemoryError::MemlockLimit {
                bytes,
                locked_bytes: locked_before,
                limit,
                source,
            }
        }
        _ => MemoryError::Lock { bytes, source },
    }
}

fn round_up(value: usize, to: usize) -> Option<usize> {
    value.checked_add(to - 1).map(|v| v / to * to)
}
