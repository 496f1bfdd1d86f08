//! Failover over real processes: `ferrops local --replication 2` running the `count` job
//! (sequential pushes whose sums must equal exactly what was acknowledged) while a server is
//! killed (-9) or stopped; a job that loses every copy of a range ends naming it; and L1-LR at
//! τ = 0 reaches the objective of a run without faults when a server is killed mid-run.
//!
//! Every process runs with short heartbeat settings (200 ms interval, 1.5 s timeout). Margins
//! are generous: a test fails on a wrong sum, a wrong exit, or a hang past a minute.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use common::{ferrops_without_cluster_env, send_signal, LineLog};
use ferrops::Consistency;
use ferrops_net::auth::{ClusterKey, Secret};

/// Pushes per worker: long enough that the fault lands mid-run.
const PUSHES: &str = "4000";

/// `ferrops local` with `servers` servers and two workers at replication `r`, running `count`
/// (with `extra` arguments; `--pushes PUSHES` unless they say otherwise; those of `extra` that
/// start with `--replication-mode=` go to the launcher), its stdout and stderr piped.
fn local_count(servers: usize, r: usize, extra: &[&str]) -> Child {
    let (launcher, extra): (Vec<&str>, Vec<&str>) = extra
        .iter()
        .partition(|a| a.starts_with("--replication-mode="));
    let mut c: Command = ferrops_without_cluster_env();
    c.env("FERROPS_LOG", "warn")
        .env("FERROPS_HEARTBEAT_INTERVAL_MS", "200")
        .env("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500")
        .env_remove("FERROPS_REPLICATION")
        .args(["local", "--servers", &servers.to_string(), "--workers", "2"])
        .args(["--replication", &r.to_string()])
        .args(launcher)
        .args(["--", "ferrops", "worker", "--job", "count", "--"])
        .args(
            ["--pushes", PUSHES]
                .iter()
                .filter(|_| !extra.contains(&"--pushes")),
        )
        .args(&extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("ferrops local starts")
}

/// A running `ferrops local`: its stderr and stdout followed line by line.
struct Local(common::Running);

impl std::ops::Deref for Local {
    type Target = common::Running;
    fn deref(&self) -> &common::Running {
        &self.0
    }
}

impl Local {
    fn start(r: usize) -> Local {
        Local::start_with(2, r, &[])
    }

    /// A job of `servers` servers at replication `r`, with more arguments for `count`.
    fn start_with(servers: usize, r: usize, extra: &[&str]) -> Local {
        Local(common::Running::follow(local_count(servers, r, extra)))
    }

    /// The pid of the launcher's child `server i` (started with `FERROPS_RANK=i`).
    fn server_pid(&self, i: usize) -> u32 {
        common::launched_server(&self.child, i)
    }

    /// Waits until the workers' pushes are under way.
    /// Waits until the scheduler has failed over to routing version `version`.
    fn wait_for_routing(&self, version: u32) {
        let line = format!("the job goes on with routing version {version}");
        self.stderr.wait_for(&line, Duration::from_secs(60));
    }

    /// Lets the job finish and checks that every count is exact.
    fn finish_exactly(self) {
        let (ok, out) = self.finish();
        assert_exact_counts(ok, &out);
    }

    fn wait_for_pushes(&self) {
        self.stdout
            .wait_for("has 500 pushes acknowledged", Duration::from_secs(60));
    }

    /// Waits for the end; returns (success, the rest of stdout and stderr).
    fn finish(mut self) -> (bool, String) {
        self.0.finish(Duration::from_secs(120))
    }
}

fn assert_exact_counts(ok: bool, out: &str) {
    assert!(ok, "the job failed; stdout:\n{out}");
    assert_eq!(
        out.matches("count passed: worker").count(),
        2,
        "both workers saw every key hold exactly the 8000 pushes acknowledged:\n{out}"
    );
    assert_eq!(out.matches("saw 8000 on all 1000 keys").count(), 2, "{out}");
}

/// Kills server `victim` of a 2-server, R = 2 job running `count` with `count_flags` once the
/// pushes flow; the job must go on and every count be exact.
fn kill_one_of_two(victim: usize, count_flags: &[&str]) {
    let local = Local::start_with(2, 2, count_flags);
    let pid = local.server_pid(victim);
    local.wait_for_pushes();
    send_signal(pid, "KILL");
    let covered = "replication covers it";
    local.stderr.wait_for(covered, Duration::from_secs(60));
    local.finish_exactly();
}

#[test]
fn a_killed_server_is_survived_with_nothing_lost_or_applied_twice() {
    for victim in [1, 0] {
        kill_one_of_two(victim, &[]);
    }
}

#[test]
fn replicated_after_aggregation_a_killed_server_loses_no_acknowledged_push() {
    for victim in [0, 1] {
        kill_one_of_two(victim, &["--replication-mode=aggregated"]);
    }
    kill_one_of_two(0, &["--replication-mode=aggregated", "--in-flight", "8"]);
}

#[test]
fn asynchronous_pushes_are_sent_again_when_their_head_is_killed() {
    kill_one_of_two(0, &["--async"]);
}

#[test]
fn asynchronous_pushes_waited_newest_first_across_a_failover_are_applied_exactly_once() {
    // Eight tickets outstanding to each head when it dies; the newest is resent first.
    kill_one_of_two(0, &["--in-flight", "8"]);
}

#[test]
fn signed_key_lists_pushed_across_a_failover_are_rebuilt_and_sum_exactly() {
    // 1000 keys: every part travels by signature once its server holds it. Server 1 dies:
    // server 0 heads range 1 too, and every connection's key cache starts again empty at the
    // first request under the new routing, on both ends.
    kill_one_of_two(1, &["--in-flight", "4", "--keys", "1000"]);
}

#[test]
fn a_server_killed_during_bulk_pushes_of_ten_million_keys_loses_nothing() {
    // Each push is 60 MB of keys and values per server: the kill lands in the middle of one.
    let local = Local::start_with(2, 2, &["--keys", "10000000", "--pushes", "6"]);
    let pid = local.server_pid(0);
    local
        .stdout
        .wait_for("starts pushing 10000000 keys", Duration::from_secs(120));
    thread::sleep(Duration::from_millis(1500));
    send_signal(pid, "KILL");
    local.wait_for_routing(2);
    let (ok, out) = local.finish();
    assert!(ok, "the job failed:\n{out}");
    let exact = "saw 12 on all 10000000 keys";
    assert_eq!(out.matches(exact).count(), 2, "{out}");
}

#[test]
fn parked_sequential_pulls_are_answered_by_the_new_head() {
    kill_one_of_two(0, &["--sequential"]);
}

#[test]
fn with_three_copies_two_failures_in_sequence_are_survived() {
    let local = Local::start_with(3, 3, &[]);
    let (middle, tail) = (local.server_pid(1), local.server_pid(2));
    local.wait_for_pushes();
    // Range 0's chain is [0, 1, 2]: its middle, then its tail.
    send_signal(middle, "KILL");
    local.wait_for_routing(2);
    local
        .stdout
        .wait_for("pushes acknowledged", Duration::from_secs(60));
    send_signal(tail, "KILL");
    local.wait_for_routing(3);
    local.finish_exactly();
}

#[test]
fn a_stopped_server_is_fenced_and_the_job_completes_exactly() {
    let local = Local::start(2);
    let pid = local.server_pid(1);
    local.wait_for_pushes();
    send_signal(pid, "STOP");
    // The scheduler declares it dead after the heartbeat timeout and fails over.
    local.wait_for_routing(2);
    // Woken up, it finds itself out of the job and exits; nothing it did counts.
    send_signal(pid, "CONT");
    local.finish_exactly();
}

#[test]
fn a_range_that_loses_every_copy_ends_the_job_naming_it() {
    let local = Local::start(2);
    let first = local.server_pid(0);
    let second = local.server_pid(1);
    local.wait_for_pushes();
    send_signal(first, "KILL");
    local
        .stderr
        .wait_for("replication covers it", Duration::from_secs(60));
    send_signal(second, "KILL");
    local
        .stderr
        .wait_for("has lost every copy", Duration::from_secs(60));
    let (ok, _) = local.finish();
    assert!(!ok, "a job that lost a range must fail");
}

/// The final objective of an L1-LR run's trace (its last record).
fn final_objective(trace: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(trace).unwrap();
    let last = text.lines().last().expect("a trace record");
    let record: serde_json::Value = serde_json::from_str(last).unwrap();
    record["objective"].as_f64().unwrap()
}

/// `ferrops train l1lr` at τ = 0 on two servers with replication 2, writing its trace to
/// `trace`.
fn train(data: &std::path::Path, trace: &std::path::Path) -> Child {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_LOG", "warn")
        .env_remove("FERROPS_REPLICATION")
        .args([
            "train", "l1lr", "--lambda", "1", "--tau", "0", "--iters", "30",
        ])
        .args(["--servers", "2", "--workers", "2", "--replication", "2"])
        .arg("--data")
        .arg(data)
        .arg("--json")
        .arg(trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.spawn().expect("ferrops train starts")
}

#[test]
fn l1lr_at_tau_zero_reaches_the_same_objective_when_a_server_is_killed_mid_run() {
    let scratch = common::Scratch::new("failover", "l1lr");
    let data = scratch.dir.join("train.svm");
    common::run_ok(
        ferrops_without_cluster_env()
            .args(["data", "gen", "--rows", "10000", "--features", "3000"])
            .arg("--out")
            .arg(&data),
    );
    let clean = scratch.dir.join("clean.jsonl");
    let status = train(&data, &clean).wait().unwrap();
    assert!(status.success(), "the run without faults failed");
    let faulty = scratch.dir.join("faulty.jsonl");
    let mut child = train(&data, &faulty);
    let stderr = LineLog::follow(child.stderr.take().unwrap());
    // Mid-run: a few iterations are in the trace.
    common::poll(Duration::from_secs(120), || {
        let lines = std::fs::read_to_string(&faulty).map_or(0, |t| t.lines().count());
        (lines >= 5)
            .then_some(())
            .ok_or_else(|| "fewer than 5 iterations so far".to_string())
    });
    let victim = common::poll(Duration::from_secs(10), || {
        common::children_of(child.id())
            .into_iter()
            .find(|&pid| common::is_server_with(pid, "FERROPS_RANK=1"))
            .ok_or_else(|| "no server 1".to_string())
    });
    send_signal(victim, "KILL");
    stderr.wait_for("replication covers it", Duration::from_secs(60));
    assert!(
        child.wait().unwrap().success(),
        "the run with a fault failed"
    );
    let (a, b) = (final_objective(&clean), final_objective(&faulty));
    assert!(
        ((a - b) / a).abs() <= 1e-6,
        "objective {b} with a server killed, {a} without"
    );
}

/// Servers started by hand (a scheduler and two `ferrops server` processes, replication 2,
/// the short heartbeats of this file) for workers that run in the test itself.
struct HandServers {
    scheduler: Child,
    stderr: LineLog,
    servers: Vec<Child>,
    cfg: ferrops::WorkerConfig,
}

impl HandServers {
    fn start(workers: usize) -> HandServers {
        let secret = "failover-hand-servers";
        let env = |c: &mut Command| {
            c.env("FERROPS_LOG", "warn")
                .env("FERROPS_SECRET", secret)
                .env("FERROPS_NUM_SERVERS", "2")
                .env("FERROPS_NUM_WORKERS", workers.to_string())
                .env("FERROPS_REPLICATION", "2")
                .env("FERROPS_HEARTBEAT_INTERVAL_MS", "200")
                .env("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500")
                .env("FERROPS_BIND", "127.0.0.1:0")
                .stdin(Stdio::null());
        };
        let mut scheduler = ferrops_without_cluster_env();
        env(&mut scheduler);
        let mut scheduler = scheduler
            .arg("scheduler")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the scheduler starts");
        let addr = common::announced_address(&mut scheduler);
        let stderr = LineLog::follow(scheduler.stderr.take().unwrap());
        let servers = (0..2)
            .map(|rank| {
                let mut c = ferrops_without_cluster_env();
                env(&mut c);
                c.arg("server")
                    .env("FERROPS_SCHEDULER", &addr)
                    .env("FERROPS_RANK", rank.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("a server starts")
            })
            .collect();
        let mut cluster = ferrops::ClusterConfig::new(addr.parse().unwrap(), 2, workers);
        cluster.key = ClusterKey::Secret(Secret::new(secret).unwrap());
        cluster.replication = 2;
        cluster.liveness.heartbeat_interval = Duration::from_millis(200);
        cluster.liveness.heartbeat_timeout = Duration::from_millis(1500);
        HandServers {
            scheduler,
            stderr,
            servers,
            cfg: ferrops::WorkerConfig { cluster },
        }
    }
}

impl Drop for HandServers {
    fn drop(&mut self) {
        for child in self.servers.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_bounded_delay_pull_parked_on_a_killed_head_is_answered_by_the_new_head_after_the_slow_clock() {
    let job = HandServers::start(2);
    // Range 0 only (server 0 heads it): the pull has one part, which the kill cuts short.
    let keys: Vec<u64> = (0..100).collect();
    let spec = ferrops::TableSpec::new("delayed", 1).consistency(Consistency::BoundedDelay(1));
    let (parked_tx, parked_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let pulled = thread::scope(|s| {
        let both: Vec<_> = (0..2)
            .map(|_| {
                let (cfg, keys, spec) = (&job.cfg, &keys, &spec);
                let (parked_tx, go_rx) = (parked_tx.clone(), &go_rx);
                s.spawn(move || {
                    let w = ferrops::Worker::connect(cfg).unwrap();
                    let t = w.declare_table(spec.clone()).unwrap();
                    let ones = vec![1.0; keys.len()];
                    w.push(t, keys, &ones).unwrap();
                    let got = if w.rank() == 0 {
                        // Fast: two clocks done; a pull at clock 2 (τ = 1) needs every worker
                        // to have finished clock 1, so it parks until the slow one has.
                        w.clock().unwrap();
                        w.push(t, keys, &ones).unwrap();
                        w.clock().unwrap();
                        let ticket = w.pull_async(t, keys).unwrap();
                        parked_tx.send(()).unwrap();
                        Some(w.wait_pull(ticket).unwrap())
                    } else {
                        // Slow: its second push of clock 0 comes after the failover, then
                        // its clock, which is what releases the pull.
                        go_rx.lock().unwrap().recv().unwrap();
                        w.push(t, keys, &ones).unwrap();
                        w.clock().unwrap();
                        None
                    };
                    w.barrier().unwrap();
                    w.finish().unwrap();
                    got
                })
            })
            .collect();
        parked_rx.recv().unwrap();
        // Let the pull reach server 0 and park there, then kill it.
        thread::sleep(Duration::from_millis(300));
        send_signal(job.servers[0].id(), "KILL");
        job.stderr.wait_for(
            "the job goes on with routing version 2",
            Duration::from_secs(60),
        );
        // A new head that answered the resent pull without waiting for the slow worker's
        // clock would answer now, without the slow worker's second push.
        thread::sleep(Duration::from_millis(1000));
        go_tx.send(()).unwrap();
        both.into_iter()
            .filter_map(|h| h.join().unwrap())
            .next()
            .unwrap()
    });
    assert_eq!(
        pulled,
        vec![4.0; keys.len()],
        "the pull saw both pushes of each worker: it was answered once the slow worker \
         finished clock 1, not before"
    );
}
