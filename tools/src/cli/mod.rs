//! Command-line interface of the `ferrops` binary: the clap definitions of every subcommand and
//! their flags, grouped by subcommand: [`roles`] (scheduler, server, worker, local), [`bench`],
//! [`apps`] (demo, data, train, plot). Parsing only, and only `main.rs` uses it: it turns the
//! flags into the plain options and [`ferrops::config::Overrides`] the rest of the binary takes.

mod apps;
mod bench;
mod ctl;
mod faults;
mod roles;
mod slurm;
mod worker_command;

use clap::{Parser, Subcommand};

use apps::DemoArgs;
pub use apps::{DataCommand, GenArgs, LdaCorpusArgs, PatchesArgs, PlotArgs, TrainCommand};
pub use bench::{BenchCommand, KernelsArgs};
pub use ctl::{CtlCheckpointArgs, CtlCommand, CtlDrainArgs, CtlStatusArgs};
pub use faults::FaultsArgs;
use roles::RoleArgs;
pub use roles::{LocalArgs, ServerArgs, WorkerArgs};
pub use slurm::SlurmArgs;

/// Where cluster settings come from; shown in the long help of every role.
macro_rules! precedence_help {
    () => {
        "\
Configuration sources, highest precedence first:
  1. flags (--scheduler, --num-servers, --num-workers, --bind, --connect-timeout-ms,
     --busy-poll-us, --payload-checksum, --heartbeat-interval-ms, --heartbeat-timeout-ms, --startup-deadline-ms)
  2. environment: FERROPS_SCHEDULER, FERROPS_NUM_SERVERS, FERROPS_NUM_WORKERS, FERROPS_BIND,
     FERROPS_SECRET, FERROPS_CONNECT_TIMEOUT_MS, FERROPS_BUSY_POLL_US, FERROPS_PAYLOAD_CHECKSUM,
     FERROPS_HEARTBEAT_INTERVAL_MS, FERROPS_HEARTBEAT_TIMEOUT_MS, FERROPS_STARTUP_DEADLINE_MS,
     FERROPS_SCHEDULER_OUTAGE_MS
  3. the TOML file named by --config or FERROPS_CONFIG
  4. built-in defaults

TOML file keys: scheduler, num_servers, num_workers, bind, secret, connect_timeout_ms,
busy_poll_us, payload_checksum, heartbeat_interval_ms, heartbeat_timeout_ms, startup_deadline_ms,
scheduler_outage_ms and a [limits] table with
max_keys_bytes, max_values_bytes, max_extra_bytes. Unknown keys are errors.

Liveness: every node sends the scheduler a heartbeat each interval; a node silent past the
timeout is declared dead and the job ends naming it, and a node whose scheduler stops answering
exits saying so. A job that has not assembled by the start-up deadline ends naming who never
registered. Servers and workers survive losing the scheduler's connection: they go on and
redial it for scheduler_outage_ms; `ferrops scheduler --recover` on the same address rebuilds
the job from them.

Like ps-lite's DMLC_ROLE, FERROPS_ROLE=scheduler|server|worker makes a bare `ferrops` run that
role (a worker then takes its job from FERROPS_JOB).

Logging goes to stderr; filter it with FERROPS_LOG or RUST_LOG (default: info)."
    };
}

const PRECEDENCE_HELP: &str = precedence_help!();

const TOP_LEVEL_HELP: &str = concat!(
    "\
Examples:
  # A whole job on this machine:
  ferrops local --servers 2 --workers 4 -- ferrops worker --job NAME

  # From an HPC launcher, ps-lite style (the same environment on every node):
  export FERROPS_SCHEDULER=node001:9000 FERROPS_NUM_SERVERS=4 FERROPS_NUM_WORKERS=16
  export FERROPS_SECRET=...          # required off loopback: the connect-time challenge
  FERROPS_ROLE=scheduler ferrops     # on node001
  FERROPS_ROLE=server ferrops        # on each server node
  FERROPS_ROLE=worker ./trainer      # each worker: your program linking ferrops

",
    precedence_help!()
);

