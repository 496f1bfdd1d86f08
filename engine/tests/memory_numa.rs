//! NUMA placement, checked against the kernel: segment pages sit on the node they were bound
//! to, and a thread pinned to a node runs only on that node's CPUs.
//!
//! Meaningful only with two or more NUMA nodes; CI runs it in a two-node QEMU guest
//! (`ci/vm-run.sh --numa 2 -- <this test binary> --nocapture`) and fails if it prints
//! `SKIPPED:`. On a one-node machine every test prints `SKIPPED: one NUMA node` and passes.
//!
//! The checks read the kernel directly (get_mempolicy, sched_getaffinity, sysfs), not through
//! the placement code under test; page nodes come from `numa::node_of_address`, a bare
//! get_mempolicy wrapper that the placement code itself never calls.

use std::fs;

use ferrops_engine::memory::numa::{node_of_address, NumaTopology};
use ferrops_engine::memory::{
    node_of_netdev, pin_current_thread_to_node, HugePolicy, LockPolicy, Segment, SegmentOptions,
};

const MIB: usize = 1 << 20;

/// The node to place things on: node 1 when it exists (node 0 is where memory lands by
/// default, so it would prove nothing), or None on a one-node machine.
fn target_node() -> Option<usize> {
    let topology = NumaTopology::get().expect("NUMA topology");
    if topology.is_single_node() {
        println!("SKIPPED: one NUMA node");
        return None;
    }
    let node = if topology.node(1).is_some() {
        1
    } else {
        topology.nodes.last().unwrap().os_index
    };
    println!("placing on node {node} of:\n{topology}");
    Some(node)
}

/// Asserts every page of `[start, start + len)` sits on `node`; returns how many were checked.
fn assert_pages_on(start: *const u8, len: usize, page: usize, node: usize) -> usize {
    let mut checked = 0;
    for offset in (0..len).step_by(page) {
        // SAFETY: offset < len, inside the committed part of the segment.
        let addr = unsafe { start.add(offset) };
        let found = node_of_address(addr).expect("get_mempolicy");
        assert_eq!(found, node, "page at offset {offset} is on node {found}");
        checked += 1;
    }
    checked
}

/// CPUs of a node according to sysfs ("0-3,8").
fn sysfs_node_cpus(node: usize) -> Vec<usize> {
    let text = fs::read_to_string(format!("/sys/devices/system/node/node{node}/cpulist"))
        .expect("node cpulist");
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Runs `f` on a thread restricted (directly through sched_setaffinity) to the CPUs of
/// `node`, so memory the kernel places by default ("local") goes to `node`.
fn on_cpus_of<T: Send + 'static>(node: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in sysfs_node_cpus(node) {
            // SAFETY: CPU numbers from sysfs are below CPU_SETSIZE on the machines we run.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: pid 0 is this thread; `set` is a valid cpu_set_t.
        assert_eq!(unsafe { libc::sched_setaffinity(0, size, &set) }, 0);
        f()
    })
    .join()
    .expect("test thread")
}

/// A node other than `node`.
fn other_node(node: usize) -> usize {
    let topology = NumaTopology::get().unwrap();
    topology
        .nodes
        .iter()
        .map(|n| n.os_index)
        .find(|&n| n != node && !sysfs_node_cpus(n).is_empty())
        .expect("another node with cpus")
}

fn affinity() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain bits; the kernel writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread.
    assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
    // SAFETY: every index is below CPU_SETSIZE.
    (0..8 * size)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[test]
fn segment_pages_sit_on_the_chosen_node() {
    let Some(node) = target_node() else { return };
    // Allocate from a thread running on another node, where default placement would put the
    // pages: only the binding can bring them to `node`.
    let elsewhere = other_node(node);
    on_cpus_of(elsewhere, move || {
        // Control: without a node, pages land next to the allocating thread, so the check
        // below can tell the difference.
        let mut control = Segment::reserve(4 * MIB, &SegmentOptions::plain()).unwrap();
        control.grow_to(4 * MIB).unwrap();
        assert_eq!(control.backing().numa_node, None);
        assert_pages_on(control.as_ptr(), control.len(), 4096, elsewhere);

        let opts = SegmentOptions {
            lock: LockPolicy::Required,
            hugepages: HugePolicy::Auto,
            numa_node: Some(node),
        };
        let mut seg = Segment::reserve(64 * MIB, &opts).unwrap();
        seg.grow_to(6 * MIB).unwrap();
        seg.as_f32_mut().fill(3.0);
        seg.grow_to(24 * MIB).unwrap();
        assert_eq!(seg.backing().numa_node, Some(node));
        assert!(seg.backing().locked);
        let checked = assert_pages_on(seg.as_ptr(), seg.len(), 4096, node);
        assert!(seg.as_f32()[..6 * MIB / 4].iter().all(|&v| v == 3.0));
        println!(
            "{checked} pages of a {} MiB segment grown from node {elsewhere} are on node \
             {node}: {:?}",
            seg.len() / MIB,
            seg.backing()
        );
    });
}

