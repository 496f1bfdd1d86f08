//! The launcher's unit tests: exit codes, commands, and clusters of fake nodes (`sh` scripts).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use super::process::exit_code;
use super::*;
use crate::config::{ENV_NUM_WORKERS, ENV_RANK, ENV_ROLE, ENV_SCHEDULER};

fn status_of(shell: &str) -> ExitStatus {
    Command::new("sh").arg("-c").arg(shell).status().unwrap()
}

#[test]
fn exit_codes_follow_shell_conventions() {
    assert_eq!(exit_code(status_of("exit 0")), 0);
    assert_eq!(exit_code(status_of("exit 3")), 3);
    assert_eq!(exit_code(status_of("kill -KILL $$")), 137);
    assert_eq!(exit_code(status_of("kill -TERM $$")), 143);
}

#[test]
fn statuses_are_described_for_people() {
    assert_eq!(describe_status(status_of("exit 3")), "exit code 3");
    assert_eq!(
        describe_status(status_of("kill -KILL $$")),
        "killed by SIGKILL (signal 9)"
    );
}

#[test]
fn worker_command_named_ferrops_runs_the_node_binary() {
    let mut spec = LocalSpec::new(1, 1).unwrap();
    spec.node_exe = PathBuf::from("/opt/ferrops/bin/ferrops");
    spec.command = vec!["ferrops".into(), "worker".into()];
    let command = worker_command(&spec, "127.0.0.1:5".parse().unwrap(), 3);
    assert_eq!(command.get_program(), spec.node_exe.as_os_str());
    let envs: Vec<_> = command.get_envs().collect();
    assert!(envs.contains(&(OsStr::new(ENV_ROLE), Some(OsStr::new("worker")))));
    assert!(envs.contains(&(OsStr::new(ENV_SCHEDULER), Some(OsStr::new("127.0.0.1:5")))));
    assert!(envs.contains(&(OsStr::new(ENV_NUM_WORKERS), Some(OsStr::new("1")))));
    assert!(envs.contains(&(OsStr::new(ENV_RANK), Some(OsStr::new("3")))));
}

#[test]
fn scheduler_that_dies_before_announcing_is_reported_with_its_status() {
    let mut spec = LocalSpec::new(1, 1).unwrap();
    spec.node_exe = PathBuf::from("false");
    let error = format!("{:#}", LocalCluster::start(&spec).err().unwrap());
    assert!(
        error.contains("before announcing") && error.contains("exit code 1"),
        "{error}"
    );
}

/// A spec whose scheduler and servers are `sh` running `body` (with `$1` the role); the
/// scheduler announces 127.0.0.1:9 first.
fn fake_node_spec(test: &str, body: &str) -> (LocalSpec, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("ferrops-launch-unit-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("node.sh");
    let text = format!(
        "#!/bin/sh\necho $$ >> '{}'\n[ \"$1\" = scheduler ] && echo {ANNOUNCE_PREFIX}127.0.0.1:9\n{body}\n",
        dir.join("pids").display()
    );
    std::fs::write(&script, text).unwrap();
    assert!(status_of(&format!("chmod +x '{}'", script.display())).success());
    let mut spec = LocalSpec::new(2, 3).unwrap();
    spec.node_exe = script;
    spec.shutdown_grace = Duration::from_secs(2);
    (spec, dir)
}

fn recorded_pids(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

#[test]
fn cluster_reports_the_announced_address_and_dies_on_drop() {
    let (spec, dir) = fake_node_spec("drop", "exec sleep 600");
    let mut cluster = LocalCluster::start(&spec).unwrap();
    assert_eq!(cluster.scheduler_addr(), "127.0.0.1:9".parse().unwrap());
    let cfg = cluster.worker_config();
    assert_eq!((cfg.cluster.num_servers, cfg.cluster.num_workers), (2, 3));
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorded_pids(&dir).len() < 3 && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
    cluster.check().unwrap();
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 3, "{pids:?}");
    drop(cluster);
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cluster_wait_succeeds_when_nodes_exit_cleanly() {
    let (spec, dir) = fake_node_spec("wait-ok", "sleep 0.2; exit 0");
    let cluster = LocalCluster::start(&spec).unwrap();
    cluster.wait(Duration::from_secs(10)).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cluster_wait_reports_a_failed_server() {
    let body = "[ \"$1\" = server ] && exit 4; exec sleep 600";
    let (spec, dir) = fake_node_spec("wait-fail", body);
    let cluster = LocalCluster::start(&spec).unwrap();
    let error = format!("{:#}", cluster.wait(Duration::from_secs(10)).unwrap_err());
    assert!(
        error.contains("server") && error.contains("exit code 4"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failure_caused_by_another_waits_for_that_one() {
    // The scheduler stops at once as if shut down by a failed node; server 1 (by its rank)
    // fails half a second later: that server is the failure to report.
    let body = format!(
        "[ \"$1\" = scheduler ] && exit {EXIT_SHUT_DOWN}\n\
         [ \"$FERROPS_RANK\" = 1 ] && {{ sleep 0.5; exit 6; }}\nexec sleep 600"
    );
    let (spec, dir) = fake_node_spec("settle", &body);
    let cluster = LocalCluster::start(&spec).unwrap();
    let error = format!("{:#}", cluster.wait(Duration::from_secs(30)).unwrap_err());
    assert_eq!(error, "server 1 failed: exit code 6");
    let _ = std::fs::remove_dir_all(dir);
    // With nothing else failing, the held failure is reported after all.
    let body = format!("[ \"$1\" = scheduler ] && exit {EXIT_SHUT_DOWN}\nexec sleep 600");
    let (spec, dir) = fake_node_spec("settle-alone", &body);
    let cluster = LocalCluster::start(&spec).unwrap();
    let error = format!("{:#}", cluster.wait(Duration::from_secs(30)).unwrap_err());
    assert_eq!(
        error,
        format!("scheduler failed: exit code {EXIT_SHUT_DOWN}")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spec_rejects_empty_clusters() {
    let spec = LocalSpec::new(0, 1).unwrap();
    assert!(LocalCluster::start(&spec).is_err());
}

#[test]
fn spec_refuses_a_replication_factor_above_its_servers_before_starting_anything() {
    let mut spec = LocalSpec::new(2, 1).unwrap();
    spec.node_exe = "/nonexistent/ferrops".into();
    spec.replication = Some(3);
    let error = format!("{:#}", LocalCluster::start(&spec).err().unwrap());
    assert!(
        error.contains("replication factor 3 needs at least 3 servers, but the job has 2"),
        "{error}"
    );
    spec.replication = Some(2);
    let error = format!("{:#}", LocalCluster::start(&spec).err().unwrap());
    assert!(
        !error.contains("replication"),
        "R = 2 of 2 is valid: {error}"
    );
}

#[test]
fn a_scheduler_stopped_by_the_launcher_is_not_restarted() {
    // With --recover-style restarts on, a scheduler killed by a signal is restarted; but the
    // SIGTERM the launcher itself sends while stopping the cluster is not a crash to recover.
    let mut fleet = Fleet::new(Duration::from_secs(5), false);
    fleet.restart_scheduler = true;
    let mut command = Command::new("sleep");
    command.arg("30");
    fleet
        .spawn_node(Role::Scheduler, "scheduler".into(), command)
        .unwrap();
    fleet.terminate(libc::SIGTERM);
    assert!(fleet.all_exited());
    assert!(
        !fleet.scheduler_killed,
        "the launcher's own stop was taken for a scheduler crash"
    );
}
