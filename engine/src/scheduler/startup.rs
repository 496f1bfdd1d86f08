//! The start-up deadline: a job that has not assembled (every node registered, every server
//! ready) within `startup_deadline` of the scheduler's start ends, saying who never arrived,
//! instead of leaving the scheduler and the nodes that came waiting forever.

use ferrops_net::Io;

use super::{Phase, Scheduler};
use crate::liveness::secs;

impl Scheduler {
    pub(super) fn check_startup(&mut self, io: &mut Io<'_>) {
        let assembled = matches!(self.phase, Phase::Running | Phase::Recovering);
        if assembled || self.started.elapsed() < self.liveness.startup_deadline {
            return;
        }
        let unready: Vec<String> = match self.phase {
            Phase::WelcomingServers => self
                .servers
                .iter()
                .filter(|(p, _)| !self.ready.contains(p))
                .map(|(p, _)| self.name_of(*p))
                .collect(),
            _ => Vec::new(),
        };
        let why = format!(
            "the job did not start within {}: {}",
            secs(self.liveness.startup_deadline),
            missing(
                (self.servers.len(), self.num_servers),
                (self.workers.len(), self.num_workers),
                &unready
            )
        );
        tracing::error!("{why}");
        self.shutdown(false, why, io);
    }
}

/// Who kept the job from starting: nodes that never registered, given as (registered,
/// expected) per role, else the servers that never answered their welcome.
fn missing(servers: (usize, usize), workers: (usize, usize), unready: &[String]) -> String {
    let mut parts = Vec::new();
    for (role, (registered, expected)) in [("server", servers), ("worker", workers)] {
        if registered < expected {
            let s = if expected == 1 { "" } else { "s" };
            parts.push(format!(
                "{} of {expected} {role}{s} never registered",
                expected - registered
            ));
        }
    }
    if parts.is_empty() && !unready.is_empty() {
        parts.push(format!("{} never became ready", unready.join(", ")));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn names_who_never_arrived() {
        assert_eq!(
            missing((1, 1), (1, 2), &[]),
            "1 of 2 workers never registered"
        );
        assert_eq!(
            missing((0, 1), (0, 3), &[]),
            "1 of 1 server never registered, 3 of 3 workers never registered"
        );
        let unready = ["server 1 at 10.0.0.2:7000".to_string()];
        assert_eq!(
            missing((2, 2), (4, 4), &unready),
            "server 1 at 10.0.0.2:7000 never became ready"
        );
    }
}
