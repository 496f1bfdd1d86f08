//! The built-in worker jobs, run by `ferrops worker --job NAME [-- ARGS]` (usually under
//! `ferrops local`, or started by `train`, `demo` and `bench reducers`).
//!
//! [`Job`] is the one list of them: each variant holds the job's arguments, a `clap` struct
//! that the worker parses from the arguments after `--` ([`Job::parse`]) and that a driver turns
//! back into those arguments ([`Job::args`]), so a job's options exist once. [`Job::run`] is the
//! one place a job is chosen. A new job is a module here with its arguments struct and `run`,
//! and a variant of [`Job`].
//!
//! * `check`: push/pull sums and sequential consistency across processes, and the longest wait
//!   between acknowledged pushes;
//! * `count`: sequential pushes whose sums must equal what was acknowledged (exactly once,
//!   across server failures);
//! * `logreg`: sparse logistic regression on generated data, with the bandwidth reducers;
//! * `l1lr`: L1-regularised logistic regression by delayed block proximal gradient;
//! * `rica`: reconstruction ICA on image patches;
//! * `lda`: latent Dirichlet allocation by distributed collapsed Gibbs sampling.

pub mod check;
pub mod checkpoints;
pub mod count;
pub mod l1lr;
pub mod lda;
pub mod logreg;
pub mod rica;
pub mod stop;
mod values;

pub use values::{
    delay, fraction, non_negative_number, positive_count, positive_number, positive_seconds,
    seconds,
};

use anyhow::{anyhow, bail, Result};
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use ferrops_engine::config::WorkerConfig;
use serde::Serialize;
use serde_json::Value;

/// A built-in worker job with its arguments.
#[derive(Clone, Debug, PartialEq, Subcommand, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    /// Sparse logistic regression on generated data.
    #[command(name = "logreg", disable_help_flag = true)]
    Logreg(logreg::LogRegArgs),
    /// Checks push/pull sums and sequential consistency.
    #[command(name = "check", disable_help_flag = true)]
    Check(check::CheckArgs),
    /// Sequential pushes whose sums must equal exactly what was acknowledged.
    #[command(name = "count", disable_help_flag = true)]
    Count(count::CountArgs),
    /// L1-regularised logistic regression by delayed block proximal gradient.
    #[command(name = "l1lr", disable_help_flag = true)]
    L1lr(l1lr::L1lrArgs),
    /// Reconstruction ICA.
    #[command(name = "rica", disable_help_flag = true)]
    Rica(rica::RicaArgs),
    /// Latent Dirichlet allocation by distributed collapsed Gibbs sampling.
    #[command(name = "lda", disable_help_flag = true)]
    Lda(lda::LdaArgs),
}

/// A job's name followed by its arguments, as `ferrops worker` receives them.
#[derive(Debug, Parser)]
#[command(
    name = "worker job",
    no_binary_name = true,
    disable_help_flag = true,
    disable_help_subcommand = true
)]
struct JobLine {
    #[command(subcommand)]
    job: Job,
}

impl Job {
    /// The job `name` with its arguments `args`; unknown jobs and bad arguments are errors.
    pub fn parse(name: &str, args: &[String]) -> Result<Job> {
        let line = JobLine::command();
        if line.find_subcommand(name).is_none() {
            let known: Vec<&str> = line.get_subcommands().map(|c| c.get_name()).collect();
            bail!("unknown worker job `{name}` (known: {})", known.join(", "));
        }
        let words = std::iter::once(name).chain(args.iter().map(String::as_str));
        let line = JobLine::try_parse_from(words).map_err(|e| {
            let text = e.to_string();
            anyhow!("{}", text.trim().trim_start_matches("error: "))
        })?;
        Ok(line.job)
    }

    /// Runs the job in this worker process.
    pub fn run(&self, cfg: &WorkerConfig) -> Result<()> {
        match self {
            Job::Logreg(args) => logreg::run(cfg, args),
            Job::Check(args) => check::run(cfg, args),
            Job::Count(args) => count::run(cfg, args),
            Job::L1lr(args) => l1lr::run(cfg, args),
            Job::Rica(args) => rica::run(cfg, args),
            Job::Lda(args) => lda::run(cfg, args),
        }
    }

    /// The job's name, as `--job` takes it.
    pub fn name(&self) -> String {
        self.encoded().0
    }

