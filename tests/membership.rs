//! Elastic worker membership and `ferrops ctl`, end to end: a scheduler and servers run as
//! processes of the real binary, workers as `ferrops::Worker`s of this process (so that a test
//! decides exactly when each pushes, clocks, waits at a barrier, joins or leaves) or as
//! `ferrops worker` processes where one must die.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{announced_address, ferrops_without_cluster_env, run_ok, LineLog, Scratch};
use ferrops::{ClusterConfig, Consistency, TableSpec, Worker, WorkerConfig};
use ferrops_net::auth::{ClusterKey, Secret};

const SECRET: &str = "membership-test-secret";
/// Longer than any step of these tests takes on a loaded machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(120);

/// A scheduler and its servers, as processes; the scheduler's log is followed.
struct Job {
    scheduler: Child,
    servers: Vec<Child>,
    addr: SocketAddr,
    size: (usize, usize),
    log: LineLog,
}

impl Job {
    fn start(servers: usize, workers: usize) -> Job {
        Job::launch(servers, workers, None, &[])
    }

    /// A job that starts from the checkpoint in `dir`.
    fn restore(servers: usize, workers: usize, dir: &Path) -> Job {
        Job::launch(servers, workers, Some(dir), &[])
    }

    /// A job whose scheduler and servers get the environment `env` too.
    fn launch(
        num_servers: usize,
        num_workers: usize,
        restore: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Job {
        let size = [num_servers.to_string(), num_workers.to_string()];
        let mut scheduler = ferrops();
        scheduler
            .envs(env.iter().copied())
            .args(["scheduler", "--bind", "127.0.0.1:0"])
            .args(["--num-servers", &size[0], "--num-workers", &size[1]])
            .env("FERROPS_LOG", "info,ferrops_engine::scheduler=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = restore {
            scheduler.arg("--restore").arg(dir);
        }
        let mut scheduler = scheduler.spawn().unwrap();
        let log = LineLog::follow(scheduler.stderr.take().unwrap());
        let addr: SocketAddr = announced_address(&mut scheduler).parse().unwrap();
        let servers = (0..num_servers)
            .map(|_| {
                ferrops()
                    .envs(env.iter().copied())
                    .args(["server", "--scheduler", &addr.to_string()])
                    .args(["--num-servers", &size[0], "--num-workers", &size[1]])
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        Job {
            scheduler,
            servers,
            addr,
            size: (num_servers, num_workers),
            log,
        }
    }

    /// A worker of this process: one the job was started with, or one that joins it.
    fn worker(&self) -> Worker {
        connect(self.worker_config())
    }

    fn worker_config(&self) -> WorkerConfig {
        let mut cluster = ClusterConfig::new(self.addr, self.size.0, self.size.1);
        cluster.key = ClusterKey::Secret(Secret::new(SECRET).unwrap());
        WorkerConfig { cluster }
    }

    /// The `N` workers the job starts with (each waits for the others to register).
    fn initial_workers<const N: usize>(&self) -> [Worker; N] {
        thread::scope(|s| {
            let connecting: Vec<_> = (0..N)
                .map(|_| {
                    let cfg = self.worker_config();
                    s.spawn(move || connect(cfg))
                })
                .collect();
            let workers: Vec<Worker> = connecting.into_iter().map(|c| c.join().unwrap()).collect();
            workers.try_into().ok().unwrap()
        })
    }

    /// `ferrops ctl` against this job.
    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = ferrops();
        c.arg("ctl")
            .args(args)
            .args(["--scheduler", &self.addr.to_string()]);
        c
    }

    /// `ferrops ctl checkpoint DIR`, running once the scheduler holds it for the next barrier.
    fn ctl_checkpoint(&self, dir: &Path) -> Child {
        let ctl = self
            .ctl(&["checkpoint"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.log.wait_for("written at the next barrier", PATIENCE);
        ctl
    }

    /// Waits until the scheduler logs that `parked` of its `live` workers wait at a barrier.
    fn parked(&self, parked: usize, live: usize) {
        let text = format!("waits at the barrier ({parked} of {live} live workers)");
        self.log.wait_for(&text, PATIENCE);
    }

    /// Waits for every process; true if all exited successfully.
    fn ended_ok(mut self) -> bool {
        let mut ok = self.scheduler.wait().unwrap().success();
        for server in &mut self.servers {
            ok &= server.wait().unwrap().success();
        }
        ok
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.scheduler).chain(&mut self.servers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn connect(cfg: WorkerConfig) -> Worker {
    Worker::connect(&cfg).expect("the worker is welcomed")
}

/// The real binary with the test's secret and nothing else of the caller's cluster settings.
fn ferrops() -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_SECRET", SECRET).env("FERROPS_LOG", "warn");
    c
}

fn keys(count: u64) -> Vec<u64> {
    (0..count).map(|i| i * (u64::MAX / count)).collect()
}

fn sums_table(w: &Worker) -> ferrops::TableId {
    let spec = TableSpec::new("sums", 1).consistency(Consistency::Sequential);
    w.declare_table(spec).unwrap()
}

/// Pushes 1 to every key and finishes the clock, `clocks` times.
fn push_clocks(w: &Worker, t: ferrops::TableId, clocks: usize) {
    let keys = keys(16);
    for _ in 0..clocks {
        w.push(t, &keys, &vec![1.0; keys.len()]).unwrap();
        w.clock().unwrap();
    }
}

/// What every key of the sums table holds, checked to be the same on all.
fn sum(w: &Worker, t: ferrops::TableId) -> f32 {
    let got = w.pull(t, &keys(16)).unwrap();
    assert!(got.iter().all(|&v| v == got[0]), "{got:?}");
    got[0]
}

#[test]
fn a_worker_joins_a_running_job_at_its_clock_and_its_pushes_count() {
    let job = Job::start(2, 2);
    let [a, b] = job.initial_workers();
    thread::scope(|s| {
        for w in [&a, &b] {
            s.spawn(move || {
                let t = sums_table(w);
                push_clocks(w, t, 3);
                // Sequential: this pull waits until both finished 3 clocks on every server.
                assert_eq!(sum(w, t), 6.0);
            });
        }
    });
    let c = job.worker();
    let ids = [a.info().node_id, b.info().node_id];
    assert_eq!(c.rank(), 2, "a joining worker takes the next rank");
    assert!(!ids.contains(&c.info().node_id), "{ids:?} {:?}", c.info());
    assert_eq!(c.info().num_workers, 3);
    assert_eq!(
        c.current_clock(),
        3,
        "it starts at the slowest live worker's clock"
    );
    let t = sums_table(&c);
    assert_eq!(
        sum(&c, t),
        6.0,
        "its pull at clock 3 needs no clock it never had"
    );
    thread::scope(|s| {
        for w in [&a, &b, &c] {
            s.spawn(move || {
                let t = sums_table(w);
                push_clocks(w, t, 1);
                // Sequential at clock 4: the servers wait for the newcomer's clock 4 too.
                assert_eq!(sum(w, t), 9.0);
            });
        }
    });
    for w in [a, b, c] {
        w.finish().unwrap();
    }
    assert!(
        job.ended_ok(),
        "the job ends once every live worker is done"
    );
}

/// `waiting` go to a barrier; once the scheduler says they all wait there (of `live` live
/// workers), `then` runs, which must release them.
fn released_after(job: &Job, waiting: &[&Worker], live: usize, then: impl FnOnce()) {
    thread::scope(|s| {
        let parked: Vec<_> = waiting.iter().map(|w| s.spawn(|| w.barrier())).collect();
        job.parked(waiting.len(), live);
        then();
        for barrier in parked {
            barrier.join().unwrap().expect("released");
        }
    });
}

#[test]
fn a_worker_that_arrives_during_a_barrier_is_admitted_after_it_and_counts_for_the_next() {
    let job = Job::start(1, 2);
    let [a, b] = job.initial_workers();
    let mut joining = None;
    released_after(&job, &[&a], 2, || {
        let cfg = job.worker_config();
        joining = Some(thread::spawn(move || connect(cfg)));
        job.log.wait_for("worker 2 registered", PATIENCE);
        // The barrier a waits at does not wait for the newcomer.
        b.barrier().unwrap();
    });
    let c = joining.unwrap().join().unwrap();
    assert_eq!(c.current_clock(), 0);
    // The next one does: a and b are released only once it arrives too.
    released_after(&job, &[&a, &b], 3, || c.barrier().unwrap());
    for w in [a, b, c] {
        w.finish().unwrap();
    }
    assert!(job.ended_ok());
}

#[test]
fn a_worker_that_is_done_releases_the_others_waiting_at_a_barrier() {
    let job = Job::start(1, 3);
    let [a, b, c] = job.initial_workers();
    released_after(&job, &[&a, &b], 3, || c.finish().unwrap());
    a.finish().unwrap();
    b.finish().unwrap();
    assert!(job.ended_ok());
}

#[test]
fn a_worker_killed_while_others_wait_at_a_barrier_releases_them() {
    let job = Job::start(1, 2);
    let mut doomed = ferrops()
        .args(["worker", "--scheduler", &job.addr.to_string()])
        .args(["--num-servers", "1", "--num-workers", "2"])
        .args([
            "--job",
            "count",
            "--",
            "--pushes",
            "100000000",
            "--keys",
            "4",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let a = job.worker();
    let a_waits = thread::spawn(move || a.barrier().map(|()| a));
    job.parked(1, 2);
    common::send_signal(doomed.id(), "KILL");
    let _ = doomed.wait();
    let a = a_waits
        .join()
        .unwrap()
        .expect("the barrier is released once the dead worker no longer counts");
    a.finish().unwrap();
    assert!(
        !job.ended_ok(),
        "a lost worker fails the job once the others are done"
    );
}

#[test]
fn ctl_status_reports_members_ranges_tables_and_clocks_as_one_json_object() {
    let job = Job::start(2, 1);
    let w = job.worker();
    let t = w
        .declare_table(TableSpec::new("status", 2).consistency(Consistency::Sequential))
        .unwrap();
    let keys = keys(100);
    w.push(t, &keys, &vec![1.0; 200]).unwrap();
    w.clock().unwrap();
    w.clock().unwrap();
    // Sequential: answered once both servers counted both clocks.
    w.pull(t, &keys).unwrap();

    let out = run_ok(&mut job.ctl(&["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(status["routing_version"], 1, "{status}");
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{status}");
    let mut ranges = Vec::new();
    for server in servers {
        assert_eq!(server["live"], true, "{server}");
        assert!(server["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        for range in server["ranges"].as_array().unwrap() {
            ranges.push((range[0].as_u64().unwrap(), range[1].as_u64().unwrap()));
        }
    }
    ranges.sort();
    assert_eq!(ranges.first().unwrap().0, 0, "{ranges:?}");
    assert_eq!(ranges.last().unwrap().1, u64::MAX, "{ranges:?}");
    assert!(
        ranges.windows(2).all(|p| p[0].1 + 1 == p[1].0),
        "{ranges:?}"
    );
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{status}");
    assert_eq!(workers[0]["id"], w.info().node_id, "{status}");
    assert_eq!(workers[0]["live"], true);
    assert_eq!(workers[0]["clock"], 2);
    let tables = status["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{status}");
    assert_eq!(tables[0]["name"], "status");
    assert_eq!(
        tables[0]["keys"], 100,
        "every key once, from the heads of the ranges"
    );
    assert!(
        tables[0]["bytes"].as_u64().unwrap() >= 100 * 2 * 4,
        "{status}"
    );

    let text = run_ok(&mut job.ctl(&["status"]));
    assert!(text.contains("table 0 `status`: 100 keys"), "{text}");
    w.finish().unwrap();
    assert!(job.ended_ok());
}

/// A job started on one server from the checkpoint in `dir` holds `values` at `keys` of table
/// `spec`, and ends cleanly.
fn restored_on_one_server_holds(dir: &Path, spec: TableSpec, keys: &[u64], values: &[f32]) {
    let job = Job::restore(1, 1, dir);
    let w = job.worker();
    let t = w.declare_table(spec).unwrap();
    assert_eq!(w.pull(t, keys).unwrap(), values);
    w.finish().unwrap();
    assert!(job.ended_ok());
}

#[test]
fn ctl_checkpoint_writes_the_tables_at_the_next_barrier_and_a_job_restores_them() {
    let scratch = Scratch::new("membership", "ctl-checkpoint");
    let dir = scratch.dir.join("ckpt");
    let keys = keys(64);
    let values: Vec<f32> = (1..=keys.len()).map(|i| i as f32).collect();
    let spec = TableSpec::new("saved", 1);

    let job = Job::start(2, 1);
    let w = job.worker();
    let t = w.declare_table(spec.clone()).unwrap();
    w.push(t, &keys, &values).unwrap();
    let ctl = job.ctl_checkpoint(&dir);
    w.barrier().unwrap();
    let out = ctl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the checkpoint: not in it.
    w.push(t, &keys, &values).unwrap();
    w.finish().unwrap();
    assert!(job.ended_ok());

    restored_on_one_server_holds(&dir, spec, &keys, &values);
}

#[test]
fn a_server_lost_while_a_checkpoint_is_written_is_replaced_and_the_checkpoint_completes() {
    let scratch = Scratch::new("membership", "checkpoint-failover");
    let dir = scratch.dir.join("ckpt");
    let keys = keys(64);
    let values: Vec<f32> = (1..=keys.len()).map(|i| 0.5 * i as f32).collect();
    let spec = TableSpec::new("saved", 1);
    let replicated = [
        ("FERROPS_REPLICATION", "2"),
        ("FERROPS_HEARTBEAT_INTERVAL_MS", "200"),
        ("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500"),
    ];
    let job = Job::launch(2, 1, None, &replicated);
    let w = job.worker();
    let t = w.declare_table(spec.clone()).unwrap();
    w.push(t, &keys, &values).unwrap();
    let ctl = job.ctl_checkpoint(&dir);
    // Stopped before the scheduler asks it to write: it never answers, and is failed over
    // after the heartbeat timeout while the barrier is held for the checkpoint.
    let stopped = job.servers[1].id();
    common::send_signal(stopped, "STOP");
    let (done, barrier) = std::sync::mpsc::channel();
    let waiting = thread::spawn(move || {
        let released = w.barrier();
        let _ = done.send(released.is_ok());
        w
    });
    let released = barrier.recv_timeout(PATIENCE);
    if released.is_err() {
        common::send_signal(stopped, "CONT");
    }
    assert_eq!(
        released,
        Ok(true),
        "the barrier held for the checkpoint was released"
    );
    let w = waiting.join().unwrap();
    let out = ctl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    job.log.wait_for("writing it again", PATIENCE);
    let manifest = ferrops_engine::checkpoint::verify(&dir).expect("a whole checkpoint");
    let listed: usize = manifest.tables.iter().map(|t| t.files.len()).sum();
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".ckpt")
        })
        .count();
    assert_eq!(on_disk, listed, "the replaced attempt's files are removed");
    // Woken, the fenced server may still write the attempt it was asked for: files no
    // manifest lists.
    common::send_signal(stopped, "CONT");
    w.push(t, &keys, &values).unwrap();
    w.finish().unwrap();
    drop(job);

    restored_on_one_server_holds(&dir, spec, &keys, &values);
}

#[test]
fn a_local_job_names_its_scheduler_and_takes_the_callers_secret_so_ctl_can_reach_it() {
    let mut local = ferrops()
        .args(["local", "--servers", "1", "--workers", "1", "--"])
        .args(["ferrops", "worker", "--job", "count", "--"])
        .args(["--pushes", "100000000", "--keys", "4"])
        .env("FERROPS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = LineLog::follow(local.stderr.take().unwrap());
    let line = log.wait_for("scheduler listening on ", PATIENCE);
    let addr = line.rsplit("scheduler listening on ").next().unwrap();
    let addr = addr
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap();
    // Until the job has assembled, the status shows who registered so far.
    common::poll(PATIENCE, || {
        let out = run_ok(ferrops().args(["ctl", "status", "--json", "--scheduler", addr]));
        let status: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        let members = ["servers", "workers"].map(|m| status[m].as_array().unwrap().len());
        match (&status["routing_version"], members) {
            (v, [1, 1]) if v == 1 => Ok(()),
            _ => Err(format!("the job never assembled: {status}")),
        }
    });
    common::send_signal(local.id(), "TERM");
    let _ = local.wait();
}

#[test]
fn ctl_without_a_scheduler_address_says_so_before_connecting() {
    let out = ferrops().args(["ctl", "status"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the scheduler address is not set"),
        "{stderr}"
    );
}
