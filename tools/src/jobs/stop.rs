//! When an iterative job stops before its last iteration, liblinear style: `--tol ε` (the job's
//! convergence measure fell below ε) and `--max-seconds S` (S seconds of training have passed).
//!
//! The measure depends on the job (see [`Measure`]): `l1lr` stops on the KKT violation relative
//! to the first iteration's, as liblinear's L1-regularised logistic regression (`-s 6`) does on
//! its minimum-norm subgradient; `rica` and `logreg`, stochastic methods whose per-epoch
//! objective is all they measure, stop on its relative decrease.
//!
//! This module only decides ([`Stopper`]) and words the decision ([`Stop`]); how every worker
//! comes to follow the same decision at the same clock is each job's part, documented there:
//! `l1lr` has worker 0 decide and publish the decision through a table that every worker reads
//! at the same step; `rica` and `logreg` have every worker decide from the same figures, pulled
//! after the epoch's barrier.

use std::fmt;

use ferrops_engine::{EngineError, TableId, Worker};
use serde::Serialize;

use super::{positive_number, positive_seconds};

/// The stopping flags every iterative job takes.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize)]
pub struct StopArgs {
    /// Stop once the convergence measure falls below ε (l1lr: the KKT violation relative to
    /// the first iteration's; rica and logreg: the relative decrease of the epoch objective);
    /// every worker stops after that iteration (l1lr under delay τ with B blocks: ⌈τ/B⌉
    /// iterations later, all together).
    #[arg(long, value_name = "ε", value_parser = positive_number::<f64>, allow_hyphen_values = true)]
    pub tol: Option<f64>,

    /// Stop after the first iteration that ends S seconds or more after training started (the
    /// clock of worker 0); every worker stops after that iteration (l1lr under delay τ with B
    /// blocks: ⌈τ/B⌉ iterations later, all together).
    #[arg(long, value_name = "S", value_parser = positive_seconds, allow_hyphen_values = true)]
    pub max_seconds: Option<f64>,
}

impl StopArgs {
    /// Whether any criterion is set (without one a job runs every iteration it was given).
    pub fn any(&self) -> bool {
        self.tol.is_some() || self.max_seconds.is_some()
    }
}

/// What `--tol` is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// ‖v‖₁ of the minimum-norm subgradient of the L1-regularised objective (see
    /// [`kkt_violation`]) over one iteration, divided by that of the first iteration.
    KktViolation,
    /// (F_prev − F) / |F_prev| between consecutive iterations' objectives F; an iteration that
    /// does not lower the objective has a decrease ≤ 0 and so stops the run too.
    RelativeDecrease,
}

/// Why a job stops, and after which iteration the decision was taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stop {
    /// Iterations completed when the decision was taken (1-based).
    pub iteration: usize,
    pub reason: Reason,
}

/// The criterion that fired.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// The measure fell below the tolerance.
    Converged {
        measure: Measure,
        value: f64,
        tol: f64,
    },
    /// The time limit was reached.
    MaxSeconds { limit: f64 },
}

/// Codes of a decision as a job publishes it in a table: `[code, value]`, code 0 meaning "go on".
const CONVERGED: f32 = 1.0;
const OUT_OF_TIME: f32 = 2.0;

impl Stop {
    /// The decision as two floats a table can carry (`[code, measure]`); [`Stop::from_values`]
    /// reads it back.
    pub fn to_values(self) -> [f32; 2] {
        match self.reason {
            Reason::Converged { value, .. } => [CONVERGED, value as f32],
            Reason::MaxSeconds { .. } => [OUT_OF_TIME, 0.0],
        }
    }

    /// The decision published as `values` after `iteration` iterations, by a job running with
    /// `args` and measuring `measure`; `None` when the values say "go on" (all zero: nothing
    /// published).
    pub fn from_values(
        values: &[f32],
        iteration: usize,
        args: &StopArgs,
        measure: Measure,
    ) -> Option<Stop> {
        let reason = match values.first().copied() {
            Some(CONVERGED) => Reason::Converged {
                measure,
                value: f64::from(values[1]),
                tol: args.tol.unwrap_or(0.0),
            },
            Some(OUT_OF_TIME) => Reason::MaxSeconds {
                limit: args.max_seconds.unwrap_or(0.0),
            },
            _ => return None,
        };
        Some(Stop { iteration, reason })
    }
}

impl Stop {
    /// Says, on every worker, after which iteration it stops (and, on worker 0, why).
    pub fn announce(&self, rank: usize, done: usize) {
        if rank == 0 {
            println!("{self}");
        }
        println!("worker {rank}: stopped after iteration {done}");
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.iteration;
        match self.reason {
            Reason::Converged {
                measure: Measure::KktViolation,
                value,
                tol,
            } => write!(
                f,
                "converged: KKT violation {value:.2e} of the first iteration's < tol {tol:e} at iteration {at}"
            ),
            Reason::Converged {
                measure: Measure::RelativeDecrease,
                value,
                tol,
            } => write!(
                f,
                "converged: relative decrease {value:.2e} < tol {tol:e} at iteration {at}"
            ),
            Reason::MaxSeconds { limit } => {
                write!(f, "stopped: max-seconds {limit} reached at iteration {at}")
            }
        }
    }
}

