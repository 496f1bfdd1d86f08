//! Setting a connection up: the dialer makes a sealed memfd holding both rings and passes it
//! with `SCM_RIGHTS` over a Unix socket in the abstract namespace; the acceptor checks the
//! file (size, seals) before mapping it.
//!
//! The setup message is [`MAGIC`] and the ring capacity, 8 bytes each (little-endian), with
//! the memfd attached. Mapping layout: the dialer→acceptor ring at 0, the acceptor→dialer ring
//! right after it, each [`super::ring::ring_bytes`]`(capacity)` bytes.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::time::Duration;

use super::ring::ring_bytes;
use super::ShmError;

/// Marks a ferrops shared-memory setup message ("FRPSSHM1").
const MAGIC: u64 = 0x3148_4d53_5350_5246;
/// The smallest and largest ring a peer may ask for.
pub const MIN_RING: usize = 4096;
pub const MAX_RING: usize = 1 << 30;

/// The abstract-namespace name of the shared-memory listener of the server that workers
/// know by the TCP address `server` (one host, one network namespace). The whole address,
/// not just the port, so that two servers on one host with the same port on different
/// addresses can never be mistaken for each other.
pub fn socket_name(server: SocketAddr) -> String {
    format!("ferrops-shm-{server}")
}

fn abstract_addr(server: SocketAddr) -> io::Result<UnixAddr> {
    UnixAddr::from_abstract_name(socket_name(server).as_bytes())
}

/// Binds the listener for the shared-memory connections of the server known as `server`.
pub fn bind(server: SocketAddr) -> Result<UnixListener, ShmError> {
    UnixListener::bind_addr(&abstract_addr(server)?).map_err(|source| ShmError::Listen {
        name: socket_name(server),
        source,
    })
}

/// Both rings of a connection in one shared mapping; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
    pub(crate) capacity: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it between threads
// moves the ownership.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `fd`, which holds at least `2 * ring_bytes(capacity)` bytes and is sealed
    /// against shrinking (so no access can fault past its end).
    fn map(fd: &OwnedFd, capacity: usize) -> Result<Mapping, ShmError> {
        let len = 2 * ring_bytes(capacity);
        // SAFETY: a fresh shared mapping of `len` bytes of `fd`; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ShmError::os("mmap"));
        }
        Ok(Mapping {
            base: base.cast(),
            len,
            capacity,
        })
    }

    /// Both rings in a fresh memfd of this process (for measuring the rings alone).
    pub(crate) fn local(capacity: usize) -> Result<Mapping, ShmError> {
        let fd = create_memfd(capacity)?;
        Mapping::map(&fd, capacity)
    }

    /// The start of ring `i` (0: dialer→acceptor, 1: acceptor→dialer).
    pub(crate) fn ring(&self, i: usize) -> *mut u8 {
        // SAFETY: both rings lie inside the mapping (see `Mapping::map`).
        unsafe { self.base.add(i * ring_bytes(self.capacity)) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; the rings pointing into it are dropped
        // with the connection that owns this mapping.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// Makes the shared file for rings of `capacity` bytes, sealed against resizing.
fn create_memfd(capacity: usize) -> Result<OwnedFd, ShmError> {
    // SAFETY: a NUL-terminated name; the returned fd (checked) is owned from here on.
    let fd = unsafe {
        libc::memfd_create(
            c"ferrops-shm".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(ShmError::os("memfd_create"));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = (2 * ring_bytes(capacity)) as libc::off_t;
    // SAFETY: plain system calls on an fd this function owns.
    unsafe {
        if libc::ftruncate(fd.as_raw_fd(), len) != 0 {
            return Err(ShmError::os("ftruncate"));
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
            return Err(ShmError::os("fcntl(F_ADD_SEALS)"));
        }
    }
    Ok(fd)
}

/// Checks a file received from a peer before it is mapped: sealed against shrinking (else the
/// peer could truncate it and make our accesses fault) and large enough for both rings.
fn check_memfd(fd: &OwnedFd, capacity: usize) -> Result<(), ShmError> {
    // SAFETY: plain system calls on a valid fd; `st` is written by fstat before it is read.
    let (seals, size) = unsafe {
        let seals = libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS);
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(ShmError::os("fstat"));
        }
        (seals, st.st_size)
    };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(ShmError::Setup(
            "the peer's shared memory is not sealed against shrinking".into(),
        ));
    }
    let need = 2 * ring_bytes(capacity);
    if size < 0 || (size as u64) < need as u64 {
        return Err(ShmError::Setup(format!(
            "the peer's shared memory has {size} bytes, rings of {capacity} need {need}"
        )));
    }
    Ok(())
}

/// Dials the listener of the server known as `server` with rings of `capacity` bytes;
/// returns the socket and the mapping (this side writes ring 0 and reads ring 1).
pub(crate) fn dial(
    server: SocketAddr,
    capacity: usize,
    timeout: Duration,
) -> Result<(UnixStream, Mapping), ShmError> {
    if !capacity.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&capacity) {
        return Err(ShmError::Setup(format!(
            "ring capacity {capacity} is not a power of two in {MIN_RING}..={MAX_RING}"
        )));
    }
    let sock =
        UnixStream::connect_addr(&abstract_addr(server)?).map_err(|source| ShmError::Connect {
            name: socket_name(server),
            source,
        })?;
    sock.set_write_timeout(Some(timeout))?;
    let fd = create_memfd(capacity)?;
    let map = Mapping::map(&fd, capacity)?;
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(&MAGIC.to_le_bytes());
    msg[8..].copy_from_slice(&(capacity as u64).to_le_bytes());
    send_fd(&sock, &msg, fd.as_raw_fd())?;
    Ok((sock, map))
}

