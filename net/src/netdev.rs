//! Which network interface carries an IP address, so that a server can place its memory and
//! threads on the NUMA node nearest the NIC it serves on; and which local address routes to a
//! peer, so that a server listens on that interface only.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

/// The name of the interface that has `ip` assigned (e.g. `eth0`, `ib0`), if any. Wildcard and
/// loopback addresses have no single NIC and give `None`.
pub fn interface_of(ip: IpAddr) -> Option<String> {
    if ip.is_unspecified() || ip.is_loopback() {
        return None;
    }
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocates; we free it below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let entry = unsafe { &*cur };
        cur = entry.ifa_next;
        // SAFETY: ifa_addr is null or points to a sockaddr whose family says its real type.
        let addr = unsafe { sockaddr_ip(entry.ifa_addr) };
        if addr == Some(ip) && !entry.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(entry.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// The local address the kernel would send from to reach `to` (the address of the interface
/// that routes there), found without sending anything: a UDP socket's `connect` only looks up
/// the route. `None` when there is no route.
pub fn source_address_towards(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any).ok()?;
    probe.connect(to).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The IP address in a sockaddr, for IPv4 and IPv6.
///
/// # Safety
/// `sa` must be null or point to a valid sockaddr of the family it declares.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid sockaddr; the family field is always present.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let v4 = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
            let v6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(v6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_wildcards_have_no_nic_and_unknown_addresses_none() {
        assert_eq!(interface_of("127.0.0.1".parse().unwrap()), None);
        assert_eq!(interface_of("0.0.0.0".parse().unwrap()), None);
        assert_eq!(interface_of("::".parse().unwrap()), None);
        // TEST-NET-3 is never assigned to a real interface.
        assert_eq!(interface_of("203.0.113.254".parse().unwrap()), None);
    }

    #[test]
    fn an_address_of_this_machine_maps_to_its_interface() {
        // Find any non-loopback IPv4 address the kernel lists, and check we name its interface.
        let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
            return;
        };
        let local: Option<IpAddr> = text
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1].contains("/32 host LOCAL") && !w[0].contains("127."))
            .and_then(|w| w[0].trim().trim_start_matches("|-- ").parse().ok());
        if let Some(ip) = local {
            let name = interface_of(ip).expect("a local address has an interface");
            assert!(
                std::path::Path::new("/sys/class/net").join(&name).exists(),
                "{name}"
            );
        }
    }
}
