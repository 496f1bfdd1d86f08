//! Segments on this machine: zeroed, growing in place, locked, on hugepages when the machine
//! has them, with clear errors; and a 100M-parameter table costing its size in RAM.
//!
//! The tests share the machine's hugepage pool and the process's memlock limit, so they run
//! one at a time (SERIAL). A check that cannot be made here prints `SKIPPED: <reason>`.

use std::sync::{Mutex, MutexGuard};

use ferrops_engine::memory::accounting::{resident_set_bytes, segment_totals, MappingReport};
use ferrops_engine::memory::hugepages::HugepageStatus;
use ferrops_engine::memory::numa::NumaTopology;
use ferrops_engine::memory::{
    preflight, HugePolicy, LockPolicy, MemoryError, Segment, SegmentOptions,
};

const MIB: usize = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn opts(lock: LockPolicy, hugepages: HugePolicy) -> SegmentOptions {
    SegmentOptions {
        lock,
        hugepages,
        numa_node: None,
    }
}

fn smaps(seg: &Segment) -> MappingReport {
    MappingReport::for_range(seg.as_ptr(), seg.committed_bytes()).expect("read smaps")
}

#[test]
fn segments_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Segment>();
}

#[test]
fn committed_memory_is_zeroed_and_writable() {
    let _g = serial();
    let mut seg = Segment::reserve(64 * MIB, &SegmentOptions::plain()).unwrap();
    assert!(seg.is_empty());
    assert_eq!(seg.as_f32().len(), 0);
    assert_eq!(seg.capacity(), 64 * MIB);
    seg.grow_to(10 * MIB).unwrap();
    assert_eq!(seg.len(), 10 * MIB);
    assert_eq!(seg.as_f32().len(), 10 * MIB / 4);
    assert!(seg.as_f32().iter().all(|&v| v.to_bits() == 0));
    seg.as_f32_mut().fill(1.5);
    assert!(seg.as_f32().iter().all(|&v| v == 1.5));
}

#[test]
fn growth_keeps_the_address_and_the_contents() {
    let _g = serial();
    let mut seg =
        Segment::reserve(64 * MIB + 12, &opts(LockPolicy::Off, HugePolicy::Auto)).unwrap();
    seg.grow_to(3 * MIB + 4).unwrap();
    let base = seg.as_ptr();
    for (i, v) in seg.as_f32_mut().iter_mut().enumerate() {
        *v = i as f32;
    }
    let old = seg.as_f32().len();

    seg.grow_to(40 * MIB).unwrap();
    assert_eq!(seg.as_ptr(), base, "the mapping moved");
    assert_eq!(seg.as_f32().as_ptr() as *const u8, base);
    let values = seg.as_f32();
    assert!(values[..old]
        .iter()
        .enumerate()
        .all(|(i, &v)| v == i as f32));
    assert!(values[old..].iter().all(|&v| v.to_bits() == 0));

    // Never shrinks.
    seg.grow_to(MIB).unwrap();
    assert_eq!(seg.len(), 40 * MIB);

    // Up to the exact capacity, not one byte past it.
    seg.grow_to(64 * MIB + 12).unwrap();
    assert_eq!(seg.as_ptr(), base);
    match seg.grow_to(64 * MIB + 13) {
        Err(MemoryError::PastCapacity {
            requested,
            capacity,
        }) => {
            assert_eq!((requested, capacity), (64 * MIB + 13, 64 * MIB + 12));
        }
        other => panic!("expected PastCapacity, got {other:?}"),
    }
    assert_eq!(seg.len(), 64 * MIB + 12);
    assert!(seg.as_f32()[..old]
        .iter()
        .enumerate()
        .all(|(i, &v)| v == i as f32));
}

