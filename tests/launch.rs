//! Tests of `ferrops local` through the real binary: exit codes of failed workers, signal
//! forwarding, and that no child process outlives the launcher.
//!
//! Most tests run the scheduler and servers from a stand-in script (`--node-exe`) that announces a
//! fake address and sleeps, so the launcher is tested on its own; the `real_cluster_*` tests run
//! the real scheduler and server roles.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{is_gone, poll, processes_marked, send_signal, Scratch};

/// The scratch directory is where children record their pids.
impl Scratch {
    /// A stand-in for the ferrops binary's scheduler and server roles: records its pid, the
    /// scheduler announces an address, then both sleep until killed.
    fn fake_node(&self) -> PathBuf {
        let path = self.dir.join("fake-node.sh");
        let script = format!(
            "#!/bin/sh\n\
             echo $$ >> '{pids}'\n\
             if [ \"$1\" = scheduler ]; then echo FERROPS_SCHEDULER=127.0.0.1:9; fi\n\
             exec sleep 600\n",
            pids = self.pids_file().display()
        );
        fs::write(&path, script).unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(chmod.success());
        path
    }

    /// A value unique to this test run, for `FERROPS_TEST_MARKER`.
    fn marker(&self) -> String {
        self.dir.display().to_string()
    }

    /// Fails unless every process in `pids`, and every process carrying this test's marker,
    /// is gone within a few seconds.
    fn assert_nothing_left(&self, pids: &[i32]) {
        assert_all_gone(pids);
        assert_no_marked_processes(&self.marker());
    }

    fn pids_file(&self) -> PathBuf {
        self.dir.join("pids")
    }

    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.pids_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// Waits until `count` pids have been recorded.
    fn wait_for_pids(&self, count: usize) -> Vec<i32> {
        poll(Duration::from_secs(20), || {
            let pids = self.pids();
            if pids.len() >= count {
                return Ok(pids);
            }
            Err(format!(
                "only {} of {count} processes started: {pids:?}",
                pids.len()
            ))
        })
    }
}

fn ferrops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrops"))
}

/// `ferrops local` with the stand-in nodes; the worker runs `worker_shell` under `sh -c`, with
/// `$PIDS` naming the pid file and `$SCRATCH` the scratch directory.
fn local_with_fake_nodes(scratch: &Scratch, workers: usize, worker_shell: &str) -> Command {
    let worker: [&OsStr; 3] = ["sh".as_ref(), "-c".as_ref(), worker_shell.as_ref()];
    local_with_fake_nodes_running(scratch, workers, "1", &worker)
}

/// `ferrops local` with the stand-in nodes, a shutdown grace of `grace` seconds, and `worker` as
/// the worker command.
fn local_with_fake_nodes_running(
    scratch: &Scratch,
    workers: usize,
    grace: &str,
    worker: &[&OsStr],
) -> Command {
    let mut command = local_in(scratch, workers, grace);
    command
        .arg("--node-exe")
        .arg(scratch.fake_node())
        .arg("--")
        .args(worker);
    command
}

/// `ferrops local` with 2 servers, `workers` workers and a shutdown grace of `grace` seconds,
/// whose processes see `$PIDS`, `$SCRATCH` and this test's marker and no config file; the
/// caller appends further options, `--` and the worker command.
fn local_in(scratch: &Scratch, workers: usize, grace: &str) -> Command {
    let mut command = ferrops();
    command
        .args(["local", "--servers", "2", "--workers", &workers.to_string()])
        .args(["--shutdown-grace", grace])
        .env("PIDS", scratch.pids_file())
        .env("SCRATCH", &scratch.dir)
        .env("FERROPS_TEST_MARKER", scratch.marker())
        .env_remove("FERROPS_CONFIG");
    command
}

