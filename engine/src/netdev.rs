//! Which network interface carries an IP address (see `ferrops_net::netdev`), so that a server
//! can place its memory and threads on the NUMA node nearest the NIC it serves on.

pub use ferrops_net::netdev::interface_of;
