//! `ferrops slurm`: one Slurm task of a job started by `srun --ntasks N ferrops slurm --servers S
//! -- COMMAND...`. Each task reads its role from Slurm's variables ([`plan`]: task 0 the
//! scheduler, tasks 1..=S the servers, the rest workers running COMMAND), finds the scheduler on
//! the first host of the step's node list ([`hostlist`]), starts its role as a child with the
//! `FERROPS_*` variables `ferrops local` would set, and supervises it:
//!
//! * the child's exit code becomes the task's (128+N for a child killed by signal N);
//! * SIGTERM (Slurm's signal on `scancel` and at the time limit), SIGINT and SIGHUP are forwarded
//!   to the child's process group, which gets the grace period to exit before SIGKILL; the task
//!   logs why it stopped and exits 128+signal (143 for SIGTERM).
//!
//! The cluster secret is not made here: every task must be given the same one, through
//! `FERROPS_SECRET` in the environment srun passes on (readable only by the user, unlike a
//! command line) or a file named by `--secret-file`/`FERROPS_SECRET_FILE` that only its owner can
//! read. Each task checks its role's whole configuration before starting anything.

pub mod hostlist;
pub mod plan;

use std::ffi::{OsStr, OsString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};

use super::fleet::Fleet;
use super::process::{display_command, signal_name, SignalFlag};
use super::{ENV_LOG_LABEL, EXIT_SHUT_DOWN, POLL_INTERVAL};
use crate::config::{
    process_env, read_config_file, ConfigInput, EnvMap, Overrides, Role, ENV_BIND, ENV_NUM_SERVERS,
    ENV_NUM_WORKERS, ENV_ROLE, ENV_SCHEDULER, ENV_SECRET_FILE,
};
use plan::{plan_from_env, TaskPlan};

/// How long a task waits, after its child died of a stop signal, for the same signal to reach
/// the task itself (Slurm signals every process of the step at once).
const SIGNAL_SETTLE: Duration = Duration::from_millis(500);

/// What `ferrops slurm` was asked to do.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// Number of servers (tasks 1..=servers).
    pub servers: usize,
    /// Scheduler port; `None` derives it from the job and step ids.
    pub port: Option<u16>,
    /// A file holding the cluster secret, handed to the child as `FERROPS_SECRET_FILE`.
    pub secret_file: Option<PathBuf>,
    /// Time between forwarding a stop signal and SIGKILL.
    pub shutdown_grace: Duration,
    /// The workers' command; a program named `ferrops` is this binary.
    pub command: Vec<OsString>,
    /// The ferrops binary running the scheduler and servers.
    pub node_exe: PathBuf,
}

/// Runs this task's role until it ends; returns the task's exit code.
pub fn run_slurm(opts: &SlurmOptions) -> Result<i32> {
    ensure!(
        !opts.command.is_empty(),
        "no worker command given: ferrops slurm --servers S -- COMMAND..."
    );
    let env = process_env();
    let plan = plan_from_env(&env, opts.servers, opts.port)?;
    let scheduler = resolve(&plan.scheduler_host, plan.scheduler_port)?;
    plan.check_scheduler_ip(scheduler.ip())?;
    let settings = child_settings(&plan, scheduler, opts)?;
    check_config(&plan, &env, &settings)?;
    let command = child_command(&plan, opts, &settings);
    let signals = SignalFlag::install()?;
    let mut fleet = Fleet::new(opts.shutdown_grace, false);
    fleet.escalate = Some(signals.clone());
    let task = format!("task {} ({})", plan.procid, plan.label());
    fleet.spawn_node(plan.role, plan.label(), command)?;
    tracing::info!(
        "{task} of {}: scheduler {}:{} ({scheduler}){}",
        plan.servers + plan.workers + 1,
        plan.scheduler_host,
        plan.scheduler_port,
        if plan.role == Role::Worker {
            format!(", running {}", display_command(&opts.command))
        } else {
            String::new()
        }
    );
    Ok(supervise(&mut fleet, &signals, &task))
}