/// A node's 2 MiB hugepage pool, grown for a test and restored on drop.
struct NodePool {
    dir: String,
    restore_to: usize,
}

impl NodePool {
    fn read(dir: &str, file: &str) -> usize {
        fs::read_to_string(format!("{dir}/{file}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// At least `pages` free hugepages on `node`.
    fn ensure(node: usize, pages: usize) -> Result<Self, String> {
        let dir = format!("/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB");
        let total = Self::read(&dir, "nr_hugepages");
        let pool = Self {
            dir,
            restore_to: total,
        };
        let free = Self::read(&pool.dir, "free_hugepages");
        if free < pages {
            fs::write(
                format!("{}/nr_hugepages", pool.dir),
                (total + pages - free).to_string(),
            )
            .map_err(|e| format!("cannot grow the hugepage pool of node {node}: {e}"))?;
            let now = Self::read(&pool.dir, "free_hugepages");
            if now < pages {
                return Err(format!("node {node} got {now} of {pages} hugepages"));
            }
        }
        Ok(pool)
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        let _ = fs::write(
            format!("{}/nr_hugepages", self.dir),
            self.restore_to.to_string(),
        );
    }
}

#[test]
fn hugetlb_segment_pages_sit_on_the_chosen_node() {
    let Some(node) = target_node() else { return };
    const PAGES: usize = 8;
    let elsewhere = other_node(node);
    // Free hugepages on both nodes, so that default placement (next to the allocating thread,
    // on `elsewhere`) would succeed and only the binding brings the pages to `node`.
    let pools = NodePool::ensure(node, PAGES)
        .and_then(|a| NodePool::ensure(elsewhere, PAGES).map(|b| (a, b)));
    let _pools = match pools {
        Ok(pools) => pools,
        Err(reason) => {
            println!("SKIPPED: {reason}");
            return;
        }
    };
    let opts = SegmentOptions {
        lock: LockPolicy::Required,
        hugepages: HugePolicy::Require,
        numa_node: Some(node),
    };
    let seg = on_cpus_of(elsewhere, move || {
        Segment::reserve(PAGES * 2 * MIB, &opts).and_then(|mut seg| {
            seg.grow_to(PAGES * 2 * MIB)?;
            Ok(seg)
        })
    })
    .unwrap_or_else(|e| panic!("hugetlb segment on node {node}: {e}"));
    assert!(seg.backing().hugepages_2m);
    let checked = assert_pages_on(seg.as_ptr(), seg.len(), 2 * MIB, node);
    println!("{checked} hugetlb pages grown from node {elsewhere} are on node {node}");
}

#[test]
fn pinned_thread_runs_on_the_node_cpus() {
    let Some(node) = target_node() else { return };
    let expected = sysfs_node_cpus(node);
    assert!(!expected.is_empty(), "node {node} has no cpus");
    let (mask, ran_on) = std::thread::spawn(move || {
        pin_current_thread_to_node(node).unwrap();
        std::thread::yield_now();
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        (affinity(), cpu)
    })
    .join()
    .unwrap();
    assert!(!mask.is_empty());
    assert!(
        mask.iter().all(|c| expected.contains(c)),
        "affinity {mask:?} is not within node {node}'s cpus {expected:?}"
    );
    assert!(ran_on >= 0 && expected.contains(&(ran_on as usize)));
    println!("thread pinned to node {node}: cpus {mask:?}, ran on cpu {ran_on}");
}

#[test]
fn nic_locality_is_reported_without_error() {
    let Some(_) = target_node() else { return };
    // A virtual NIC may well have no locality; the lookup must still answer.
    for dev in fs::read_dir("/sys/class/net").unwrap().flatten() {
        let name = dev.file_name().to_string_lossy().into_owned();
        let node = node_of_netdev(&name).unwrap();
        println!("interface {name}: node {node:?}");
    }
}
