//! Liveness over real processes: heartbeats between the scheduler and every node, the start-up
//! deadline, and the slot a node frees when it leaves before the job starts.
//!
//! Every process runs with short heartbeat settings (200 ms interval, 1.5 s timeout) and logs
//! to a file of its own in a scratch directory, so that a test can check what each one said.
//! Margins are generous: a test only fails on a hang (no end within 60 s) or a wrong message.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{announced_address, ferrops_without_cluster_env, is_gone, poll, send_signal, Scratch};

/// Heartbeat settings of every process in these tests.
const LIVENESS_ENV: [(&str, &str); 2] = [
    ("FERROPS_HEARTBEAT_INTERVAL_MS", "200"),
    ("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500"),
];

/// How long a job may take to end once the fault happened: the timeout plus a wide margin for a
/// loaded machine. Today's code hangs instead.
const ENDS_WITHIN: Duration = Duration::from_secs(60);

/// A worker job that trains far longer than any test waits.
const LONG_JOB: [&str; 8] = [
    "worker",
    "--job",
    "logreg",
    "--",
    "--epochs",
    "500",
    "--examples",
    "20000",
];

fn ferrops() -> Command {
    let mut c = ferrops_without_cluster_env();
    // Every process of these hand-started jobs shares one secret.
    c.env("FERROPS_SECRET", "liveness-test-secret")
        .env("FERROPS_LOG", "info")
        .envs(LIVENESS_ENV);
    c
}