#[test]
fn bad_requests_are_errors() {
    let _g = serial();
    assert!(matches!(
        Segment::reserve(0, &SegmentOptions::plain()),
        Err(MemoryError::ZeroCapacity)
    ));
    assert!(matches!(
        Segment::reserve(usize::MAX, &SegmentOptions::plain()),
        Err(MemoryError::CapacityTooLarge { .. })
    ));
    let far_node = SegmentOptions {
        numa_node: Some(4095),
        ..SegmentOptions::plain()
    };
    let topology = NumaTopology::get().unwrap();
    match Segment::reserve(4 * MIB, &far_node) {
        Err(MemoryError::NoSuchNode { node: 4095, .. }) => assert!(!topology.is_single_node()),
        Ok(mut seg) => {
            // One node: placement requests are accepted and ignored.
            assert!(topology.is_single_node());
            seg.grow_to(MIB).unwrap();
            assert_eq!(seg.backing().numa_node, None);
        }
        Err(e) => panic!("unexpected error {e}"),
    }
    let msg = MemoryError::PastCapacity {
        requested: 10,
        capacity: 8,
    }
    .to_string();
    assert!(msg.contains("10") && msg.contains("capacity is 8"), "{msg}");
}

#[test]
fn required_lock_locks_every_committed_page() {
    let _g = serial();
    // 4 MiB: within the default 8 MiB memlock limit, so this holds without root too.
    let mut seg = Segment::reserve(4 * MIB, &opts(LockPolicy::Required, HugePolicy::Off)).unwrap();
    seg.grow_to(4 * MIB).unwrap();
    assert!(seg.backing().locked);
    let report = smaps(&seg);
    assert!(report.mappings >= 1);
    assert!(report.all_locked_flag, "VmFlags lack `lo`: {report:?}");
    assert_eq!(report.locked_kib, 4096, "{report:?}");
    assert_eq!(report.rss_kib, 4096, "{report:?}");
    assert!(segment_totals().locked_bytes >= 4 * MIB as u64);
}

#[test]
fn lock_off_leaves_memory_unlocked() {
    let _g = serial();
    let mut seg = Segment::reserve(4 * MIB, &opts(LockPolicy::Off, HugePolicy::Off)).unwrap();
    seg.grow_to(2 * MIB).unwrap();
    assert!(!seg.backing().locked);
    let report = smaps(&seg);
    assert_eq!(report.locked_kib, 0);
    assert!(!report.all_locked_flag);
    assert!(!seg.backing().thp_advised && !report.all_hugepage_advised);
}

/// Capabilities of the calling thread (capget/capset, version 3).
mod caps {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    pub const CAP_IPC_LOCK: u32 = 14;

    /// Drops `cap` from the calling thread's effective set (other threads keep it).
    pub fn drop_effective(cap: u32) -> std::io::Result<()> {
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget writes two Data structs for version 3.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        // SAFETY: capset reads the header and two Data structs; pid 0 is this thread.
        if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Runs `f` in a thread of its own without CAP_IPC_LOCK (capabilities are per thread), under a
/// 1 MiB soft RLIMIT_MEMLOCK (per process: restored before returning; callers hold SERIAL so no
/// other test runs meanwhile).
fn under_low_memlock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let mut original = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut original) };
    assert_eq!(got, 0);
    std::thread::spawn(move || {
        caps::drop_effective(caps::CAP_IPC_LOCK).expect("capset");
        let low = libc::rlimit {
            rlim_cur: MIB as libc::rlim_t,
            rlim_max: original.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &low) }, 0);
        let result = f();
        // SAFETY: as above; raising the soft limit back up to the hard limit is always allowed.
        let restored = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &original) };
        assert_eq!(restored, 0);
        result
    })
    .join()
    .expect("low-memlock thread")
}