/// Decides, iteration by iteration, whether to stop.
#[derive(Clone, Debug)]
pub struct Stopper {
    args: StopArgs,
    measure: Measure,
    /// The first iteration's violation, or the previous iteration's objective.
    reference: Option<f64>,
}

impl Stopper {
    pub fn new(args: &StopArgs, measure: Measure) -> Stopper {
        Stopper {
            args: args.clone(),
            measure,
            reference: None,
        }
    }

    /// The end of epoch `epoch` (1-based) of a stochastic job: worker 0 prints `line`, and
    /// every worker takes the epoch's `figure` and seconds and, if that stops the run, says so
    /// ([`Stop::announce`]); true means stop now.
    pub fn end_epoch(
        &mut self,
        rank: usize,
        epoch: usize,
        figure: f64,
        seconds: f32,
        line: &str,
    ) -> bool {
        if rank == 0 {
            println!("{line}");
        }
        let stop = self.observe(epoch, figure, f64::from(seconds));
        stop.inspect(|s| s.announce(rank, epoch)).is_some()
    }

    /// Takes iteration `iteration`'s figure (the violation or the objective, as the measure
    /// says) and the seconds since training started; says whether to stop after it.
    /// Convergence is reported before the time limit when both hold.
    pub fn observe(&mut self, iteration: usize, figure: f64, seconds: f64) -> Option<Stop> {
        let measured = match (self.measure, self.reference) {
            (Measure::KktViolation, None) => {
                self.reference = Some(figure);
                Some(if figure > 0.0 { 1.0 } else { 0.0 })
            }
            (Measure::KktViolation, Some(first)) => {
                Some(if first > 0.0 { figure / first } else { 0.0 })
            }
            (Measure::RelativeDecrease, previous) => {
                self.reference = Some(figure);
                previous.map(|p| (p - figure) / p.abs().max(f64::MIN_POSITIVE))
            }
        };
        let stop = |reason| Some(Stop { iteration, reason });
        if let (Some(tol), Some(value)) = (self.args.tol, measured) {
            if value < tol || value.is_nan() {
                let measure = self.measure;
                return stop(Reason::Converged {
                    measure,
                    value,
                    tol,
                });
            }
        }
        match self.args.max_seconds {
            Some(limit) if seconds >= limit => stop(Reason::MaxSeconds { limit }),
            _ => None,
        }
    }
}

/// One coordinate's KKT violation for min f(w) + λ‖w‖₁ at weight `w` with gradient `g` of f:
/// the magnitude of the minimum-norm subgradient (|g + λ·sign w| off zero, max(|g| − λ, 0) at
/// zero), zero exactly where the optimality conditions hold.
pub fn kkt_violation(w: f32, g: f32, lambda: f32) -> f64 {
    let (w, g, lambda) = (f64::from(w), f64::from(g), f64::from(lambda));
    if w > 0.0 {
        (g + lambda).abs()
    } else if w < 0.0 {
        (g - lambda).abs()
    } else {
        (g.abs() - lambda).max(0.0)
    }
}