/// One process of a job, its stderr (and stdout) going to `<name>.log`.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(scratch: &Scratch, name: &str, command: &mut Command) -> Proc {
        let log = scratch.dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits until the process exits, at the latest `deadline`; kills it and fails the test if it
    /// hangs.
    fn exit_by(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} hung; its log:\n{}", self.name, self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails unless the process exits unsuccessfully by `deadline` having said every one of
    /// `texts`.
    fn fails_saying(&mut self, deadline: Instant, texts: &[&str]) {
        let status = self.exit_by(deadline);
        let log = self.log();
        assert!(!status.success(), "{} exited 0; log:\n{log}", self.name);
        for text in texts {
            assert!(
                log.contains(text),
                "{} does not say `{text}`; log:\n{log}",
                self.name
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A test that failed half-way must not leave stopped or running processes behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `read` until it contains `text`, failing after a minute.
fn wait_until_said(what: &str, read: impl Fn() -> String, text: &str) {
    poll(Duration::from_secs(60), || {
        let log = read();
        if log.contains(text) {
            return Ok(());
        }
        Err(format!("{what} never said `{text}`; its log:\n{log}"))
    })
}

/// A job started by hand, one process per role as a batch system would, on loopback.
struct HandJob {
    scheduler: Proc,
    addr: String,
    servers: usize,
    workers: usize,
}

impl HandJob {
    /// Starts the scheduler of a job with `servers` servers and `workers` workers (with the
    /// extra environment `env`) and reads the address it announces.
    fn start(scratch: &Scratch, servers: usize, workers: usize, env: &[(&str, &str)]) -> HandJob {
        let mut command = ferrops();
        command
            .arg("scheduler")
            .env("FERROPS_NUM_SERVERS", servers.to_string())
            .env("FERROPS_NUM_WORKERS", workers.to_string())
            .env("FERROPS_BIND", "127.0.0.1:0")
            .envs(env.iter().copied());
        let log = scratch.dir.join("scheduler.log");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr = announced_address(&mut child);
        HandJob {
            scheduler: Proc {
                name: "scheduler".into(),
                child,
                log,
            },
            addr,
            servers,
            workers,
        }
    }

    fn node(&self, scratch: &Scratch, name: &str, args: &[&str]) -> Proc {
        let mut command = ferrops();
        command
            .args(args)
            .env("FERROPS_SCHEDULER", &self.addr)
            .env("FERROPS_NUM_SERVERS", self.servers.to_string())
            .env("FERROPS_NUM_WORKERS", self.workers.to_string())
            .env("FERROPS_BIND", "127.0.0.1:0");
        Proc::spawn(scratch, name, &mut command)
    }

    fn server(&self, scratch: &Scratch, name: &str) -> Proc {
        self.node(scratch, name, &["server"])
    }

    /// Waits until the scheduler has logged `text`.
    fn scheduler_said(&self, text: &str) {
        wait_until_said("the scheduler", || self.scheduler.log(), text);
    }
}

/// Starts a job of one server and two workers running [`LONG_JOB`], the worker that registers
/// first being rank 0; returns once the job runs.
fn running_job(scratch: &Scratch) -> (HandJob, Proc, [Proc; 2]) {
    let job = HandJob::start(scratch, 1, 2, &[]);
    let server = job.server(scratch, "server");
    let first = job.node(scratch, "worker0", &LONG_JOB);
    job.scheduler_said("worker 0 registered");
    let second = job.node(scratch, "worker1", &LONG_JOB);
    job.scheduler_said("releasing 2 workers");
    // Let both workers reach their training loops.
    thread::sleep(Duration::from_millis(500));
    (job, server, [first, second])
}

/// Sends `signal` to worker 1 of a running job: the scheduler says why it is dead (each of
/// `scheduler_says`) and that the job goes on without it — the survivor is not stopped. Once
/// the survivor is killed too, no worker is left: the job ends, failing, counting both lost.
fn worker_fault_is_a_leave(test: &str, signal: &str, scheduler_says: &[&str]) {
    let scratch = Scratch::new("liveness", test);
    let (mut job, mut server, [survivor, faulty]) = running_job(&scratch);
    faulty.signal(signal);
    for text in ["worker 1", "the job goes on without it"]
        .iter()
        .chain(scheduler_says)
    {
        job.scheduler_said(text);
    }
    survivor.signal("KILL");
    let deadline = Instant::now() + ENDS_WITHIN;
    job.scheduler
        .fails_saying(deadline, &["0 workers done, 2 lost"]);
    server.fails_saying(deadline, &["2 lost"]);
    // `faulty` is killed when dropped: a stopped process cannot exit by itself.
}

#[test]
fn a_killed_worker_leaves_and_the_job_goes_on_without_it() {
    worker_fault_is_a_leave("kill-worker", "KILL", &[]);
}

#[test]
fn a_stopped_worker_is_declared_dead_and_leaves() {
    worker_fault_is_a_leave("stop-worker", "STOP", &["no heartbeat"]);
}

/// What a node says when the scheduler stops answering its heartbeats.
const SCHEDULER_SILENT: &str = "the scheduler has not answered";

#[test]
fn a_stopped_scheduler_ends_a_running_job() {
    let scratch = Scratch::new("liveness", "stop-scheduler");
    let (job, mut server, [mut first, mut second]) = running_job(&scratch);
    job.scheduler.signal("STOP");
    let deadline = Instant::now() + ENDS_WITHIN;
    server.fails_saying(deadline, &[SCHEDULER_SILENT]);
    // The workers notice the silence or the server that left, whichever comes first.
    first.fails_saying(deadline, &[]);
    second.fails_saying(deadline, &[]);
}

#[test]
fn a_stopped_scheduler_makes_the_nodes_waiting_for_the_start_exit_saying_so() {
    let scratch = Scratch::new("liveness", "stop-scheduler-start");
    let job = HandJob::start(&scratch, 1, 2, &[]);
    let mut server = job.server(&scratch, "server");
    let mut worker = job.node(&scratch, "worker", &["worker", "--job", "check"]);
    job.scheduler_said("worker 0 registered");
    job.scheduler_said("server 0 registered");
    job.scheduler.signal("STOP");
    let deadline = Instant::now() + ENDS_WITHIN;
    server.fails_saying(deadline, &[SCHEDULER_SILENT]);
    worker.fails_saying(deadline, &[SCHEDULER_SILENT]);
}

#[test]
fn a_missing_worker_ends_the_start_up_with_a_message_naming_it() {
    let scratch = Scratch::new("liveness", "missing-worker");
    let mut job = HandJob::start(&scratch, 1, 2, &[("FERROPS_STARTUP_DEADLINE_MS", "2000")]);
    let mut server = job.server(&scratch, "server");
    let mut worker = job.node(&scratch, "worker", &["worker", "--job", "check"]);
    let deadline = Instant::now() + ENDS_WITHIN;
    let said = ["1 of 2 workers never registered"];
    job.scheduler.fails_saying(deadline, &said);
    server.fails_saying(deadline, &said);
    worker.fails_saying(deadline, &said);
}

/// A node of `role` registers, is killed before the job starts, and a replacement takes its
/// slot: the job then runs to success.
fn a_node_that_leaves_before_the_start_frees_its_slot(role: &str) {
    let scratch = Scratch::new("liveness", &format!("leave-{role}"));
    let mut job = HandJob::start(&scratch, 1, 2, &[]);
    let check = ["worker", "--job", "check"];
    let mut early = match role {
        "server" => job.server(&scratch, "early"),
        _ => job.node(&scratch, "early", &check),
    };
    job.scheduler_said(&format!("{role} 0 registered"));
    early.signal("KILL");
    early.exit_by(Instant::now() + ENDS_WITHIN);
    let mut nodes = [
        job.server(&scratch, "server"),
        job.node(&scratch, "worker0", &check),
        job.node(&scratch, "worker1", &check),
    ];
    let deadline = Instant::now() + ENDS_WITHIN;
    for node in &mut nodes {
        let status = node.exit_by(deadline);
        assert!(status.success(), "{} failed:\n{}", node.name, node.log());
    }
    for worker in &nodes[1..3] {
        assert!(worker.log().contains("check passed"), "{}", worker.log());
    }
    let status = job.scheduler.exit_by(deadline);
    assert!(status.success(), "scheduler:\n{}", job.scheduler.log());
}

#[test]
fn a_worker_that_leaves_before_the_start_frees_its_slot() {
    a_node_that_leaves_before_the_start_frees_its_slot("worker");
}

#[test]
fn a_server_that_leaves_before_the_start_frees_its_slot() {
    a_node_that_leaves_before_the_start_frees_its_slot("server");
}

// ---- under `ferrops local` ----

/// A stand-in for the ferrops binary that runs the real one with each process's stderr in a
/// file of its own, `<role>-<pid>.log`, so that a test knows which process said what.
fn logging_node_exe(scratch: &Scratch) -> PathBuf {
    let path = scratch.dir.join("node.sh");
    let script = "#!/bin/sh\nexec \"$FERROPS_REAL\" \"$@\" 2>> \"$SCRATCH/$1-$$.log\"\n";
    fs::write(&path, script).unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    assert!(chmod.success());
    path
}

/// The logs `<role>-<pid>.log` in `dir`, by pid.
fn logs_of(dir: &Path, role: &str) -> Vec<(u32, String)> {
    let mut logs: Vec<(u32, String)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let pid = name
                .strip_prefix(&format!("{role}-"))?
                .strip_suffix(".log")?;
            Some((pid.parse().ok()?, fs::read_to_string(dir.join(&name)).ok()?))
        })
        .collect();
    logs.sort();
    logs
}

/// The rank a server's log says it was welcomed with (`server R owns keys`).
fn welcomed_rank(log: &str) -> Option<u32> {
    let rest = log.split("server ").find(|s| s.contains(" owns keys"))?;
    rest.split(' ').next()?.parse().ok()
}

#[test]
fn a_stopped_server_ends_a_local_job_naming_it() {
    let scratch = Scratch::new("liveness", "local-stop-server");
    let mut command = ferrops();
    command
        .args(["local", "--servers", "2", "--workers", "2"])
        .args(["--shutdown-grace", "2", "--node-exe"])
        .arg(logging_node_exe(&scratch))
        .env("FERROPS_REAL", env!("CARGO_BIN_EXE_ferrops"))
        .env("SCRATCH", &scratch.dir)
        .arg("--")
        .arg("ferrops")
        .args(LONG_JOB);
    let mut launcher = Proc::spawn(&scratch, "launcher", &mut command);
    let servers = poll(Duration::from_secs(60), || {
        let servers: Vec<(u32, u32)> = logs_of(&scratch.dir, "server")
            .into_iter()
            .filter_map(|(pid, log)| Some((pid, welcomed_rank(&log)?)))
            .collect();
        if servers.len() == 2 {
            return Ok(servers);
        }
        Err(format!(
            "the servers were never welcomed:\n{}",
            launcher.log()
        ))
    });
    // Let the workers reach their training loops, then stop the server of rank 1.
    thread::sleep(Duration::from_millis(500));
    let (pid, rank) = servers.into_iter().find(|&(_, r)| r == 1).unwrap();
    send_signal(pid, "STOP");
    let status = launcher.exit_by(Instant::now() + ENDS_WITHIN);
    assert!(!status.success(), "{}", launcher.log());
    let scheduler = logs_of(&scratch.dir, "scheduler")
        .into_iter()
        .map(|(_, log)| log)
        .collect::<String>();
    for text in [format!("server {rank} "), "no heartbeat".to_string()] {
        assert!(scheduler.contains(&text), "`{text}` not in:\n{scheduler}");
    }
    poll(Duration::from_secs(10), || {
        is_gone(pid as i32)
            .then_some(())
            .ok_or_else(|| "the stopped server was left behind".to_string())
    });
}
