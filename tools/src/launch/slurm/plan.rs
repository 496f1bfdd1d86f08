//! What one Slurm task runs: its role from `SLURM_PROCID`/`SLURM_NTASKS`, the scheduler's host
//! (the first of the step's nodes) and port. Pure over an explicit environment map.
//!
//! Ranks: task 0 is the scheduler, tasks 1..=S the servers 0..S-1, and tasks S+1..N-1 the
//! workers 0..N-S-2. The scheduler listens on [`scheduler_port`] of the first host of
//! `SLURM_STEP_NODELIST` (else `SLURM_JOB_NODELIST`), where Slurm's default block distribution
//! puts task 0.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};

use super::hostlist;
use crate::config::{EnvMap, Role};

/// The lowest port [`scheduler_port`] derives.
pub const PORT_BASE: u16 = 20_000;
/// How many ports [`scheduler_port`] spreads jobs over: 20000..=31999, below Linux's ephemeral
/// range (32768 and up), so no outgoing connection holds the port first.
pub const PORT_SPAN: u16 = 12_000;
/// Steps of one job that get distinct ports.
pub const STEPS_PER_JOB: u64 = 8;

/// One task's part in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPlan {
    /// `SLURM_PROCID`.
    pub procid: usize,
    pub role: Role,
    /// The role's own index: server 0.., worker 0...
    pub index: usize,
    pub servers: usize,
    pub workers: usize,
    /// The host the scheduler runs on, as Slurm names it.
    pub scheduler_host: String,
    /// How many hosts the step spans.
    pub hosts: usize,
    pub scheduler_port: u16,
}

impl TaskPlan {
    /// `scheduler`, `server 1`, `worker 0`.
    pub fn label(&self) -> String {
        match self.role {
            Role::Scheduler => "scheduler".to_string(),
            role => format!("{} {}", role.name(), self.index),
        }
    }

    /// Refuses a loopback scheduler address for a server of a step spanning several hosts: the
    /// server would advertise the loopback address it reaches the scheduler from, which workers
    /// on the other hosts cannot dial (Debian maps a host's own name to 127.0.1.1).
    pub fn check_scheduler_ip(&self, ip: IpAddr) -> Result<()> {
        if self.role == Role::Server && self.hosts > 1 && ip.is_loopback() {
            bail!(
                "{} of a {}-host step: the scheduler's host {} resolves to the loopback address \
                 {ip} here, so this server would advertise an address the other hosts cannot \
                 reach; make {} resolve to its network address on this host (/etc/hosts)",
                self.label(),
                self.hosts,
                self.scheduler_host,
                self.scheduler_host
            );
        }
        Ok(())
    }
}

/// The role of task `procid` of `ntasks` with `servers` servers, and its index in that role.
pub fn assign_role(procid: usize, ntasks: usize, servers: usize) -> Result<(Role, usize)> {
    if servers == 0 {
        bail!("--servers must be at least 1");
    }
    if ntasks < servers + 2 {
        bail!(
            "{ntasks} Slurm task(s) cannot hold a scheduler, {servers} server(s) and a worker: \
             run at least {} tasks (srun --ntasks)",
            servers + 2
        );
    }
    if procid >= ntasks {
        bail!("SLURM_PROCID {procid} is not below SLURM_NTASKS {ntasks}");
    }
    Ok(match procid {
        0 => (Role::Scheduler, 0),
        p if p <= servers => (Role::Server, p - 1),
        p => (Role::Worker, p - servers - 1),
    })
}

/// The scheduler port for step `step_id` of job `job_id`: `PORT_BASE + (job_id * 8 + step_id
/// mod 8) mod PORT_SPAN`. Jobs sharing a node get different ports unless their ids differ by a
/// multiple of 1500, and so do up to 8 concurrent steps of one job.
pub fn scheduler_port(job_id: u64, step_id: u64) -> u16 {
    let slot =
        (job_id.wrapping_mul(STEPS_PER_JOB) + step_id % STEPS_PER_JOB) % u64::from(PORT_SPAN);
    PORT_BASE + slot as u16
}