    /// The job's arguments as [`Job::parse`] reads them back: `--flag value` for every option
    /// that has a value, `--flag` for a switch that is on.
    pub fn args(&self) -> Vec<String> {
        let (name, values) = self.encoded();
        let line = JobLine::command();
        let Some(job) = line.find_subcommand(&name) else {
            unreachable!("every job is a subcommand of the job line")
        };
        let mut args = Vec::new();
        for arg in job.get_arguments() {
            let (Some(long), Some(value)) = (arg.get_long(), values.get(arg.get_id().as_str()))
            else {
                continue;
            };
            let flag = format!("--{long}");
            match (arg.get_action(), value) {
                (_, Value::Null) => {}
                (ArgAction::SetTrue, Value::Bool(on)) => {
                    if *on {
                        args.push(flag);
                    }
                }
                (_, Value::String(text)) => args.extend([flag, text.clone()]),
                (_, Value::Number(n)) => args.extend([flag, n.to_string()]),
                (_, Value::Bool(b)) => args.extend([flag, b.to_string()]),
                (_, other) => unreachable!("job option --{long} is not a scalar: {other}"),
            }
        }
        args
    }

    /// The job's name and its options by field name. Through JSON text, so an `f32` keeps its
    /// shortest spelling (`0.1`, not the `f64` widening `0.10000000149011612`).
    fn encoded(&self) -> (String, serde_json::Map<String, Value>) {
        let text = serde_json::to_string(self).expect("job arguments serialize");
        match serde_json::from_str(&text).expect("job arguments are JSON") {
            Value::String(name) => (name, serde_json::Map::new()),
            Value::Object(job) => {
                let Some((name, Value::Object(values))) = job.into_iter().next() else {
                    unreachable!("a job with arguments serializes as {{name: {{...}}}}")
                };
                (name, values)
            }
            other => unreachable!("a job serializes as a name or a map: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1lr_flags_out_of_range_are_refused_naming_the_flag() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Flags {
            #[command(flatten)]
            settings: l1lr::L1lrSettings,
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["l1lr", "--data", "x.svm"];
            argv.extend_from_slice(extra);
            Flags::try_parse_from(argv).map(|f| f.settings)
        };
        assert!(parse(&["--lambda", "0.5", "--delta", "2"]).is_ok());
        for (flag, value) in [
            ("--lambda", "nan"),
            ("--lambda", "inf"),
            ("--lambda", "-1"),
            ("--delta", "0"),
            ("--delta", "nan"),
            ("--delta", "-2"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag} {value}"
            );
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn job_line_definition_is_consistent() {
        JobLine::command().debug_assert();
    }

    #[test]
    fn unknown_jobs_are_named_with_the_known_ones() {
        let err = Job::parse("sgd", &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown worker job `sgd` (known: logreg, check, count, l1lr, rica, lda)"
        );
    }

    #[test]
    fn count_round_trips_its_arguments_and_refuses_zero() {
        let args: Vec<String> = [
            "--pushes",
            "7",
            "--keys",
            "3",
            "--async",
            "--in-flight",
            "2",
        ]
        .map(String::from)
        .to_vec();
        let job = Job::parse("count", &args).unwrap();
        assert_eq!((job.name().as_str(), job.args()), ("count", args));
        let zero = Job::parse("count", &["--pushes".into(), "0".into()]).unwrap_err();
        assert!(zero.to_string().contains("--pushes"), "{zero}");
    }

    #[test]
    fn check_takes_clocks_and_keys_and_round_trips() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let job = Job::parse("check", &[]).unwrap();
        assert_eq!(job, Job::Check(check::CheckArgs::default()));
        let job = Job::parse("check", &words(&["--clocks", "7", "--keys", "10"])).unwrap();
        assert_eq!(
            job,
            Job::Check(check::CheckArgs {
                clocks: 7,
                keys: 10,
                ..check::CheckArgs::default()
            })
        );
        assert_eq!(Job::parse("check", &job.args()).unwrap(), job);
        assert!(Job::parse("check", &words(&["--x", "1"])).is_err());
        let saving = words(&["--checkpoint-every", "5", "--checkpoint-dir", "/ckpt"]);
        let job = Job::parse("check", &saving).unwrap();
        assert_eq!(Job::parse("check", &job.args()).unwrap(), job);
        for half in [&saving[..2], &saving[2..]] {
            let err = Job::parse("check", half).unwrap_err().to_string();
            assert!(err.contains("--checkpoint-"), "{err}");
        }
        for (flag, bad) in [
            ("--checkpoint-every", "0"),
            ("--clocks", "0"),
            ("--clocks", "-1"),
            ("--clocks", "1000001"),
            ("--keys", "0"),
            ("--keys", "1.5"),
            ("--keys", "99999999999"),
        ] {
            let err = Job::parse("check", &words(&[flag, bad]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag), "{flag} {bad}: {err}");
        }
    }

    #[test]
    fn floats_keep_their_short_spelling() {
        let job = Job::Logreg(logreg::LogRegArgs {
            lr: 0.1,
            ..logreg::LogRegArgs::default()
        });
        let args = job.args();
        let at = args.iter().position(|a| a == "--lr").unwrap();
        assert_eq!(args[at + 1], "0.1");
        assert_eq!(Job::parse("logreg", &args).unwrap(), job);
    }
}
