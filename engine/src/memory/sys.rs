//! Thin wrappers over the Linux system calls the memory module needs (mmap, madvise, mlock,
//! mbind, sched_setaffinity). All `unsafe` of the module that touches address ranges lives
//! here; callers own the ranges they pass in.

use std::io;
use std::ptr::NonNull;

/// Size of a normal page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// Size of the hugepages segments use (2 MiB on x86-64 and arm64 with 4 KiB base pages).
pub(crate) const HUGE_PAGE: usize = 2 << 20;

// Linux UAPI flags not exported by the libc crate.
const MPOL_F_NODE: libc::c_int = 1 << 0;
const MPOL_F_ADDR: libc::c_int = 1 << 1;
const MPOL_MF_STRICT: libc::c_uint = 1 << 0;
const MPOL_MF_MOVE: libc::c_uint = 1 << 1;

/// Reserves `len` bytes of address space aligned to `align` (a power of two), inaccessible
/// and without committing memory or swap.
pub(crate) fn reserve(len: usize, align: usize) -> io::Result<NonNull<u8>> {
    debug_assert!(align.is_power_of_two() && len & (page_size() - 1) == 0);
    let padded = len
        .checked_add(align)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a fresh anonymous PROT_NONE mapping at an address of the kernel's choosing
    // cannot alias anything.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = raw as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = padded - head - len;
    // SAFETY: both trimmed pieces lie inside the mapping just created, which nothing else
    // refers to yet.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    NonNull::new(aligned as *mut u8).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
}

/// Replaces `[addr, addr+len)` with fresh zeroed read-write anonymous memory, backed by 2 MiB
/// hugetlb pages if `hugetlb` (which reserves them now, failing with ENOMEM when too few are
/// free). Nothing is populated yet.
///
/// # Safety
/// The range must lie inside a reservation owned by the caller and hold no live data.
pub(crate) unsafe fn commit(addr: NonNull<u8>, len: usize, hugetlb: bool) -> io::Result<()> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
    if hugetlb {
        flags |= libc::MAP_HUGETLB | libc::MAP_HUGE_2MB;
    }
    // SAFETY: the caller guarantees the range is its own and unused; MAP_FIXED replaces it.
    let raw = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns `[addr, addr+len)` to the reserved, inaccessible state, freeing its memory.
///
/// # Safety
/// The range must lie inside a reservation owned by the caller, and no reference into it may
/// be used afterwards.
pub(crate) unsafe fn decommit(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is its own and unreferenced.
    let raw = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmaps a whole reservation.
///
/// # Safety
/// The range must be a reservation owned by the caller, never used again.
pub(crate) unsafe fn unmap(addr: NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        libc::munmap(addr.as_ptr().cast(), len);
    }
}

/// `madvise(MADV_HUGEPAGE)`: ask for transparent hugepages.
pub(crate) fn advise_hugepages(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: madvise with MADV_HUGEPAGE only changes how future faults are served; it never
    // invalidates memory, and fails cleanly for ranges that are not mapped.
    let rc = unsafe { libc::madvise(addr.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Faults in every page of a committed range for writing, so memory is really there (and
/// allocated under the range's NUMA policy) before anyone uses it. Errors instead of the
/// SIGBUS a plain write would get when hugetlb pages run out.
///
/// # Safety
/// The range must be committed read-write memory owned by the caller.
pub(crate) unsafe fn populate(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: MADV_POPULATE_WRITE faults pages in as a write would, without changing contents.
    let rc = unsafe { libc::madvise(addr.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // Kernels before 5.14 lack MADV_POPULATE_WRITE: touch each page instead. Writing the zero
    // that is already there changes nothing.
    let step = page_size();
    let mut offset = 0;
    while offset < len {
        // SAFETY: offset < len, inside the committed read-write range the caller owns.
        unsafe { addr.as_ptr().add(offset).write_volatile(0) };
        offset += step;
    }
    Ok(())
}

/// `mlock`: lock (and fault in) the range.
pub(crate) fn lock(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: mlock does not change memory contents; it fails cleanly for unmapped ranges.
    let rc = unsafe { libc::mlock(addr.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mbind(MPOL_BIND)` the range to one NUMA node, moving pages already present.
pub(crate) fn bind_to_node(addr: NonNull<u8>, len: usize, node: usize) -> io::Result<()> {
    let bits = libc::c_ulong::BITS as usize;
    let mut mask = vec![0 as libc::c_ulong; node / bits + 1];
    mask[node / bits] |= 1 << (node % bits);
    // The kernel reads maxnode - 1 bits (a historical off-by-one that libnuma also
    // compensates for).
    let maxnode = (mask.len() * bits + 1) as libc::c_ulong;
    // SAFETY: mbind reads `mask` (valid for maxnode - 1 bits) and only changes the placement
    // policy of the range, never its contents.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr.as_ptr(),
            len as libc::c_ulong,
            libc::MPOL_BIND as libc::c_ulong,
            mask.as_ptr(),
            maxnode,
            (MPOL_MF_STRICT | MPOL_MF_MOVE) as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The NUMA node holding the page at `addr` (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`).
/// The page must be present; an absent page is faulted in by the kernel.
pub(crate) fn node_of_address(addr: *const u8) -> io::Result<usize> {
    let mut node: libc::c_int = -1;
    // SAFETY: get_mempolicy writes one int to `node`; the null mask with maxnode 0 is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            addr,
            (MPOL_F_NODE | MPOL_F_ADDR) as libc::c_ulong,
        )
    };
    if rc == 0 && node >= 0 {
        Ok(node as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Restricts the calling thread to `cpus`.
pub(crate) fn set_thread_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= capacity {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: cpu < CPU_SETSIZE was checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs the calling thread may run on.
pub(crate) fn thread_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel writes at most size_of::<cpu_set_t>().
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index tested is below CPU_SETSIZE.
    Ok((0..capacity)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// The soft and hard RLIMIT_MEMLOCK in bytes (`None` = unlimited).
pub(crate) fn memlock_rlimit() -> io::Result<(Option<u64>, Option<u64>)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let conv = |v: libc::rlim_t| -> Option<u64> { (v != libc::RLIM_INFINITY).then_some(v) };
    Ok((conv(lim.rlim_cur), conv(lim.rlim_max)))
}
