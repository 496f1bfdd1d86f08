//! `ferrops slurm` through the real binary, with the variables srun gives each task set by hand:
//! four task processes (scheduler, server, two workers) find each other and run the check job;
//! SIGTERM, Slurm's signal on scancel and at the time limit, stops every task with status 143
//! and a log line saying so, and nothing is left; a task without the job's secret refuses to
//! start. The CI stage `slurm` runs the same under real slurmctld/slurmd.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{poll, processes_marked, Scratch};

const TASKS: usize = 4;
/// Generous: a loaded 2-core machine runs four debug processes per job.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// The scratch directory holds the tasks' output.
impl Scratch {
    fn out(&self, task: usize, stream: &str) -> PathBuf {
        self.dir.join(format!("task{task}.{stream}"))
    }

    fn read(&self, task: usize, stream: &str) -> String {
        fs::read_to_string(self.out(task, stream)).unwrap_or_default()
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts task `procid` of a `TASKS`-task step, as srun would, running `worker` as the workers.
fn start_task(scratch: &Scratch, procid: usize, port: u16, worker: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferrops"))
        .args(["slurm", "--servers", "1", "--port", &port.to_string(), "--"])
        .args(worker)
        .env("SLURM_PROCID", procid.to_string())
        .env("SLURM_NTASKS", TASKS.to_string())
        .env("SLURM_STEP_NODELIST", "localhost")
        .env("SLURM_JOB_ID", "1")
        .env("FERROPS_SECRET", "slurm-test-secret-0123456789abcdef")
        .env("FERROPS_LOG", "info")
        .env("FERROPS_TEST_MARKER", &scratch.dir)
        .env_remove("FERROPS_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(scratch.out(procid, "out")).unwrap())
        .stderr(fs::File::create(scratch.out(procid, "err")).unwrap())
        .spawn()
        .expect("ferrops starts")
}

fn start_step(scratch: &Scratch, worker: &[&str]) -> Vec<Child> {
    let port = free_port();
    (0..TASKS)
        .map(|p| start_task(scratch, p, port, worker))
        .collect()
}

fn wait_all(tasks: &mut [Child], timeout: Duration) -> Vec<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut statuses = vec![None; tasks.len()];
    while statuses.iter().any(Option::is_none) {
        for (task, status) in tasks.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                *status = task.try_wait().unwrap();
            }
        }
        if Instant::now() >= deadline {
            for task in tasks.iter_mut() {
                let _ = task.kill();
            }
            panic!("tasks still running after {timeout:?}: {statuses:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    statuses.into_iter().map(Option::unwrap).collect()
}

fn assert_nothing_left(scratch: &Scratch) {
    // The tasks' children inherit the marker.
    let marker = scratch.dir.display().to_string();
    poll(Duration::from_secs(10), || {
        let left = processes_marked(&marker);
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("processes left: {left:?}"))
    });
}

#[test]
fn four_tasks_become_scheduler_server_and_two_workers_that_pass_the_check() {
    let scratch = Scratch::new("slurm", "check");
    let mut tasks = start_step(&scratch, &["ferrops", "worker", "--job", "check"]);
    let statuses = wait_all(&mut tasks, JOB_TIMEOUT);
    let report = (0..TASKS)
        .map(|t| {
            format!(
                "task {t}: {}\n{}{}",
                statuses[t],
                scratch.read(t, "out"),
                scratch.read(t, "err")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(statuses.iter().all(ExitStatus::success), "{report}");
    for (task, role) in [
        (0, "scheduler"),
        (1, "server 0"),
        (2, "worker 0"),
        (3, "worker 1"),
    ] {
        assert!(
            scratch
                .read(task, "err")
                .contains(&format!("task {task} ({role}) of 4")),
            "{report}"
        );
    }
    for worker in [2, 3] {
        assert!(
            scratch.read(worker, "out").contains("check passed"),
            "{report}"
        );
    }
    assert_nothing_left(&scratch);
}

#[test]
fn sigterm_stops_every_task_with_status_143_and_says_why() {
    let scratch = Scratch::new("slurm", "sigterm");
    let training = [
        "ferrops",
        "worker",
        "--job",
        "logreg",
        "--",
        "--examples",
        "20000",
        "--features",
        "5000",
        "--epochs",
        "100000",
        "--batch",
        "500",
    ];
    let mut tasks = start_step(&scratch, &training);
    let deadline = Instant::now() + JOB_TIMEOUT;
    // Rank 0 (either worker task) reports each epoch: the job is training.
    while !(2..TASKS).any(|t| scratch.read(t, "out").contains("epoch   2")) {
        assert!(
            Instant::now() < deadline,
            "no second epoch: {}",
            scratch.read(0, "err")
        );
        assert!(
            tasks.iter_mut().all(|t| t.try_wait().unwrap().is_none()),
            "a task ended early"
        );
        thread::sleep(Duration::from_millis(100));
    }
    for task in &tasks {
        let kill = Command::new("kill")
            .args(["-TERM", &task.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }
    let statuses = wait_all(&mut tasks, Duration::from_secs(60));
    for (task, status) in statuses.iter().enumerate() {
        let err = scratch.read(task, "err");
        assert_eq!(status.code(), Some(143), "task {task}: {status}\n{err}");
        assert!(
            err.contains("received SIGTERM (signal 15), Slurm's signal"),
            "{err}"
        );
        assert!(
            err.contains("stopped by SIGTERM (signal 15); exit status 143"),
            "{err}"
        );
    }
    assert_nothing_left(&scratch);
}

#[test]
fn a_task_without_the_secret_refuses_to_start() {
    let scratch = Scratch::new("slurm", "secret");
    let output = Command::new(env!("CARGO_BIN_EXE_ferrops"))
        .args([
            "slurm",
            "--servers",
            "1",
            "--",
            "ferrops",
            "worker",
            "--job",
            "check",
        ])
        .env("SLURM_PROCID", "3")
        .env("SLURM_NTASKS", "4")
        .env("SLURM_STEP_NODELIST", "localhost")
        .env("SLURM_JOB_ID", "1")
        .env("FERROPS_TEST_MARKER", &scratch.dir)
        .env_remove("FERROPS_SECRET")
        .env_remove("FERROPS_SECRET_FILE")
        .env_remove("FERROPS_INSECURE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("task 3 (worker 1): every task needs the job's secret"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("of 4: scheduler"),
        "it started anyway: {stderr}"
    );
}
