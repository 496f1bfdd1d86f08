//! Start-up checks: can this machine give a server the memory its options ask for? Reports the
//! memlock limit, the hugepage pool and the NUMA layout, with warnings that say what will not
//! work and how to fix it, before any segment is created. `ferrops server --print-topology`
//! prints it.

use std::fmt;

use super::accounting::format_bytes;
use super::hugepages::{node_free_2m, HugepageStatus};
use super::limits::{locked_bytes, MemlockLimit};
use super::numa::NumaTopology;
use super::options::{HugePolicy, LockPolicy, SegmentOptions};
use super::sys::HUGE_PAGE;

/// What the machine offers against what a server's segments need.
#[derive(Clone, Debug)]
pub struct Preflight {
    /// The options checked.
    pub options: SegmentOptions,
    /// Segment bytes the server expects to commit.
    pub expected_bytes: u64,
    /// The locked-memory limit (None if it could not be read).
    pub memlock: Option<MemlockLimit>,
    /// Bytes the process has locked already.
    pub locked_bytes: u64,
    /// The hugepage pool (None if /proc/meminfo could not be read).
    pub hugepages: Option<HugepageStatus>,
    /// The NUMA layout (None if it could not be discovered; see `problems`).
    pub numa: Option<NumaTopology>,
    /// Things that will fail with these options.
    pub problems: Vec<String>,
    /// Things that will work, but slower than they could.
    pub warnings: Vec<String>,
}

impl Preflight {
    /// Whether segments with these options can be created as asked.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the machine against `opts` for `expected_bytes` of segment memory. Never fails:
/// what cannot be read is reported as a problem.
pub fn preflight(opts: &SegmentOptions, expected_bytes: u64) -> Preflight {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let already_locked = locked_bytes();

    let memlock = match MemlockLimit::current() {
        Ok(limit) => Some(limit),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let Some(limit) = &memlock {
        if opts.lock != LockPolicy::Off && !limit.allows(already_locked, expected_bytes) {
            let text = format!(
                "{} of segment memory cannot be locked under the memlock limit {}: raise it \
                 with `ulimit -l unlimited` (or a memlock line in /etc/security/limits.conf, \
                 or LimitMEMLOCK=infinity for systemd); RDMA registration needs it too",
                format_bytes(expected_bytes),
                limit
            );
            if opts.lock == LockPolicy::Required {
                problems.push(text);
            } else {
                warnings.push(text);
            }
        }
    }

    let hugepages = match HugepageStatus::read() {
        Ok(status) => Some(status),
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    };
    let needed_pages = expected_bytes.div_ceil(HUGE_PAGE as u64);
    if let Some(status) = &hugepages {
        let short = status.available() < needed_pages;
        let fix = format!(
            "reserve them with `sysctl vm.nr_hugepages={}` as root",
            status.total + needed_pages.saturating_sub(status.available())
        );
        match opts.hugepages {
            HugePolicy::Require if short => problems.push(format!(
                "{needed_pages} hugepages of 2 MiB are required but {} are available; {fix}",
                status.available()
            )),
            HugePolicy::Auto if short => {
                let thp = match status.thp_mode.as_deref() {
                    Some("never") | None => "transparent hugepages are off, so normal 4 KiB pages",
                    _ => "transparent-hugepage advice",
                };
                warnings.push(format!(
                    "{needed_pages} hugepages of 2 MiB would back the segments but {} are \
                     available: they will use {thp}; {fix}",
                    status.available()
                ))
            }
            _ => {}
        }
    }

    let numa = match NumaTopology::get() {
        Ok(t) => Some(t.clone()),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let (Some(topology), Some(node)) = (&numa, opts.numa_node) {
        if topology.is_single_node() {
            warnings.push(format!(
                "NUMA node {node} was asked for, but this machine has one node: segment \
                 memory is not bound and threads are not pinned"
            ));
        } else {
            if let Err(e) = topology.require_node(node) {
                problems.push(e.to_string());
            } else if opts.hugepages != HugePolicy::Off {
                if let Some(free) = node_free_2m(node) {
                    if free < needed_pages && hugepages.as_ref().is_some_and(|h| h.total > 0) {
                        warnings.push(format!(
                            "NUMA node {node} has {free} free hugepages of 2 MiB, \
                             {needed_pages} wanted"
                        ));
                    }
                }
            }
        }
    }

    Preflight {
        options: *opts,
        expected_bytes,
        memlock,
        locked_bytes: already_locked,
        hugepages,
        numa,
        problems,
        warnings,
    }
}

impl fmt::Display for Preflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memory preflight")?;
        writeln!(
            f,
            "  segments:   {} expected; lock {:?}, hugepages {:?}, NUMA node {}",
            format_bytes(self.expected_bytes),
            self.options.lock,
            self.options.hugepages,
            self.options
                .numa_node
                .map_or_else(|| "any".to_string(), |n| n.to_string())
        )?;
        match &self.memlock {
            Some(limit) => writeln!(
                f,
                "  memlock:    {limit}; {} locked now",
                format_bytes(self.locked_bytes)
            )?,
            None => writeln!(f, "  memlock:    unknown")?,
        }
        match &self.hugepages {
            Some(h) => writeln!(f, "  hugepages:  {h}")?,
            None => writeln!(f, "  hugepages:  unknown")?,
        }
        match &self.numa {
            Some(t) => {
                let text = t.to_string();
                let mut lines = text.lines();
                if let Some(first) = lines.next() {
                    writeln!(f, "  numa:       {first}")?;
                }
                for line in lines {
                    writeln!(f, "            {line}")?;
                }
            }
            None => writeln!(f, "  numa:       unknown")?,
        }
        for p in &self.problems {
            writeln!(f, "  PROBLEM: {p}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        if self.problems.is_empty() {
            write!(f, "  result: ok")
        } else {
            write!(f, "  result: {} problem(s)", self.problems.len())
        }
    }
}