/// Fails unless every process in `pids` is gone within a few seconds; kills survivors first so a
/// failing test does not leave them behind either.
fn assert_all_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| !is_gone(p)).collect();
        if alive.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in &alive {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
            panic!("processes left behind: {alive:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Fails unless no process carrying `marker` is left within a few seconds.
fn assert_no_marked_processes(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_marked(marker);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            assert_all_gone(&left);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `command` to completion, fails unless it exits with code 1, and returns its stderr.
fn stderr_of_exit_1(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

/// How a launcher run ended, with what it printed.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Starts `command` with stdout and stderr going to files in the scratch directory (a leaked
/// child holding a pipe open must not hang the test).
fn start(command: &mut Command, scratch: &Scratch) -> Child {
    let stdout = fs::File::create(scratch.dir.join("launcher.out")).unwrap();
    let stderr = fs::File::create(scratch.dir.join("launcher.err")).unwrap();
    command.stdout(stdout).stderr(stderr).spawn().unwrap()
}

/// Waits up to a minute for the launcher, killing it and failing the test if it hangs.
fn finish(mut launcher: Child, scratch: &Scratch) -> Finished {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = launcher.kill();
            let _ = launcher.wait();
            panic!("launcher hung; stderr:\n{}", read(scratch, "launcher.err"));
        }
        thread::sleep(Duration::from_millis(20));
    };
    Finished {
        code: status.code(),
        stdout: read(scratch, "launcher.out"),
        stderr: read(scratch, "launcher.err"),
    }
}

fn run(command: &mut Command, scratch: &Scratch) -> Finished {
    let launcher = start(command, scratch);
    finish(launcher, scratch)
}

/// Waits until the scratch file `name` contains `text`.
fn wait_for_output(scratch: &Scratch, name: &str, text: &str) {
    poll(Duration::from_secs(20), || {
        read(scratch, name)
            .contains(text)
            .then_some(())
            .ok_or_else(|| format!("no `{text}` in {name}"))
    });
}

fn read(scratch: &Scratch, name: &str) -> String {
    fs::read_to_string(scratch.dir.join(name)).unwrap_or_default()
}

/// Sends `signal` to the launcher and waits for it to finish.
fn signal_and_finish(launcher: Child, scratch: &Scratch, signal: &str) -> Finished {
    send_signal(launcher.id(), signal);
    finish(launcher, scratch)
}

/// Starts `command`, waits until `processes` pids are recorded, sends the launcher `signal`,
/// and fails unless it exits with `code` and leaves no process behind.
fn assert_signal_stops_everything(
    scratch: &Scratch,
    command: &mut Command,
    processes: usize,
    signal: &str,
    code: i32,
) {
    let launcher = start(command, scratch);
    let pids = scratch.wait_for_pids(processes);
    let run = signal_and_finish(launcher, scratch, signal);
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    scratch.assert_nothing_left(&pids);
}

/// The first worker to create `$SCRATCH/first` waits until `processes` pids are recorded (every
/// node and worker is up), then runs `action`; the other workers sleep until killed.
fn one_worker_does(processes: usize, action: &str) -> String {
    format!(
        "echo $$ >> \"$PIDS\"; \
         if mkdir \"$SCRATCH/first\" 2>/dev/null; then \
           until [ \"$(wc -l < \"$PIDS\")\" -ge {processes} ]; do sleep 0.02; done; {action}; \
         fi; exec sleep 600"
    )
}

/// Runs the stand-in nodes with `workers` workers, one of which runs `action` once the
/// scheduler, both servers and every worker are up.
fn run_with_one_worker_doing(scratch: &Scratch, workers: usize, action: &str) -> Finished {
    let worker = one_worker_does(1 + 2 + workers, action);
    run(
        &mut local_with_fake_nodes(scratch, workers, &worker),
        scratch,
    )
}

#[test]
fn failed_worker_exit_code_is_propagated_and_nothing_remains() {
    let scratch = Scratch::new("launch", "exit3");
    let run = run_with_one_worker_doing(&scratch, 3, "exit 3");
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("failed: exit code 3"), "{}", run.stderr);
    let pids = scratch.pids();
    assert_eq!(pids.len(), 1 + 2 + 3, "{pids:?}");
    scratch.assert_nothing_left(&pids);
}

#[test]
fn worker_killed_by_signal_exits_128_plus_signal() {
    let scratch = Scratch::new("launch", "sigkill");
    let run = run_with_one_worker_doing(&scratch, 2, "kill -KILL $$");
    assert_eq!(run.code, Some(128 + 9), "{}", run.stderr);
    assert!(run.stderr.contains("SIGKILL"), "{}", run.stderr);
    scratch.assert_nothing_left(&scratch.pids());
}

#[test]
fn ctrl_c_is_forwarded_and_grandchildren_are_stopped_too() {
    let scratch = Scratch::new("launch", "sigint");
    let worker = "echo $$ >> \"$PIDS\"; sleep 600 & echo $! >> \"$PIDS\"; wait";
    let command = &mut local_with_fake_nodes(&scratch, 2, worker);
    assert_signal_stops_everything(&scratch, command, 1 + 2 + 2 * 2, "INT", 128 + 2);
}

#[test]
fn second_ctrl_c_kills_without_waiting_out_the_grace_period() {
    let scratch = Scratch::new("launch", "second-sigint");
    let worker = "trap '' INT TERM; echo $$ >> \"$PIDS\"; while :; do sleep 1; done";
    let worker: [&OsStr; 3] = ["sh".as_ref(), "-c".as_ref(), worker.as_ref()];
    let mut command = local_with_fake_nodes_running(&scratch, 1, "60", &worker);
    let launcher = start(&mut command, &scratch);
    let pids = scratch.wait_for_pids(1 + 2 + 1);
    let started = Instant::now();
    send_signal(launcher.id(), "INT");
    wait_for_output(&scratch, "launcher.err", "stopping the cluster");
    let run = signal_and_finish(launcher, &scratch, "INT");
    assert_eq!(run.code, Some(128 + 2), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("second signal"), "{}", run.stderr);
    scratch.assert_nothing_left(&pids);
}

#[test]
fn sigterm_is_forwarded() {
    let scratch = Scratch::new("launch", "sigterm");
    let worker = "echo $$ >> \"$PIDS\"; exec sleep 600";
    let command = &mut local_with_fake_nodes(&scratch, 1, worker);
    assert_signal_stops_everything(&scratch, command, 1 + 2 + 1, "TERM", 128 + 15);
}

#[test]
fn children_die_with_a_killed_launcher() {
    let scratch = Scratch::new("launch", "launcher-killed");
    let mut launcher = local_with_fake_nodes(&scratch, 2, "echo $$ >> \"$PIDS\"; exec sleep 600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = scratch.wait_for_pids(1 + 2 + 2);
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    scratch.assert_nothing_left(&pids);
}

#[test]
fn success_waits_out_lingering_nodes_and_prefixes_output() {
    let scratch = Scratch::new("launch", "success");
    let worker = "echo $$ >> \"$PIDS\"; echo hello";
    let run = run(&mut local_with_fake_nodes(&scratch, 2, worker), &scratch);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("[worker 0] hello"), "{}", run.stdout);
    assert!(run.stdout.contains("[worker 1] hello"), "{}", run.stdout);
    assert!(run.stderr.contains("still running"), "{}", run.stderr);
    scratch.assert_nothing_left(&scratch.pids());
}

#[test]
fn scheduler_dying_before_announcing_is_an_error() {
    let stderr = stderr_of_exit_1(
        ferrops()
            .args(["local", "--servers", "1", "--workers", "1"])
            .args(["--node-exe", "false", "--", "true"]),
    );
    assert!(
        stderr.contains("error:") && stderr.contains("before announcing"),
        "{stderr}"
    );
    assert!(stderr.contains("exit code 1"), "{stderr}");
}

#[test]
fn missing_worker_program_is_an_error_and_stops_the_nodes() {
    let scratch = Scratch::new("launch", "no-program");
    let missing = scratch.dir.join("no-such-program");
    let mut command = local_with_fake_nodes_running(&scratch, 1, "1", &[missing.as_os_str()]);
    let run = run(&mut command, &scratch);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("starting worker 0"), "{}", run.stderr);
    scratch.assert_nothing_left(&scratch.pids());
}