/// Reads the task's plan from Slurm's variables in `env`. `port` overrides the derived port.
pub fn plan_from_env(env: &EnvMap, servers: usize, port: Option<u16>) -> Result<TaskPlan> {
    let procid = number(env, "SLURM_PROCID")?;
    let ntasks = number(env, "SLURM_NTASKS")?;
    let (role, index) = assign_role(procid, ntasks, servers)?;
    let (variable, list) = ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"]
        .into_iter()
        .find_map(|v| env.get(v).filter(|l| !l.is_empty()).map(|l| (v, l)))
        .ok_or_else(|| {
            anyhow!(
                "neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set: \
                 run `ferrops slurm` as the tasks of an srun step"
            )
        })?;
    let hosts =
        hostlist::expand(list).with_context(|| format!("environment variable {variable}"))?;
    let scheduler_host = hosts[0].clone();
    if role == Role::Scheduler {
        if let Some(here) = env.get("SLURMD_NODENAME").filter(|n| !n.is_empty()) {
            if *here != scheduler_host {
                bail!(
                    "task 0 (the scheduler) runs on {here}, but the others look for it on \
                     {scheduler_host}, the first host of {variable}: use srun's default block \
                     distribution (no --distribution=arbitrary or plane)"
                );
            }
        }
    }
    let scheduler_port = match port {
        Some(port) => port,
        None => {
            let job = number(env, "SLURM_JOB_ID")
                .context("deriving the scheduler port (or pass --port)")?;
            let step = match env.get("SLURM_STEP_ID").filter(|s| !s.is_empty()) {
                Some(_) => number(env, "SLURM_STEP_ID")?,
                None => 0,
            };
            scheduler_port(job as u64, step as u64)
        }
    };
    Ok(TaskPlan {
        procid,
        role,
        index,
        servers,
        workers: ntasks - servers - 1,
        scheduler_host,
        hosts: hosts.len(),
        scheduler_port,
    })
}