#[test]
fn lock_failure_names_the_memlock_limit_and_the_fix() {
    let _g = serial();
    let outcome = under_low_memlock(|| {
        Segment::reserve(8 * MIB, &opts(LockPolicy::Required, HugePolicy::Off))
            .and_then(|mut seg| seg.grow_to(8 * MIB).map(|()| seg))
            .map(|seg| seg.backing())
    });
    match outcome {
        Err(err @ MemoryError::MemlockLimit { .. }) => {
            let msg = err.to_string();
            for needle in ["RLIMIT_MEMLOCK", "ulimit -l", "1024 KiB", "limits.conf"] {
                assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
            }
        }
        other => panic!("expected a MemlockLimit error, got {other:?}"),
    }
}

#[test]
fn best_effort_lock_degrades_instead_of_failing() {
    let _g = serial();
    let (grown, zeroed, backing) = under_low_memlock(|| {
        let mut seg =
            Segment::reserve(8 * MIB, &opts(LockPolicy::BestEffort, HugePolicy::Off)).unwrap();
        let grown = seg.grow_to(8 * MIB);
        let zeroed = seg.as_f32().iter().all(|&v| v == 0.0);
        (grown, zeroed, seg.backing())
    });
    grown.unwrap();
    assert!(zeroed);
    assert!(!backing.locked);
}

#[test]
fn auto_hugepages_get_either_hugetlb_pages_or_thp_advice() {
    let _g = serial();
    let mut seg = Segment::reserve(16 * MIB, &opts(LockPolicy::Off, HugePolicy::Auto)).unwrap();
    seg.grow_to(8 * MIB).unwrap();
    let backing = seg.backing();
    let report = smaps(&seg);
    if backing.hugepages_2m {
        assert_eq!(report.kernel_page_sizes_kib, vec![2048], "{report:?}");
    } else {
        assert!(backing.thp_advised, "{backing:?}");
        assert!(report.all_hugepage_advised, "VmFlags lack `hg`: {report:?}");
        assert_eq!(seg.as_ptr() as usize % (2 * MIB), 0, "not 2 MiB aligned");
    }
}

