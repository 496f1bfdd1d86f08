//! Choosing and injecting one fault: a kind from those asked for, a target among the servers
//! the job can lose (by the scheduler's status; the scheduler itself for `scheduler`), and for
//! stalls, partitions and the scheduler's outage a duration on the asked side of the heartbeat
//! timeout. Injection blocks for that duration.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ferrops::internal::synth::Rng;

use super::job::Job;
use super::kinds::{Fault, FaultKind, Hold};
use super::netns::Network;
use super::status;

/// What the injector needs besides the job.
pub struct Injector<'a> {
    pub net: &'a Network,
    pub exe: &'a Path,
    pub secret: &'a str,
    pub kinds: &'a [FaultKind],
    pub hold: Hold,
    pub heartbeat_timeout: Duration,
}

impl Injector<'_> {
    /// Injects one fault into a server `job` can lose, if the job runs and has one; `None`
    /// when it is not the time (not started pushing, no expendable server, no status).
    pub fn inject(&self, job: &mut Job<'_>, rng: &mut Rng) -> Result<Option<Fault>> {
        let Ok(status) = status::query(
            self.exe,
            self.net.namespace(0),
            job.scheduler_addr,
            self.secret,
        ) else {
            return Ok(None);
        };
        let Some(clock) = status::slowest_clock(&status) else {
            return Ok(None);
        };
        let slots: Vec<usize> = status::expendable(&status)
            .into_iter()
            .filter_map(|ip| self.net.slot_of(ip))
            .filter(|&slot| job.server_in_slot(slot).is_some())
            .collect();
        if slots.is_empty() {
            return Ok(None);
        }
        let slot = slots[pick(rng, slots.len())];
        let kind = self.kinds[pick(rng, self.kinds.len())];
        let Some(node) = job.server_in_slot(slot) else {
            return Ok(None);
        };
        let target = match kind {
            FaultKind::Scheduler => "the scheduler".to_string(),
            _ => node.label.clone(),
        };
        let (hold, long) = match kind {
            FaultKind::Kill => (Duration::ZERO, false),
            _ => self.hold.draw(self.heartbeat_timeout, rng),
        };
        let fault = Fault {
            kind,
            target,
            hold,
            long,
            clock,
        };
        tracing::info!("fault: {fault}");
        match kind {
            FaultKind::Kill => node.kill(),
            FaultKind::Stall => {
                node.signal(libc::SIGSTOP);
                std::thread::sleep(hold);
                node.signal(libc::SIGCONT);
            }
            FaultKind::Partition => {
                self.net.set_link(slot, false)?;
                std::thread::sleep(hold);
                self.net.set_link(slot, true)?;
            }
            FaultKind::Scheduler => job.restart_scheduler(hold)?,
        }
        Ok(Some(fault))
    }
}

/// A uniform index below `n` (> 0).
fn pick(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}
