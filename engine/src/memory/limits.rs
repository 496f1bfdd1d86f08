//! The locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) and the capability that overrides it.

use std::fmt;

use super::accounting::{format_bytes, proc_status_kib};
use super::sys;
use super::MemoryError;

/// The process's locked-memory limit and whether it binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    /// Soft limit in bytes (`None`: unlimited). This is the one that applies.
    pub soft: Option<u64>,
    /// Hard limit in bytes (`None`: unlimited): how far an unprivileged process may raise it.
    pub hard: Option<u64>,
    /// The calling thread has CAP_IPC_LOCK (e.g. runs as root), so the limit does not apply.
    pub cap_ipc_lock: bool,
}

impl MemlockLimit {
    /// Reads the limit and the calling thread's capability.
    pub fn current() -> Result<Self, MemoryError> {
        let (soft, hard) =
            sys::memlock_rlimit().map_err(|e| MemoryError::read("getrlimit(RLIMIT_MEMLOCK)", e))?;
        Ok(Self {
            soft,
            hard,
            cap_ipc_lock: has_cap_ipc_lock(),
        })
    }

    /// Whether `bytes` more can be locked given `already_locked` bytes locked by the process.
    pub fn allows(&self, already_locked: u64, bytes: u64) -> bool {
        match self.soft {
            _ if self.cap_ipc_lock => true,
            None => true,
            Some(soft) => already_locked.saturating_add(bytes) <= soft,
        }
    }
}

impl fmt::Display for MemlockLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<u64>| match v {
            None => "unlimited".to_string(),
            Some(b) => format!("{} KiB ({})", b / 1024, format_bytes(b)),
        };
        write!(f, "{} (hard limit {})", show(self.soft), show(self.hard))?;
        if self.cap_ipc_lock {
            write!(f, ", not enforced: the process has CAP_IPC_LOCK")?;
        }
        Ok(())
    }
}

/// Bytes the process has locked (VmLck of /proc/self/status); 0 if unreadable.
pub fn locked_bytes() -> u64 {
    proc_status_kib("/proc/self/status", "VmLck:").map_or(0, |kib| kib * 1024)
}

/// CAP_IPC_LOCK (capability 14) in the calling thread's effective set.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}
