//! Process handling: children that die with the launcher, signals to process groups, exit codes
//! and statuses in words, and the launcher's own SIGINT/SIGTERM/SIGHUP.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Makes the child die with SIGKILL when the spawning thread's process goes away (Linux).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and getppid,
    // which are async-signal-safe, and builds an io::Error without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The launcher died between fork and prctl: the death signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_command: &mut Command) {}

/// Sends `signal` to process group `group`; a group that no longer exists is not an error.
pub(crate) fn signal_group(group: libc::pid_t, signal: i32) {
    if group <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// The launcher's exit code for a child's status: its code, or 128+N for signal N.
pub(super) fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {}", signal_name(signal)),
        (None, None) => status.to_string(),
    }
}

pub(super) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    format!("{name} (signal {signal})")
}

pub(super) fn command_line(command: &Command) -> Vec<OsString> {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_os_string)
        .collect()
}

pub(super) fn display_command(words: impl AsRef<[OsString]>) -> String {
    words
        .as_ref()
        .iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last of SIGINT/SIGTERM/SIGHUP received, recorded by signal-hook's handler.
#[derive(Clone)]
pub(crate) struct SignalFlag {
    received: Arc<AtomicUsize>,
}

impl SignalFlag {
    const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    pub(crate) fn install() -> Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        for signal in Self::SIGNALS {
            signal_hook::flag::register_usize(signal, Arc::clone(&received), signal as usize)
                .with_context(|| format!("installing a handler for {}", signal_name(signal)))?;
        }
        Ok(Self { received })
    }

    pub(crate) fn peek(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }

    pub(crate) fn take(&self) -> Option<i32> {
        match self.received.swap(0, Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}
