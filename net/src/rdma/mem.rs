//! Registered memory: owned buffers, caller buffers named to the peer, and the memlock check.

use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::sync::Arc;

use sideway::ibverbs::memory_region::{MemoryRegion, RegisterMemoryRegionErrorKind};
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::AccessFlags;

use super::RdmaError;

/// A registered buffer of the peer, as named in a request: the transport-neutral
/// [`crate::RemoteRegion`], under the name the RDMA connection has always used.
pub type RemoteBuf = crate::RemoteRegion;

/// A caller's buffer registered for remote writes, for as long as the borrow lasts.
#[derive(Debug)]
pub struct Registration<'a> {
    mr: Arc<MemoryRegion>,
    len: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

impl Registration<'_> {
    /// Whether `bytes` lies inside the registered memory.
    pub(crate) fn covers(&self, bytes: &[u8]) -> bool {
        let (start, a) = (self.mr.get_ptr(), bytes.as_ptr() as usize);
        a >= start && a + bytes.len() <= start + self.len
    }

    pub(crate) fn region(&self) -> &Arc<MemoryRegion> {
        &self.mr
    }

    /// The name to put in a request.
    pub fn remote(&self) -> RemoteBuf {
        RemoteBuf {
            addr: self.mr.get_ptr() as u64,
            rkey: self.mr.rkey(),
            len: self.len as u32,
        }
    }
}

impl<'a> Registration<'a> {
    pub(crate) fn new(pd: &Arc<ProtectionDomain>, buf: &'a mut [u8]) -> Result<Self, RdmaError> {
        if buf.len() > u32::MAX as usize {
            return Err(RdmaError::Protocol(format!(
                "a remote buffer holds at most 4 GiB, not {} bytes",
                buf.len()
            )));
        }
        let mr = register(
            pd,
            buf.as_mut_ptr() as usize,
            buf.len().max(1),
            AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
        )?;
        Ok(Registration {
            mr,
            len: buf.len(),
            _buf: PhantomData,
        })
    }
}

/// An owned, 8-byte-aligned, registered buffer (receive slots, send slots, staging).
#[derive(Debug)]
pub(crate) struct RegMem {
    // Dropped first: deregistration before the memory goes away.
    mr: Arc<MemoryRegion>,
    data: Vec<u64>,
}

impl RegMem {
    pub(crate) fn new(pd: &Arc<ProtectionDomain>, len: usize) -> Result<RegMem, RdmaError> {
        let mut data = vec![0u64; len.div_ceil(8).max(1)];
        let mr = register(
            pd,
            data.as_mut_ptr() as usize,
            data.len() * 8,
            AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
        )?;
        Ok(RegMem { mr, data })
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len() * 8
    }

    pub(crate) fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    pub(crate) fn addr(&self) -> u64 {
        self.data.as_ptr() as u64
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(&self.data[..])
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        zerocopy::IntoBytes::as_mut_bytes(&mut self.data[..])
    }
}

/// `ibv_reg_mr` with the memlock diagnosis. The caller keeps `ptr..ptr + len` alive and in
/// place for as long as the returned region exists.
pub(crate) fn register(
    pd: &Arc<ProtectionDomain>,
    ptr: usize,
    len: usize,
    access: AccessFlags,
) -> Result<Arc<MemoryRegion>, RdmaError> {
    // SAFETY: every caller passes memory it owns or borrows for at least as long as the region
    // lives (RegMem drops the region before its Vec; Registration borrows the slice; bulk
    // receive buffers are kept alive beside their region until the transfer completed).
    let res = unsafe { pd.reg_mr(ptr, len, access) };
    res.map_err(|e| {
        let errno = match &e.0 {
            RegisterMemoryRegionErrorKind::Ibverbs(io) => io.raw_os_error(),
            _ => None,
        };
        if matches!(errno, Some(libc::ENOMEM) | Some(libc::EPERM)) {
            if let Some(limit) = memlock_limit_if_tight(len) {
                return RdmaError::Memlock { len, limit };
            }
        }
        RdmaError::Verbs {
            op: "ibv_reg_mr",
            source: std::io::Error::from_raw_os_error(errno.unwrap_or(libc::EIO)),
        }
    })
}

/// The memlock limit in words when it is finite (so a registration can have hit it).
fn memlock_limit_if_tight(_len: usize) -> Option<String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(format!(
        "{} KiB (hard limit {})",
        lim.rlim_cur / 1024,
        if lim.rlim_max == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", lim.rlim_max / 1024)
        }
    ))
}

/// The IPv4 address of the network interface under RDMA device `device` (RoCE, soft-RoCE),
/// read from sysfs and the interface list: the address to bind and advertise for rdma_cm.
pub fn device_ipv4(device: &str) -> Option<Ipv4Addr> {
    let base = format!("/sys/class/infiniband/{device}/ports");
    let mut ifnames = Vec::new();
    for port in std::fs::read_dir(&base).ok()?.flatten() {
        let ndevs = port.path().join("gid_attrs/ndevs");
        for entry in std::fs::read_dir(ndevs).into_iter().flatten().flatten() {
            if let Ok(name) = std::fs::read_to_string(entry.path()) {
                let name = name.trim().to_string();
                if !name.is_empty() && !ifnames.contains(&name) {
                    ifnames.push(name);
                }
            }
        }
    }
    ifnames.iter().find_map(|name| interface_ipv4(name))
}

fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let ifname = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if ifname == name {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
        }
        libc::freeifaddrs(list);
        found
    }
}