/// The ferrops parameter server.
#[derive(Debug, Parser)]
#[command(
    name = "ferrops",
    version,
    about = "ferrops: a parameter server for distributed ML",
    long_about = "ferrops: a parameter server for distributed ML.\n\n\
        A job runs one scheduler, S servers holding the parameters, and W workers pushing \
        gradients and pulling weights, in the style of ps-lite. Start each role by hand or from \
        your HPC launcher (`ferrops scheduler`, `ferrops server`, `ferrops worker`, or FERROPS_ROLE), \
        or start a whole cluster on this machine with `ferrops local`.",
    after_long_help = TOP_LEVEL_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The `ferrops` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler: the rendezvous point that assigns ranks and ends the job.
    ///
    /// Once listening it prints exactly one line `FERROPS_SCHEDULER=<ip:port>` on stdout, so a
    /// launcher that bound port 0 learns the address to hand to servers and workers.
    #[command(after_long_help = PRECEDENCE_HELP)]
    Scheduler(RoleArgs),

    /// Run a server: holds a shard of the parameters and applies pushed updates.
    #[command(after_long_help = PRECEDENCE_HELP)]
    Server(ServerArgs),

    /// Run one of the built-in worker jobs (your own programs link the `ferrops` library instead).
    #[command(after_long_help = PRECEDENCE_HELP)]
    Worker(WorkerArgs),

    /// Start a whole cluster on loopback: a scheduler, S servers and W copies of a worker command.
    ///
    /// Each worker command runs with FERROPS_ROLE=worker, FERROPS_SCHEDULER,
    /// FERROPS_NUM_SERVERS and FERROPS_NUM_WORKERS set, so any program that reads them (your own
    /// binary linking ferrops, or `ferrops worker --job NAME`) joins the cluster. A command named
    /// `ferrops` runs this same binary.
    ///
    /// The launcher exits 0 when every worker exited 0. On the first failure it stops the rest
    /// and exits with the failed process's code (128+N for a process killed by signal N).
    /// Ctrl-C and SIGTERM are forwarded to every process; nothing outlives the launcher.
    #[command(
        after_long_help = "Example:\n  ferrops local --servers 2 --workers 4 -- ferrops worker --job sgd -- --epochs 3"
    )]
    Local(LocalArgs),

    /// Run one task of a Slurm step: `srun --ntasks N ferrops slurm --servers S -- COMMAND...`.
    ///
    /// Task 0 (SLURM_PROCID) runs the scheduler on the first host of SLURM_STEP_NODELIST (else
    /// SLURM_JOB_NODELIST), tasks 1..=S the servers, and the other N-S-1 tasks run COMMAND as
    /// workers with FERROPS_ROLE, FERROPS_SCHEDULER, FERROPS_NUM_SERVERS and FERROPS_NUM_WORKERS
    /// set. Every task needs the job's secret (FERROPS_SECRET, exported before srun, or
    /// --secret-file). A task exits with its role's exit code; on SIGTERM (scancel, time limit),
    /// SIGINT or SIGHUP it stops its role and exits 128+signal. See docs/slurm.md.
    #[command(
        after_long_help = "Example:\n  export FERROPS_SECRET=$(head -c 32 /dev/urandom | base64)\n  srun --ntasks 6 --kill-on-bad-exit=1 ferrops slurm --servers 2 -- ferrops worker --job check"
    )]
    Slurm(SlurmArgs),

    /// Ask a running job's scheduler: its status, or a checkpoint at the next barrier.
    ///
    /// Authenticated with the job's cluster secret (FERROPS_SECRET, --secret-file, or the
    /// config file), like every node; see docs/operations.md.
    #[command(subcommand)]
    Ctl(CtlCommand),

    /// Fault injection: jobs of the `check` job on a private network (a namespace per node,
    /// veths on a bridge), with servers killed, stopped and cut off at random and spares
    /// replacing the dead; reports jobs passed, faults, recoveries and wrong sums. Needs root
    /// (network namespaces); elsewhere it prints `SKIPPED: <reason>` and exits 77.
    #[command(
        after_long_help = "Examples:\n  ferrops faults --seed 1 --kinds kill --jobs 1\n  ferrops faults --seed 7 --minutes 30\n  ferrops faults --seed 7 --jobs 2 --netem \"delay 5ms loss 1%\"\n\nExit codes: 0 every job passed, 1 a job failed or saw a wrong sum (its node logs are \nkept and named), 77 skipped, 128+N after signal N. See docs/fault-tolerance.md."
    )]
    Faults(FaultsArgs),

    /// Benchmarks, reported next to the raw network floor measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),

    /// End-to-end demo: generates a sparse data set and trains L1-regularised logistic
    /// regression on a local cluster (2 servers, 2 workers), with progress, summary and plot.
    Demo(DemoArgs),

    /// Data files: generate a synthetic LIBSVM set, or summarise one.
    #[command(subcommand)]
    Data(DataCommand),

    /// Train a model on a local cluster.
    #[command(subcommand)]
    Train(TrainCommand),

    /// Plot objective against seconds for one or more JSON-lines traces (`train --json`), one
    /// colour per trace in order (blue, orange, green, red, purple, brown, pink, grey), with a
    /// legend naming each by its file name.
    Plot(PlotArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "ferrops",
            "local",
            "--servers",
            "2",
            "--workers",
            "3",
            "--",
            "ferrops",
            "worker",
            "--job",
            "x",
        ])
        .unwrap();
        let Some(Command::Local(local)) = cli.command else {
            panic!("not local")
        };
        assert_eq!((local.servers, local.workers), (2, 3));
        assert_eq!(local.run.command, ["ferrops", "worker", "--job", "x"]);
    }

    #[test]
    fn bench_push_pull_defaults() {
        let cli = Cli::try_parse_from(["ferrops", "bench", "push-pull"]).unwrap();
        let Some(Command::Bench(BenchCommand::PushPull(args))) = cli.command else {
            panic!("not push-pull")
        };
        assert_eq!(args.keys, 10_000_000);
        assert_eq!(args.transport, ferrops_net::TransportMode::Auto);
        assert!(!args.floor && !args.json);
    }

    #[test]
    fn worker_job_args_follow_double_dash() {
        let cli = Cli::try_parse_from(["ferrops", "worker", "--job", "sgd", "--", "--epochs", "3"])
            .unwrap();
        let Some(Command::Worker(worker)) = cli.command else {
            panic!("not worker")
        };
        assert_eq!(worker.job, "sgd");
        assert_eq!(worker.job_args, ["--epochs", "3"]);
    }
}
