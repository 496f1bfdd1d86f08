//! The run's tally and the report printed at its end.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::job::Outcome;
use super::kinds::{Fault, FaultKind};

/// What a run did and saw.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub jobs: usize,
    pub passed: usize,
    pub mismatches: usize,
    /// Faults injected, by kind, with how many of them lasted past the heartbeat timeout.
    pub faults: BTreeMap<FaultKind, (usize, usize)>,
    /// Faults in jobs that then passed: the job recovered from them.
    pub recovered: usize,
    pub failovers: usize,
    pub copies: usize,
    pub spares: usize,
    /// Checkpoints written, those written again after a routing change (a server lost while
    /// they were written), and jobs whose last checkpoint was checked whole and exact.
    pub checkpoints: usize,
    pub checkpoints_rewritten: usize,
    pub checkpoints_checked: usize,
    /// Servers that resumed after a stall or partition past the timeout and exited, fenced.
    pub fenced: usize,
    /// Servers that did not exit after such a fault (each named).
    pub not_fenced: Vec<String>,
    /// The longest gap between acknowledged pushes of each passed job with a fault, and of
    /// each without one.
    pub stall_with_fault_ms: Vec<f64>,
    pub stall_without_fault_ms: Vec<f64>,
    /// Each failed job: its number, faults, errors and log directory.
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    /// Takes in one job's faults and outcome (`logs`: where its node logs are kept).
    pub fn add(&mut self, index: usize, faults: &[Fault], outcome: &Outcome, logs: &Path) {
        self.jobs += 1;
        for fault in faults {
            let entry = self.faults.entry(fault.kind).or_default();
            entry.0 += 1;
            entry.1 += usize::from(fault.long);
        }
        self.failovers += outcome.failovers;
        self.copies += outcome.copies;
        self.spares += outcome.spares_started;
        self.checkpoints += outcome.checkpoints;
        self.checkpoints_rewritten += outcome.checkpoints_rewritten;
        self.checkpoints_checked += usize::from(outcome.checkpoint_clock.is_some());
        if outcome.passed {
            self.passed += 1;
            self.recovered += faults.len();
            if let Some(ms) = outcome.max_stall_ms {
                match faults.is_empty() {
                    true => self.stall_without_fault_ms.push(ms),
                    false => self.stall_with_fault_ms.push(ms),
                }
            }
            return;
        }
        self.mismatches += usize::from(outcome.mismatch);
        let faults: Vec<String> = faults.iter().map(ToString::to_string).collect();
        self.failures.push(format!(
            "job {index}{}: faults [{}]; {}; logs in {}",
            if outcome.mismatch { " (WRONG SUM)" } else { "" },
            faults.join("; "),
            outcome.errors.join("; "),
            logs.display()
        ));
    }

    /// Whether every job passed.
    pub fn ok(&self) -> bool {
        self.passed == self.jobs && self.mismatches == 0
    }
}

/// The `p`-quantile (0..=1) of `values` by the nearest rank; `None` when empty.
pub fn quantile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn p50_max(values: &[f64]) -> String {
    match (quantile(values, 0.5), quantile(values, 1.0)) {
        (Some(p50), Some(max)) => {
            format!("p50 {p50:.0} ms, max {max:.0} ms ({} jobs)", values.len())
        }
        _ => "none".to_string(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.faults.values().map(|(n, _)| n).sum();
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, (n, long))| match kind {
                FaultKind::Kill => format!("{kind} {n}"),
                _ => format!("{kind} {n} ({long} past the heartbeat timeout)"),
            })
            .collect();
        writeln!(
            f,
            "fault report (seed {}, {:.1} minutes)",
            self.seed,
            self.elapsed.as_secs_f64() / 60.0
        )?;
        writeln!(
            f,
            "  jobs: {} run, {} passed, {} failed; mismatches (wrong sums): {}",
            self.jobs,
            self.passed,
            self.jobs - self.passed,
            self.mismatches
        )?;
        writeln!(f, "  faults injected: {total} ({})", kinds.join(", "))?;
        writeln!(
            f,
            "  recoveries: {} of {total} faults in jobs that passed; {} failovers, {} range copies \
             completed, {} spares started, {} stalled or cut-off servers fenced (exited on resuming)",
            self.recovered, self.failovers, self.copies, self.spares, self.fenced
        )?;
        writeln!(
            f,
            "  checkpoints: {} written, {} of them written again after a routing change; the last \
             of {} jobs read back whole and exact",
            self.checkpoints, self.checkpoints_rewritten, self.checkpoints_checked
        )?;
        if !self.not_fenced.is_empty() {
            writeln!(f, "  NOT fenced: {}", self.not_fenced.join("; "))?;
        }
        writeln!(
            f,
            "  recovery time (longest gap between acknowledged pushes of a job): with faults {}; \
             without {}",
            p50_max(&self.stall_with_fault_ms),
            p50_max(&self.stall_without_fault_ms)
        )?;
        for failure in &self.failures {
            writeln!(f, "  FAILED {failure}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_failed_job_is_named_with_its_faults_and_logs() {
        let mut r = Report::default();
        let fault = Fault {
            kind: FaultKind::Stall,
            target: "server 1".into(),
            hold: Duration::from_millis(3000),
            long: true,
            clock: 9,
        };
        let outcome = Outcome {
            mismatch: true,
            errors: vec!["worker 0: error: final sum".into()],
            ..Outcome::default()
        };
        r.add(3, &[fault], &outcome, Path::new("/logs/job-3"));
        assert!(!r.ok());
        let text = r.to_string();
        assert!(text.contains("mismatches (wrong sums): 1"), "{text}");
        assert!(
            text.contains("job 3 (WRONG SUM): faults [stall server 1 at clock 9 for 3000 ms"),
            "{text}"
        );
        assert!(text.contains("/logs/job-3"), "{text}");
    }
}
