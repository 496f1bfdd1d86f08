//! The job as its scheduler sees it (`ferrops ctl status --json`, run inside the scheduler's
//! namespace), and which servers a fault may hit without taking a range's last copy: the
//! harness tests recovery, not the loss of every copy (which ends a job by design).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrops_engine::control::JobStatus;

/// How long one status question may take (a survey waits for every server's answer).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the scheduler at `scheduler` (from `namespace`) for the job's status.
pub fn query(
    exe: &Path,
    namespace: &str,
    scheduler: SocketAddr,
    secret: &str,
) -> Result<JobStatus> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(exe)
        .args([
            "ctl",
            "status",
            "--json",
            "--scheduler",
            &scheduler.to_string(),
        ])
        .env("FERROPS_SECRET", secret)
        .env("FERROPS_LOG", "error")
        .env_remove("FERROPS_CONFIG")
        .env_remove("FERROPS_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting `ferrops ctl status`")?;
    let deadline = Instant::now() + STATUS_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`ferrops ctl status` did not answer within {STATUS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`ferrops ctl status`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    JobStatus::from_json(String::from_utf8_lossy(&out.stdout).trim())
        .context("reading `ferrops ctl status --json`")
}

/// The addresses of the live servers whose death leaves every range at least one whole copy:
/// every range such a server holds is held by another live server too. A server that holds
/// nothing (a spare, or a learner whose copy is still under way) qualifies.
pub fn expendable(status: &JobStatus) -> Vec<Ipv4Addr> {
    let live: Vec<_> = status.servers.iter().filter(|s| s.member.live).collect();
    live.iter()
        .filter(|s| {
            s.holds.iter().all(|range| {
                live.iter()
                    .any(|o| o.member.rank != s.member.rank && o.holds.contains(range))
            })
        })
        .filter_map(|s| s.addr.parse::<SocketAddr>().ok())
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .collect()
}

/// The slowest live worker's clock, once every live worker has completed one (the job runs);
/// `None` before.
pub fn slowest_clock(status: &JobStatus) -> Option<u32> {
    let clocks = status
        .workers
        .iter()
        .filter(|w| w.member.live)
        .map(|w| w.clock.unwrap_or(0));
    clocks.min().filter(|&c| c > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrops_engine::control::status::{Member, ServerStatus};

    fn server(rank: u32, port: u16, holds: &[[u64; 2]]) -> ServerStatus {
        ServerStatus {
            member: Member {
                id: rank + 1,
                rank,
                live: true,
                last_heard_ms: None,
            },
            addr: format!("10.77.1.{}:{port}", 10 + rank),
            holds: holds.to_vec(),
            ..ServerStatus::default()
        }
    }

    #[test]
    fn a_server_holding_a_ranges_last_copy_is_not_expendable() {
        let (a, b) = ([0, 9], [10, 19]);
        let status = JobStatus {
            servers: vec![server(0, 1, &[a, b]), server(1, 1, &[a]), server(2, 1, &[])],
            ..JobStatus::default()
        };
        let ips: Vec<_> = expendable(&status)
            .iter()
            .map(|ip| ip.octets()[3])
            .collect();
        assert_eq!(ips, [11, 12], "server 0 alone holds range b");
    }
}