/// Makes at least `pages` 2 MiB hugepages available, restoring the pool size on drop.
struct HugepagePool {
    restore_to: Option<u64>,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

impl HugepagePool {
    fn ensure(pages: u64) -> Result<Self, String> {
        let status = HugepageStatus::read().map_err(|e| e.to_string())?;
        if status.page_bytes != 2 * MIB as u64 {
            return Err(format!(
                "default hugepage size is {} bytes",
                status.page_bytes
            ));
        }
        if status.available() >= pages {
            return Ok(Self { restore_to: None });
        }
        let want = status.total + pages - status.available();
        std::fs::write(NR_HUGEPAGES, want.to_string())
            .map_err(|e| format!("cannot write {NR_HUGEPAGES} ({e}); run as root"))?;
        let pool = Self {
            restore_to: Some(status.total),
        };
        let now = HugepageStatus::read().map_err(|e| e.to_string())?;
        if now.available() < pages {
            return Err(format!(
                "the kernel gave {} of {pages} hugepages (memory fragmented?)",
                now.available()
            ));
        }
        Ok(pool)
    }
}

impl Drop for HugepagePool {
    fn drop(&mut self) {
        if let Some(total) = self.restore_to {
            let _ = std::fs::write(NR_HUGEPAGES, total.to_string());
        }
    }
}

#[test]
fn reserved_hugepages_back_the_segment() {
    let _g = serial();
    const PAGES: usize = 4;

    let before = HugepageStatus::read().unwrap();
    if before.available() == 0 {
        // With an empty pool, Require is an error that says how to fill it.
        let err = Segment::reserve(PAGES * 2 * MIB, &opts(LockPolicy::Off, HugePolicy::Require))
            .and_then(|mut seg| seg.grow_to(PAGES * 2 * MIB))
            .unwrap_err();
        assert!(matches!(err, MemoryError::HugepagesUnavailable { .. }));
        assert!(err.to_string().contains("vm.nr_hugepages"), "{err}");
    }

    let _pool = match HugepagePool::ensure(PAGES as u64) {
        Ok(pool) => pool,
        Err(reason) => {
            println!("SKIPPED: no 2 MiB hugepages can be reserved: {reason}");
            return;
        }
    };
    let mut seg = Segment::reserve(
        PAGES * 2 * MIB,
        &opts(LockPolicy::Required, HugePolicy::Require),
    )
    .unwrap();
    seg.grow_to(3 * MIB).unwrap();
    seg.as_f32_mut().fill(2.0);
    seg.grow_to(PAGES * 2 * MIB).unwrap();
    let backing = seg.backing();
    assert!(backing.hugepages_2m && backing.locked, "{backing:?}");
    assert!(!backing.thp_advised);
    let report = smaps(&seg);
    assert_eq!(report.kernel_page_sizes_kib, vec![2048], "{report:?}");
    assert_eq!(
        report.private_hugetlb_kib,
        (PAGES * 2048) as u64,
        "{report:?}"
    );
    // hugetlb pages are never swapped; the kernel does not mark such mappings VM_LOCKED.
    let values = seg.as_f32();
    assert!(values[..3 * MIB / 4].iter().all(|&v| v == 2.0));
    assert!(values[3 * MIB / 4..].iter().all(|&v| v == 0.0));
    assert_eq!(segment_totals().hugetlb_bytes, (PAGES * 2 * MIB) as u64);
}

#[test]
fn preflight_reports_limits_pool_and_topology() {
    let _g = serial();
    let report = preflight(&SegmentOptions::pinned(None), 800 * MIB as u64);
    assert!(report.memlock.is_some() && report.hugepages.is_some() && report.numa.is_some());
    let text = report.to_string();
    for needle in [
        "memlock:",
        "hugepages:",
        "numa:",
        "node 0",
        "800.0 MiB",
        "result:",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let impossible = SegmentOptions {
        hugepages: HugePolicy::Require,
        ..SegmentOptions::pinned(Some(4095))
    };
    let bad = preflight(&impossible, u64::MAX / 2);
    assert!(!bad.is_ok(), "{bad}");
    assert!(bad.to_string().contains("PROBLEM"), "{bad}");
}

/// 100M parameters plus one state array (an adagrad-style table): 800 MB of values must cost
/// about 800 MB of RAM, not more (no hidden copies, no page-table or allocator blow-up).
#[test]
fn hundred_million_parameters_cost_their_size() {
    let _g = serial();
    const PARAMS: usize = 100_000_000;
    const BYTES: usize = PARAMS * 4;
    let options = opts(LockPolicy::BestEffort, HugePolicy::Auto);
    let rss_before = resident_set_bytes().unwrap();
    let hugetlb_before = segment_totals().hugetlb_bytes;

    let mut weights = Segment::reserve(BYTES, &options).unwrap();
    let mut state = Segment::reserve(BYTES, &options).unwrap();
    // Grown in steps, as a table that fills up.
    for step in 1..=4 {
        weights.grow_to(BYTES * step / 4).unwrap();
        state.grow_to(BYTES * step / 4).unwrap();
    }
    weights.as_f32_mut().fill(0.5);
    for (w, s) in weights.as_f32_mut().iter_mut().zip(state.as_f32_mut()) {
        *s += 0.25;
        *w -= 0.1 / s.sqrt();
    }

    let raw = 2 * BYTES as u64;
    // hugetlb pages are not part of the resident set: count them separately.
    let hugetlb = segment_totals().hugetlb_bytes - hugetlb_before;
    let held = resident_set_bytes().unwrap().saturating_sub(rss_before) + hugetlb;
    let ratio = held as f64 / raw as f64;
    println!(
        "100M parameters + state: raw {raw} B, held {held} B (hugetlb {hugetlb} B), ratio {ratio:.4}"
    );
    assert!(
        (0.99..=1.10).contains(&ratio),
        "resident memory {held} B is not within 10% of {raw} B"
    );
    assert_eq!(weights.len() + state.len(), raw as usize);
    assert!(weights.as_f32()[PARAMS - 1] < 0.5);
}