/// Takes the setup message of a freshly accepted connection (waiting up to `timeout`) and maps
/// the peer's file; this side reads ring 0 and writes ring 1.
pub(crate) fn accept(sock: &UnixStream, timeout: Duration) -> Result<Mapping, ShmError> {
    sock.set_read_timeout(Some(timeout))?;
    let (msg, fd) = recv_fd(sock)?;
    let magic = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return Err(ShmError::Setup(format!(
            "bad setup magic 0x{magic:016x}: not a ferrops peer"
        )));
    }
    let capacity = u64::from_le_bytes(msg[8..].try_into().expect("8 bytes"));
    let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
    if !capacity.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&capacity) {
        return Err(ShmError::Setup(format!(
            "the peer asked for rings of {capacity} bytes (a power of two in \
             {MIN_RING}..={MAX_RING} is accepted)"
        )));
    }
    check_memfd(&fd, capacity)?;
    sock.set_read_timeout(None)?;
    Mapping::map(&fd, capacity)
}

fn send_fd(sock: &UnixStream, msg: &[u8; 16], fd: RawFd) -> Result<(), ShmError> {
    let iov = [IoSlice::new(msg)];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: `hdr` points at `iov` and `control`, both alive for the call; the control
    // buffer is CMSG_SPACE bytes for one fd and aligned for cmsghdr (u64 storage), so the
    // first header and its data fit.
    let sent = unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = iov.as_ptr() as *mut libc::iovec;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL)
    };
    if sent != msg.len() as isize {
        return Err(ShmError::os("sendmsg"));
    }
    Ok(())
}

fn recv_fd(sock: &UnixStream) -> Result<([u8; 16], OwnedFd), ShmError> {
    let mut msg = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut msg)];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: as in `send_fd`; the kernel writes at most `msg_controllen` control bytes, and
    // every header is checked (level, type, length) before its fd is read. MSG_CMSG_CLOEXEC
    // keeps the fd out of child processes.
    let (n, fd, truncated) = unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = iov.as_mut_ptr() as *mut libc::iovec;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = space as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(ShmError::os("recvmsg"));
        }
        let mut fd = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            let want = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            if (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                && (*cmsg).cmsg_len as usize == want
                && fd.is_none()
            {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
        (n as usize, fd, hdr.msg_flags & libc::MSG_CTRUNC != 0)
    };
    if n != msg.len() || truncated {
        return Err(ShmError::Setup(format!(
            "the setup message has {n} bytes (expected {}){}",
            msg.len(),
            if truncated { " and too many fds" } else { "" }
        )));
    }
    let fd = fd.ok_or_else(|| ShmError::Setup("the setup message carries no fd".into()))?;
    Ok((msg, fd))
}