fn number(env: &EnvMap, variable: &str) -> Result<usize> {
    let text = env.get(variable).filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow!("environment variable {variable} is not set: run `ferrops slurm` under srun")
    })?;
    text.trim().parse().map_err(|_| {
        anyhow!("invalid value `{text}` from environment variable {variable}: expected a number")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ranks_are_scheduler_then_servers_then_workers() {
        let roles: Vec<(Role, usize)> = (0..6).map(|p| assign_role(p, 6, 2).unwrap()).collect();
        assert_eq!(
            roles,
            [
                (Role::Scheduler, 0),
                (Role::Server, 0),
                (Role::Server, 1),
                (Role::Worker, 0),
                (Role::Worker, 1),
                (Role::Worker, 2),
            ]
        );
    }

    #[test]
    fn too_few_tasks_or_servers_are_refused() {
        let err = assign_role(0, 3, 2).unwrap_err().to_string();
        assert!(err.contains("at least 4 tasks"), "{err}");
        assert!(assign_role(0, 3, 0).is_err());
        assert!(assign_role(3, 3, 1).is_err());
        assert!(assign_role(2, 3, 1).is_ok());
    }

    #[test]
    fn plan_finds_the_scheduler_on_the_first_step_node() {
        let e = env(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_NODELIST", "gpu[07-08],cpu1"),
            ("SLURM_JOB_NODELIST", "login"),
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_STEP_ID", "1"),
        ]);
        let plan = plan_from_env(&e, 1, None).unwrap();
        assert_eq!(plan.role, Role::Worker);
        assert_eq!(plan.index, 1);
        assert_eq!((plan.servers, plan.workers), (1, 2));
        assert_eq!(plan.scheduler_host, "gpu07");
        assert_eq!(plan.scheduler_port, scheduler_port(4242, 1));
        assert_eq!(plan.label(), "worker 1");
        assert_eq!(
            plan_from_env(&e, 1, Some(9000)).unwrap().scheduler_port,
            9000
        );
    }

    #[test]
    fn plan_falls_back_to_the_job_nodelist() {
        let e = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_STEP_NODELIST", ""),
            ("SLURM_JOB_NODELIST", "n[3-4]"),
            ("SLURMD_NODENAME", "n3"),
            ("SLURM_JOB_ID", "7"),
        ]);
        let plan = plan_from_env(&e, 1, None).unwrap();
        assert_eq!(
            (plan.role, plan.scheduler_host.as_str()),
            (Role::Scheduler, "n3")
        );
        assert_eq!(plan.scheduler_port, scheduler_port(7, 0));
    }

    #[test]
    fn plan_errors_name_the_variable() {
        let mut e = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_ID", "7"),
        ]);
        let err = plan_from_env(&e, 1, None).unwrap_err().to_string();
        assert!(err.contains("SLURM_STEP_NODELIST"), "{err}");
        e.insert("SLURM_STEP_NODELIST".into(), "n[1-".into());
        let err = format!("{:#}", plan_from_env(&e, 1, None).unwrap_err());
        assert!(
            err.contains("SLURM_STEP_NODELIST") && err.contains("never closed"),
            "{err}"
        );
        e.insert("SLURM_STEP_NODELIST".into(), "n[1-2]".into());
        e.insert("SLURMD_NODENAME".into(), "n2".into());
        let err = plan_from_env(&e, 1, None).unwrap_err().to_string();
        assert!(
            err.contains("task 0") && err.contains("n2") && err.contains("n1"),
            "{err}"
        );
        e.remove("SLURMD_NODENAME");
        e.insert("SLURM_PROCID".into(), "x".into());
        let err = plan_from_env(&e, 1, None).unwrap_err().to_string();
        assert!(err.contains("SLURM_PROCID") && err.contains("`x`"), "{err}");
        e.remove("SLURM_PROCID");
        let err = plan_from_env(&e, 1, None).unwrap_err().to_string();
        assert!(
            err.contains("SLURM_PROCID") && err.contains("srun"),
            "{err}"
        );
    }

    #[test]
    fn a_server_refuses_a_loopback_scheduler_address_in_a_multi_node_step() {
        let mut e = env(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_NODELIST", "n[1-2]"),
            ("SLURM_JOB_ID", "7"),
        ]);
        let plan = plan_from_env(&e, 1, None).unwrap();
        assert_eq!(plan.hosts, 2);
        let loopback = "127.0.1.1".parse().unwrap();
        let err = plan.check_scheduler_ip(loopback).unwrap_err().to_string();
        assert!(err.contains("n1") && err.contains("127.0.1.1"), "{err}");
        plan.check_scheduler_ip("10.1.2.3".parse().unwrap())
            .unwrap();
        // Workers only dial out, and on one node loopback is all anyone needs.
        e.insert("SLURM_PROCID".into(), "3".into());
        plan_from_env(&e, 1, None)
            .unwrap()
            .check_scheduler_ip(loopback)
            .unwrap();
        e.insert("SLURM_PROCID".into(), "1".into());
        e.insert("SLURM_STEP_NODELIST".into(), "n1".into());
        plan_from_env(&e, 1, None)
            .unwrap()
            .check_scheduler_ip(loopback)
            .unwrap();
    }

    #[test]
    fn ports_differ_across_nearby_jobs_and_steps_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for job in 1000..1100u64 {
            for step in 0..STEPS_PER_JOB {
                let port = scheduler_port(job, step);
                assert!((PORT_BASE..PORT_BASE + PORT_SPAN).contains(&port));
                assert!(
                    seen.insert(port),
                    "job {job} step {step} reuses port {port}"
                );
            }
        }
        assert!(scheduler_port(u64::MAX, u64::MAX) >= PORT_BASE);
    }
}