/// Waits for the child; a stop signal is forwarded to it and yields 128+signal.
fn supervise(fleet: &mut Fleet, signals: &SignalFlag, task: &str) -> i32 {
    loop {
        if signals.peek().is_some() {
            return stop_on_signal(fleet, signals, task);
        }
        if let Some(failure) = fleet.poll() {
            // srun signals every task at once: a child may end first because of another task's
            // stop (killed by the signal, or shut down when the scheduler's task stopped).
            // Such an end belongs to the stop this task is about to receive.
            if is_stop_signal(failure.exit_code - 128) || failure.exit_code == EXIT_SHUT_DOWN {
                thread::sleep(SIGNAL_SETTLE);
                if signals.peek().is_some() {
                    return stop_on_signal(fleet, signals, task);
                }
            }
            tracing::error!("{task}: {failure}");
            return failure.exit_code;
        }
        if fleet.all_exited() {
            tracing::info!("{task} finished");
            return 0;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn is_stop_signal(signal: i32) -> bool {
    matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGHUP)
}

fn stop_on_signal(fleet: &mut Fleet, signals: &SignalFlag, task: &str) -> i32 {
    let signal = signals.take().unwrap_or(libc::SIGTERM);
    let why = if signal == libc::SIGTERM {
        ", Slurm's signal on scancel and at the time limit"
    } else {
        ""
    };
    tracing::warn!(
        "{task}: received {}{why}; stopping it ({:?} before SIGKILL)",
        signal_name(signal),
        fleet.grace
    );
    fleet.terminate(signal);
    tracing::warn!(
        "{task}: stopped by {}; exit status {}",
        signal_name(signal),
        128 + signal
    );
    128 + signal
}

/// The scheduler's address as this node reaches it (IPv4 preferred).
fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the scheduler's host `{host}`"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("the scheduler's host `{host}` has no address"))
}

/// The variables the child gets (`Some`) or loses (`None`), like `ferrops local` sets them.
fn child_settings(
    plan: &TaskPlan,
    scheduler: SocketAddr,
    opts: &SlurmOptions,
) -> Result<Vec<(&'static str, Option<String>)>> {
    let mut settings = vec![
        (ENV_ROLE, Some(plan.role.name().to_string())),
        (ENV_SCHEDULER, Some(scheduler.to_string())),
        (ENV_NUM_SERVERS, Some(plan.servers.to_string())),
        (ENV_NUM_WORKERS, Some(plan.workers.to_string())),
        (ENV_LOG_LABEL, Some(plan.label())),
    ];
    let bind = match plan.role {
        // Every interface: the node's name may resolve to a loopback address on the node itself.
        Role::Scheduler => {
            let any = match scheduler.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            Some(SocketAddr::new(any, scheduler.port()).to_string())
        }
        // A job-wide FERROPS_BIND cannot suit every task; servers pick a port themselves.
        Role::Server | Role::Worker | Role::Ctl => None,
    };
    settings.push((ENV_BIND, bind));
    if let Some(file) = &opts.secret_file {
        let path = std::path::absolute(file)
            .with_context(|| format!("--secret-file {}", file.display()))?;
        settings.push((ENV_SECRET_FILE, Some(path.display().to_string())));
    }
    Ok(settings)
}

/// Resolves the child's configuration from the environment it will get, so a missing secret or
/// a bad setting stops the task with a clear error before anything starts.
fn check_config(
    plan: &TaskPlan,
    env: &EnvMap,
    settings: &[(&'static str, Option<String>)],
) -> Result<()> {
    let mut env = env.clone();
    for (name, value) in settings {
        match value {
            Some(value) => env.insert(name.to_string(), value.clone()),
            None => env.remove(*name),
        };
    }
    let overrides = Overrides::default();
    let input = ConfigInput {
        file: read_config_file(&overrides, &env)?,
        overrides,
        env,
    };
    let checked = match plan.role {
        Role::Scheduler => input.scheduler().map(drop),
        Role::Server => input.server().map(drop),
        Role::Worker => input.worker().map(drop),
        Role::Ctl => input.ctl().map(drop),
    };
    let task = format!("task {} ({})", plan.procid, plan.label());
    checked.map_err(|error| {
        if format!("{error:#}").contains("no cluster secret") {
            error.context(format!(
                "{task}: every task needs the job's secret: export FERROPS_SECRET before srun \
                 (it passes the environment on) or pass --secret-file with a file only you can \
                 read"
            ))
        } else {
            error.context(format!("{task}: configuring the {}", plan.role.name()))
        }
    })
}

fn child_command(
    plan: &TaskPlan,
    opts: &SlurmOptions,
    settings: &[(&'static str, Option<String>)],
) -> Command {
    let mut command = match plan.role {
        Role::Scheduler => node_command(opts, "scheduler"),
        Role::Server => node_command(opts, "server"),
        // Never planned (`assign_role` hands out the job's roles only).
        Role::Ctl => node_command(opts, "ctl"),
        Role::Worker => {
            let (program, args) = opts.command.split_first().expect("checked non-empty");
            let mut command = if program == OsStr::new("ferrops") {
                Command::new(&opts.node_exe)
            } else {
                Command::new(program)
            };
            command.args(args);
            command
        }
    };
    for (name, value) in settings {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

fn node_command(opts: &SlurmOptions, role: &str) -> Command {
    let mut command = Command::new(&opts.node_exe);
    command.arg(role);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(role: Role, index: usize) -> TaskPlan {
        TaskPlan {
            procid: 0,
            role,
            index,
            servers: 1,
            workers: 2,
            scheduler_host: "n1".into(),
            hosts: 1,
            scheduler_port: 20_008,
        }
    }

    fn options(secret_file: Option<&str>) -> SlurmOptions {
        SlurmOptions {
            servers: 1,
            port: None,
            secret_file: secret_file.map(PathBuf::from),
            shutdown_grace: Duration::from_secs(1),
            command: vec!["ferrops".into(), "worker".into()],
            node_exe: PathBuf::from("/opt/ferrops"),
        }
    }

    fn value<'a>(settings: &'a [(&str, Option<String>)], name: &str) -> Option<&'a str> {
        let (_, value) = settings.iter().find(|(n, _)| *n == name)?;
        Some(value.as_deref().unwrap_or("<removed>"))
    }

    #[test]
    fn children_get_what_ferrops_local_sets() {
        let scheduler: SocketAddr = "10.0.0.1:20008".parse().unwrap();
        let s = child_settings(&plan(Role::Scheduler, 0), scheduler, &options(None)).unwrap();
        assert_eq!(value(&s, ENV_ROLE), Some("scheduler"));
        assert_eq!(value(&s, ENV_SCHEDULER), Some("10.0.0.1:20008"));
        assert_eq!(value(&s, ENV_BIND), Some("0.0.0.0:20008"));
        assert_eq!(value(&s, ENV_NUM_SERVERS), Some("1"));
        assert_eq!(value(&s, ENV_NUM_WORKERS), Some("2"));
        assert_eq!(value(&s, ENV_SECRET_FILE), None);
        let w = child_settings(&plan(Role::Worker, 1), scheduler, &options(Some("s"))).unwrap();
        assert_eq!(value(&w, ENV_ROLE), Some("worker"));
        assert_eq!(value(&w, ENV_BIND), Some("<removed>"));
        assert_eq!(value(&w, ENV_LOG_LABEL), Some("worker 1"));
        let file = value(&w, ENV_SECRET_FILE).unwrap();
        assert!(file.starts_with('/') && file.ends_with("/s"), "{file}");
        let command = child_command(&plan(Role::Worker, 1), &options(None), &w);
        assert_eq!(command.get_program(), "/opt/ferrops");
        let command = child_command(&plan(Role::Server, 0), &options(None), &w);
        assert_eq!(command.get_args().collect::<Vec<_>>(), ["server"]);
    }

    #[test]
    fn a_task_without_the_secret_stops_before_starting_anything() {
        let scheduler: SocketAddr = "10.0.0.1:20008".parse().unwrap();
        let worker = plan(Role::Worker, 0);
        let settings = child_settings(&worker, scheduler, &options(None)).unwrap();
        let err = format!(
            "{:#}",
            check_config(&worker, &EnvMap::new(), &settings).unwrap_err()
        );
        assert!(
            err.contains("task 0 (worker 0)") && err.contains("export FERROPS_SECRET"),
            "{err}"
        );
        let env: EnvMap = [(crate::config::ENV_SECRET.to_string(), "x".repeat(32))].into();
        check_config(&worker, &env, &settings).unwrap();
        let mut env = env;
        env.insert(ENV_NUM_SERVERS.into(), "junk".into());
        let settings = vec![(ENV_SCHEDULER, Some("10.0.0.1:20008".to_string()))];
        let err = format!("{:#}", check_config(&worker, &env, &settings).unwrap_err());
        assert!(
            err.contains("configuring the worker") && err.contains("junk"),
            "{err}"
        );
    }
}
