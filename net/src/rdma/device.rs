//! Device discovery and the one-time initialisation of the verbs library.

use std::ffi::CStr;
use std::sync::OnceLock;

use sideway::ibverbs::device::{DeviceInfo as _, DeviceList};
use sideway::ibverbs::device_context::{LinkLayer, PortState};

use super::Unavailable;

/// One port of a verbs device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Port number (1-based, as verbs counts them).
    pub number: u8,
    /// Whether the port is `PORT_ACTIVE` (able to carry traffic).
    pub active: bool,
    /// The port state as verbs names it (`Active`, `Down`, ...).
    pub state: String,
    /// `InfiniBand` or `Ethernet` (RoCE, soft-RoCE).
    pub link_layer: String,
}

/// A verbs device and its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name, e.g. `mlx5_0` or `rxe0`.
    pub name: String,
    pub ports: Vec<PortInfo>,
}

impl DeviceInfo {
    /// The first active port, if any.
    pub fn active_port(&self) -> Option<&PortInfo> {
        self.ports.iter().find(|p| p.active)
    }
}

/// Why rdma-core cannot be used at all, or `None` when it loaded. Checked once: the verbs
/// library is loaded at run time, so its absence is an ordinary condition, not a crash.
fn library_problem() -> Option<&'static str> {
    static PROBLEM: OnceLock<Option<&'static str>> = OnceLock::new();
    *PROBLEM.get_or_init(|| {
        for (lib, missing) in [
            (
                c"libibverbs.so.1",
                "libibverbs.so.1 (rdma-core) is not installed",
            ),
            (
                c"librdmacm.so.1",
                "librdmacm.so.1 (rdma-core) is not installed",
            ),
        ] {
            if !can_load(lib) {
                return Some(missing);
            }
        }
        init_fork_safety();
        None
    })
}

fn can_load(lib: &CStr) -> bool {
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is closed right away (the
    // library stays loaded if the verbs wrapper also opened it, dlopen counts references).
    unsafe {
        let handle = libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

/// `ibv_fork_init`: memory registered later stays correct in a child after `fork` (the
/// launcher and tests start processes). Must run before the first registration; every entry
/// point of this module goes through [`ensure_library`] first.
fn init_fork_safety() {
    // SAFETY: plain FFI call without arguments; rdma-core is known to be loadable here.
    let rc = unsafe { rdma_mummy_sys::ibv_fork_init() };
    if rc != 0 {
        tracing::warn!(
            "ibv_fork_init failed ({}): memory registered before a fork may be unusable in the child",
            std::io::Error::from_raw_os_error(rc)
        );
    }
}

/// Loads rdma-core once (and makes it fork-safe), or says why it cannot be used.
pub(crate) fn ensure_library() -> Result<(), Unavailable> {
    match library_problem() {
        None => Ok(()),
        Some(reason) => Err(Unavailable {
            reason: reason.to_string(),
        }),
    }
}

/// Every verbs device with its ports; empty (with the reason logged at debug level) when
/// rdma-core is missing or no device exists. Never panics.
pub fn devices() -> Vec<DeviceInfo> {
    list_devices().unwrap_or_else(|why| {
        tracing::debug!("no RDMA devices: {}", why.reason);
        Vec::new()
    })
}

/// For tests that need a device: true when [`available`] finds one, else prints
/// `SKIPPED: <test>: <why>` (the form the CI logs look for) and returns false.
pub fn available_or_skip(test: &str) -> bool {
    match available() {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: {test}: {e}");
            false
        }
    }
}

/// The device `--transport auto` would use: the first one with an active port. `Err` says why
/// RDMA is unavailable (no rdma-core, no device, no active port), in words for the log.
pub fn available() -> Result<DeviceInfo, Unavailable> {
    let devices = list_devices()?;
    if devices.is_empty() {
        return Err(Unavailable {
            reason: "no verbs device (is an RDMA NIC or an rxe device configured?)".into(),
        });
    }
    if let Some(dev) = devices.iter().find(|d| d.active_port().is_some()) {
        return Ok(dev.clone());
    }
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    Err(Unavailable {
        reason: format!("no verbs device has an active port ({})", names.join(", ")),
    })
}

fn list_devices() -> Result<Vec<DeviceInfo>, Unavailable> {
    ensure_library()?;
    let list = match DeviceList::new() {
        Ok(list) => list,
        // ENOSYS / no uverbs devices: an empty list, not a failure.
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for dev in list.iter() {
        let name = dev.name();
        let mut info = DeviceInfo {
            name: name.clone(),
            ports: Vec::new(),
        };
        let ctx = match dev.open() {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::debug!("cannot open RDMA device {name}: {e}");
                out.push(info);
                continue;
            }
        };
        let ports = ctx.query_device().map(|a| a.phys_port_cnt()).unwrap_or(0);
        for number in 1..=ports {
            let Ok(attr) = ctx.query_port(number) else {
                continue;
            };
            let state = attr.port_state();
            info.ports.push(PortInfo {
                number,
                active: matches!(state, PortState::Active),
                state: format!("{state:?}"),
                link_layer: match attr.link_layer() {
                    LinkLayer::InfiniBand => "InfiniBand".into(),
                    LinkLayer::Ethernet => "Ethernet".into(),
                    LinkLayer::Unspecified => "unspecified".into(),
                },
            });
        }
        out.push(info);
    }
    Ok(out)
}