#[test]
fn usage_errors_exit_2() {
    let output = ferrops()
        .args(["local", "--servers", "0", "--workers", "1", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let output = ferrops().arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_environment_value_is_reported_with_its_source() {
    let stderr = stderr_of_exit_1(
        ferrops()
            .env("FERROPS_ROLE", "server")
            .env("FERROPS_SCHEDULER", "127.0.0.1:9")
            .env("FERROPS_NUM_SERVERS", "0")
            .env("FERROPS_NUM_WORKERS", "1")
            .env_remove("FERROPS_CONFIG"),
    );
    assert!(stderr.contains("error: configuring the server"), "{stderr}");
    assert!(
        stderr.contains("caused by:") && stderr.contains("FERROPS_NUM_SERVERS"),
        "{stderr}"
    );
}

#[test]
fn unknown_config_file_key_is_reported_with_the_file() {
    let scratch = Scratch::new("launch", "config");
    let file = scratch.dir.join("job.toml");
    fs::write(&file, "num_servers = 1\nnum_workerz = 2\n").unwrap();
    let stderr = stderr_of_exit_1(
        ferrops()
            .args(["worker", "--job", "x", "--config"])
            .arg(&file),
    );
    assert!(
        stderr.contains("job.toml") && stderr.contains("num_workerz"),
        "{stderr}"
    );
}

// ---- with the real scheduler and server roles ----

fn local_with_real_nodes(scratch: &Scratch, workers: usize, worker_shell: &str) -> Command {
    let mut command = local_in(scratch, workers, "5");
    command
        .args(["--startup-timeout", "20"])
        .args(["--", "sh", "-c", worker_shell]);
    command
}

/// Pids of the launcher's direct children (scheduler, servers, workers) while it runs.
fn children_of(pid: u32) -> Vec<i32> {
    let output = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Starts real nodes with 2 workers running `worker_shell`, each of which records its pid; once
/// both have, returns the launcher and the pids of the workers and of the launcher's children.
fn start_real_cluster(scratch: &Scratch, worker_shell: &str) -> (Child, Vec<i32>) {
    let launcher = start(
        &mut local_with_real_nodes(scratch, 2, worker_shell),
        scratch,
    );
    let mut pids = scratch.wait_for_pids(2);
    pids.extend(children_of(launcher.id()));
    (launcher, pids)
}

#[test]
fn real_cluster_failed_worker_stops_everything() {
    let scratch = Scratch::new("launch", "real-exit3");
    let go = "until [ -e \"$SCRATCH/go\" ]; do sleep 0.02; done; exit 3";
    let worker = one_worker_does(2, go);
    let (launcher, pids) = start_real_cluster(&scratch, &worker);
    fs::write(scratch.dir.join("go"), "").unwrap();
    let run = finish(launcher, &scratch);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(pids.len() >= 1 + 2 + 2, "{pids:?}");
    scratch.assert_nothing_left(&pids);
}

#[test]
fn real_cluster_ctrl_c_stops_everything() {
    let scratch = Scratch::new("launch", "real-sigint");
    let worker = "echo $$ >> \"$PIDS\"; exec sleep 600";
    let (launcher, pids) = start_real_cluster(&scratch, worker);
    let run = signal_and_finish(launcher, &scratch, "INT");
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    scratch.assert_nothing_left(&pids);
}

/// Runs a real job to completion: the scheduler and servers must exit by themselves.
fn assert_real_job_succeeds(scratch: &Scratch, worker: &[&str]) {
    let mut command = local_in(scratch, 2, "10");
    command.arg("--").args(worker);
    let launcher = start(&mut command, scratch);
    thread::sleep(Duration::from_millis(300));
    let pids = children_of(launcher.id());
    let run = finish(launcher, scratch);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains("still running"),
        "nodes had to be killed: {}",
        run.stderr
    );
    scratch.assert_nothing_left(&pids);
}

#[test]
fn real_cluster_job_succeeds_and_leaves_nothing_behind() {
    let scratch = Scratch::new("launch", "real-success");
    let job = std::env::var("FERROPS_TEST_JOB").unwrap_or_else(|_| "check".to_string());
    assert_real_job_succeeds(&scratch, &["ferrops", "worker", "--job", &job]);
}

/// The pid the launcher logged for `label` ("started server 1 (pid 1234)").
fn started_pid(log: &str, label: &str) -> u32 {
    let marker = format!("started {label} (pid ");
    let at = log
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{marker}` in:\n{log}"));
    let rest = &log[at + marker.len()..];
    rest[..rest.find(')').unwrap()].parse().unwrap()
}

/// The address the process labelled `label` by the launcher says it listens on.
fn listening_addr(log: &str, label: &str) -> String {
    let prefix = format!("[{label}] ");
    let line = log
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains("server listening on "))
        .unwrap_or_else(|| panic!("{label} never said where it listens:\n{log}"));
    let addr = line.split("server listening on ").nth(1).unwrap();
    addr.split_whitespace().next().unwrap().to_string()
}

/// A server killed with SIGKILL is what the launcher reports, under the name the scheduler gives
/// it, with its signal and exit code 137; not the scheduler, which exits (code 1) because it
/// lost that server.
#[test]
fn real_cluster_killed_server_is_named_as_the_scheduler_names_it() {
    let scratch = Scratch::new("launch", "real-kill-server");
    let mut command = ferrops();
    command
        .args([
            "local",
            "--servers",
            "4",
            "--workers",
            "1",
            "--shutdown-grace",
            "5",
        ])
        .args(["--startup-timeout", "20"])
        .env("PIDS", scratch.pids_file())
        .env("FERROPS_TEST_MARKER", scratch.marker())
        .env_remove("FERROPS_CONFIG")
        .args(["--", "sh", "-c", "echo $$ >> \"$PIDS\"; exec sleep 600"])
        .env("FERROPS_LOG", "debug");
    let launcher = start(&mut command, &scratch);
    for rank in 0..4 {
        wait_for_output(
            &scratch,
            "launcher.err",
            &format!("server {rank} registered at"),
        );
    }
    let pids = children_of(launcher.id());
    let log = read(&scratch, "launcher.err");
    for rank in 0..4 {
        let label = format!("server {rank}");
        let addr = listening_addr(&log, &label);
        let registered = format!("{label} registered at {addr}");
        assert!(log.contains(&registered), "no `{registered}` in:\n{log}");
    }
    send_signal(started_pid(&log, "server 2"), "KILL");
    let run = finish(launcher, &scratch);
    assert_eq!(run.code, Some(137), "{}", run.stderr);
    assert!(
        run.stderr.contains("server 2 failed: killed by SIGKILL"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("scheduler failed"), "{}", run.stderr);
    scratch.assert_nothing_left(&pids);
}
