//! The run's private network: one network namespace per node slot (scheduler, servers and
//! spares, workers), each with one veth whose other end sits on a bridge inside a hub
//! namespace of its own. Nothing is created in the caller's namespace, so the addresses
//! (10.77.N.0/24) never meet another network, and the names carry the harness's pid, so
//! parallel runs do not clash. Everything is removed when the [`Network`] is dropped, and
//! namespaces left by a run that was killed are swept at the next start.
//!
//! A partition takes a node's veth (its hub end) down and up again; `--netem` puts a netem
//! qdisc on every node's side.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Every namespace of a run is named `PREFIX<pid>-...`.
const PREFIX: &str = "ferrops-faults-";

/// The interface name of a node's end of its veth, inside its namespace.
pub const NODE_IFACE: &str = "eth0";

/// Why the network could not be made: the host does not allow it (the run is skipped), or
/// something else went wrong.
pub enum SetupError {
    /// Namespaces, veth or bridges are not available here (not root, a kernel without them).
    Unsupported(String),
    /// Any other failure.
    Failed(anyhow::Error),
}

/// The run's namespaces and links; torn down on drop.
pub struct Network {
    prefix: String,
    octet: u8,
    hub: String,
    /// The node namespaces created, by slot.
    nodes: Vec<String>,
}

impl Network {
    /// Creates the hub and `slots` node namespaces, each node at [`Network::addr`] on the
    /// bridge. Sweeps namespaces of earlier runs whose harness is gone first.
    pub fn create(slots: usize) -> Result<Network, SetupError> {
        sweep_stale();
        let pid = std::process::id();
        let prefix = format!("{PREFIX}{pid}-");
        let mut net = Network {
            octet: (pid % 200 + 20) as u8,
            hub: format!("{prefix}hub"),
            prefix,
            nodes: Vec::new(),
        };
        if let Err(why) = ip(&["netns", "add", &net.hub]) {
            return Err(SetupError::Unsupported(format!(
                "cannot create a network namespace: {why:#}"
            )));
        }
        let hub = net.hub.clone();
        let bridge = [
            vec!["-n", &hub, "link", "add", "br0", "type", "bridge"],
            vec!["-n", &hub, "link", "set", "br0", "up"],
            vec!["-n", &hub, "link", "set", "lo", "up"],
        ];
        for args in bridge {
            if let Err(why) = ip(&args) {
                return Err(SetupError::Unsupported(format!(
                    "cannot create a bridge: {why:#}"
                )));
            }
        }
        for slot in 0..slots {
            net.add_node(slot)?;
        }
        Ok(net)
    }

    fn add_node(&mut self, slot: usize) -> Result<(), SetupError> {
        let ns = format!("{}n{slot}", self.prefix);
        ip(&["netns", "add", &ns]).map_err(SetupError::Failed)?;
        self.nodes.push(ns.clone());
        let veth = hub_iface(slot);
        if let Err(why) = ip(&[
            "-n", &self.hub, "link", "add", &veth, "type", "veth", "peer", "name", NODE_IFACE,
            "netns", &ns,
        ]) {
            return Err(SetupError::Unsupported(format!(
                "cannot create a veth pair: {why:#}"
            )));
        }
        let addr = format!("{}/24", self.addr(slot));
        let steps = [
            vec!["-n", &self.hub, "link", "set", &veth, "master", "br0"],
            vec!["-n", &self.hub, "link", "set", &veth, "up"],
            vec!["-n", &ns, "addr", "add", &addr, "dev", NODE_IFACE],
            vec!["-n", &ns, "link", "set", NODE_IFACE, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ];
        for args in steps {
            ip(&args).map_err(SetupError::Failed)?;
        }
        Ok(())
    }

    /// The address of `slot`'s node: 10.77.N.(10 + slot).
    pub fn addr(&self, slot: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.octet, 10 + slot as u8)
    }

    /// The slot whose node has `addr`, if it is one of this network's.
    pub fn slot_of(&self, addr: Ipv4Addr) -> Option<usize> {
        let [a, b, c, d] = addr.octets();
        let slot = usize::from(d).checked_sub(10)?;
        ((a, b, c) == (10, 77, self.octet) && slot < self.nodes.len()).then_some(slot)
    }

    /// The namespace of `slot`'s node.
    pub fn namespace(&self, slot: usize) -> &str {
        &self.nodes[slot]
    }

    /// Cuts `slot`'s node off the bridge (`up` false) or connects it again.
    pub fn set_link(&self, slot: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hub, "link", "set", &hub_iface(slot), state])
            .with_context(|| format!("taking the veth of slot {slot} {state}"))
    }

    /// Forgets what every node learnt about its neighbours, so that a job does not inherit the
    /// last one's: a neighbour found unreachable during a partition stays `FAILED` for a while,
    /// and connections to it then fail at once (`No route to host`).
    pub fn forget_neighbours(&self) -> Result<()> {
        for ns in &self.nodes {
            ip(&["-n", ns, "neigh", "flush", "all"])?;
        }
        Ok(())
    }

    /// Adds `netem` (`delay 5ms loss 1%`) as the root qdisc of every node's interface.
    /// `Ok(false)` when this kernel has no netem qdisc.
    pub fn apply_netem(&self, netem: &str) -> Result<bool> {
        // The module may be loadable though not loaded; a failure here shows up below.
        let _ = Command::new("modprobe")
            .arg("sch_netem")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for ns in &self.nodes {
            let mut args = vec![
                "netns", "exec", ns, "tc", "qdisc", "add", "dev", NODE_IFACE, "root", "netem",
            ];
            args.extend(netem.split_whitespace());
            let out = run_ip(&args)?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("qdisc kind is unknown") || err.contains("No such file") {
                    return Ok(false);
                }
                bail!("tc qdisc add ... netem {netem} in {ns}: {}", err.trim());
            }
        }
        Ok(true)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            if let Err(why) = ip(&["netns", "del", ns]) {
                tracing::warn!("cannot remove network namespace {ns}: {why:#}");
            }
        }
    }
}

/// The hub end of `slot`'s veth.
fn hub_iface(slot: usize) -> String {
    format!("v{slot}")
}

/// Removes the namespaces of earlier runs whose harness process no longer exists.
fn sweep_stale() {
    let Ok(out) = run_ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `ip ARGS` and returns its output.
fn run_ip(args: &[&str]) -> Result<Output> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `ip {}`", args.join(" ")))
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = run_ip(args)?;
    if !out.status.success() {
        bail!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