/// The end of an epoch of a stochastic job (rica, logreg): every worker adds its `figures` to
/// `table` under this epoch's keys, worker 0 its seconds since `started` as one more (the one clock
/// every decision reads), and all meet at a barrier. The sums, seconds last, go to worker 0 and
/// — when a stopping rule is set — to every worker: after the barrier every push is in, so
/// they all read the same values and decide alike.
pub fn epoch_sums(
    w: &Worker,
    table: TableId,
    epoch: usize,
    figures: &[f32],
    started: std::time::Instant,
    stop: &StopArgs,
) -> Result<Option<Vec<f32>>, EngineError> {
    let n = figures.len() as u64 + 1;
    let keys: Vec<u64> = (epoch as u64 * n..(epoch as u64 + 1) * n).collect();
    let seconds = started.elapsed().as_secs_f32();
    let values: Vec<f32> = figures.iter().copied().chain([seconds]).collect();
    let mine = if w.rank() == 0 {
        values.len()
    } else {
        figures.len()
    };
    w.push(table, &keys[..mine], &values[..mine])?;
    w.barrier()?;
    if w.rank() == 0 || stop.any() {
        return Ok(Some(w.pull(table, &keys)?));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tol: Option<f64>, max_seconds: Option<f64>) -> StopArgs {
        StopArgs { tol, max_seconds }
    }

    #[test]
    fn relative_decrease_stops_once_progress_is_small() {
        let mut s = Stopper::new(&args(Some(1e-2), None), Measure::RelativeDecrease);
        assert_eq!(s.observe(1, 100.0, 0.1), None, "no decrease to measure yet");
        assert_eq!(s.observe(2, 50.0, 0.2), None);
        assert_eq!(s.observe(3, 45.0, 0.3), None, "10% decrease");
        let stop = s.observe(4, 44.9, 0.4).expect("0.2% < 1%");
        assert_eq!(stop.iteration, 4);
        assert_eq!(
            stop.to_string(),
            "converged: relative decrease 2.22e-3 < tol 1e-2 at iteration 4"
        );
        // An iteration that raises the objective stops the run too.
        let mut s = Stopper::new(&args(Some(1e-6), None), Measure::RelativeDecrease);
        s.observe(1, 10.0, 0.0);
        assert!(s.observe(2, 11.0, 0.0).is_some());
    }

    #[test]
    fn kkt_violation_is_relative_to_the_first_iteration() {
        let mut s = Stopper::new(&args(Some(0.1), None), Measure::KktViolation);
        assert_eq!(s.observe(1, 40.0, 0.0), None);
        assert_eq!(s.observe(2, 8.0, 0.0), None, "0.2 of the first");
        let stop = s.observe(3, 3.0, 0.0).expect("0.075 < 0.1");
        assert!(stop.to_string().starts_with(
            "converged: KKT violation 7.50e-2 of the first iteration's < tol 1e-1 at iteration 3"
        ));
        // A start that is already optimal (λ large enough for w = 0) converges at once.
        let mut s = Stopper::new(&args(Some(1e-3), None), Measure::KktViolation);
        assert!(s.observe(1, 0.0, 0.0).is_some());
        // Without --tol the measure never stops the run.
        let mut s = Stopper::new(&args(None, None), Measure::KktViolation);
        assert_eq!(s.observe(1, 1.0, 1e9), None);
        assert_eq!(s.observe(2, 0.0, 1e9), None);
    }

    #[test]
    fn max_seconds_stops_at_the_first_iteration_past_the_limit() {
        let mut s = Stopper::new(&args(Some(1e-9), Some(2.0)), Measure::RelativeDecrease);
        assert_eq!(s.observe(1, 10.0, 1.0), None);
        let stop = s.observe(2, 5.0, 2.5).expect("past 2 s");
        assert_eq!(stop.reason, Reason::MaxSeconds { limit: 2.0 });
        assert_eq!(
            stop.to_string(),
            "stopped: max-seconds 2 reached at iteration 2"
        );
    }

    #[test]
    fn a_published_decision_reads_back_the_same() {
        let a = args(Some(0.5), Some(3.0));
        for measure in [Measure::KktViolation, Measure::RelativeDecrease] {
            for reason in [
                Reason::Converged {
                    measure,
                    value: 0.25,
                    tol: 0.5,
                },
                Reason::MaxSeconds { limit: 3.0 },
            ] {
                let stop = Stop {
                    iteration: 7,
                    reason,
                };
                assert_eq!(
                    Stop::from_values(&stop.to_values(), 7, &a, measure),
                    Some(stop)
                );
            }
            assert_eq!(Stop::from_values(&[0.0, 0.0], 7, &a, measure), None);
        }
    }

    #[test]
    fn every_iterative_job_takes_the_flags_and_refuses_bad_values_naming_them() {
        use crate::jobs::Job;
        let words = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (job, required) in [
            ("l1lr", &["--data", "x.svm", "--dim", "3"][..]),
            ("rica", &["--data", "p.txt"][..]),
            ("logreg", &[][..]),
        ] {
            let mut good = words(required);
            good.extend(words(&["--tol", "1e-4", "--max-seconds", "2.5"]));
            let parsed = Job::parse(job, &good).unwrap();
            assert_eq!(Job::parse(job, &parsed.args()).unwrap(), parsed, "{job}");
            assert!(parsed.args().contains(&"--max-seconds".to_string()));
            for (flag, value) in [
                ("--tol", "0"),
                ("--tol", "-1"),
                ("--tol", "nan"),
                ("--tol", "inf"),
                ("--max-seconds", "0"),
                ("--max-seconds", "-3"),
                ("--max-seconds", "nan"),
                ("--max-seconds", "1e300"),
            ] {
                let mut bad = words(required);
                bad.extend(words(&[flag, value]));
                let err = Job::parse(job, &bad).unwrap_err().to_string();
                assert!(
                    err.contains(flag) && err.contains("invalid value"),
                    "{job} {flag} {value}: {err}"
                );
            }
        }
    }

    #[test]
    fn kkt_violation_is_the_minimum_norm_subgradient() {
        // At zero: inside [−λ, λ] is optimal; outside, the excess.
        assert_eq!(kkt_violation(0.0, 0.5, 1.0), 0.0);
        assert_eq!(kkt_violation(0.0, -1.5, 1.0), 0.5);
        // Off zero: the gradient of f + λ|w|.
        assert_eq!(kkt_violation(2.0, -1.0, 1.0), 0.0);
        assert_eq!(kkt_violation(2.0, 0.5, 1.0), 1.5);
        assert_eq!(kkt_violation(-2.0, 1.0, 1.0), 0.0);
        assert_eq!(kkt_violation(-2.0, 0.25, 1.0), 0.75);
    }
}
