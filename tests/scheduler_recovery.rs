//! A survivable scheduler over real processes: `kill -9` of the scheduler mid-job ends nothing.
//! The servers and workers go on (pushes and pulls continue), redial its address, and a
//! scheduler restarted there with `ferrops scheduler --recover` — by hand, or by `ferrops
//! local` itself — rebuilds the job from what they report: the `count` job finishes with every
//! key holding exactly the pushes acknowledged, `ferrops ctl status` answers with a newer
//! routing, a server that died meanwhile is failed over, and a node with no scheduler coming
//! back gives up after `--scheduler-outage-ms`, naming the setting.
//!
//! Every process runs with short heartbeat settings (200 ms interval, 1.5 s timeout); a test
//! fails on a wrong sum, a wrong exit, or a hang past five minutes.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::{children_of, send_signal, Running};

const PUSHES: u32 = 6_000;
const SECRET: &str = "scheduler recovery test secret, 32 bytes or more";
const WAIT: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(300);

/// A node of this test's jobs (see [`common::ferrops_node`]).
fn ferrops_node() -> Command {
    common::ferrops_node(SECRET)
}

/// A job started by hand: its scheduler, servers and `count` workers.
struct Job {
    addr: String,
    scheduler: Running,
    servers: Vec<Running>,
    workers: Vec<Running>,
}

/// Starts a scheduler for `servers` servers at R = 2 and two workers, the servers, and the
/// workers running `count` (`PUSHES` each, `extra` flags on every node).
fn start_job(servers: usize, extra: &[&str]) -> Job {
    let n = servers.to_string();
    let size = [
        "--replication",
        "2",
        "--num-servers",
        &n,
        "--num-workers",
        "2",
    ];
    let mut c = ferrops_node();
    c.args(["scheduler", "--bind", "127.0.0.1:0"]).args(size);
    let scheduler = Running::follow(c.spawn().expect("the scheduler starts"));
    let line = scheduler.stdout.wait_for("FERROPS_SCHEDULER=", WAIT);
    let addr = line
        .trim()
        .trim_start_matches("FERROPS_SCHEDULER=")
        .to_string();
    let servers = (0..servers)
        .map(|_| {
            let mut c = ferrops_node();
            c.args(["server", "--scheduler", &addr])
                .args(size)
                .args(extra);
            Running::follow(c.spawn().expect("a server starts"))
        })
        .collect();
    let workers = (0..2)
        .map(|_| {
            let mut c = ferrops_node();
            c.args(["worker", "--scheduler", &addr])
                .args(size)
                .args(extra);
            c.args(["--job", "count", "--", "--pushes", &PUSHES.to_string()]);
            Running::follow(c.spawn().expect("a worker starts"))
        })
        .collect();
    Job {
        addr,
        scheduler,
        servers,
        workers,
    }
}

/// `ferrops scheduler --recover` on `addr`, once it has logged each of `texts` and that it
/// recovered the job (its nodes have rejoined and it runs again).
fn recover(addr: &str, texts: &[&str]) -> Running {
    let mut c = ferrops_node();
    c.args(["scheduler", "--recover", "--bind", addr]);
    let scheduler = Running::follow(c.spawn().expect("the recovering scheduler starts"));
    let texts: Vec<&str> = texts.iter().copied().chain(["recovered the job"]).collect();
    scheduler.stderr.wait_for_all(&texts, WAIT);
    scheduler
}

/// Waits for a worker's next progress line: how many pushes it has acknowledged.
fn progress(worker: &Running) -> u64 {
    let line = worker.stdout.wait_for("pushes acknowledged", WAIT);
    let after = line.split(" has ").nth(1).unwrap_or_default();
    after
        .split(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

/// Kills the job's scheduler and waits until worker 0 has noticed; returns the pushes it
/// acknowledged from then on, while no scheduler is up (two progress lines' worth).
fn kill_scheduler_and_push_on(job: &Job) -> (u64, u64) {
    kill(&job.scheduler.child);
    let worker = &job.workers[0];
    worker
        .stderr
        .wait_for("lost the connection to the scheduler; going on", WAIT);
    // What it printed before it noticed is not evidence.
    worker.stdout.rest(Duration::from_millis(50));
    (progress(worker), progress(worker))
}

/// Every worker ends 0 having seen each key hold exactly the pushes of both; then the
/// scheduler and the servers still running end 0.
fn finish_exactly(job: Job, scheduler: Running) {
    let total = format!("saw {} on all 1000 keys", 2 * PUSHES);
    for mut w in job.workers {
        let (ok, out) = w.finish(FINISH);
        assert!(ok, "a worker failed:\n{out}");
        assert!(out.contains(&total), "{out}");
    }
    let mut scheduler = scheduler;
    let (ok, out) = scheduler.finish(WAIT);
    assert!(ok, "the recovered scheduler failed:\n{out}");
    drop(job.scheduler);
    for mut s in job
        .servers
        .into_iter()
        .filter_map(|mut s| s.child.try_wait().ok().flatten().is_none().then_some(s))
    {
        let (ok, out) = s.finish(WAIT);
        assert!(ok, "a server failed:\n{out}");
    }
}

/// `ferrops ctl status --json` against `addr`.
fn status(addr: &str) -> serde_json::Value {
    let mut c = ferrops_node();
    c.args(["ctl", "status", "--json", "--scheduler", addr]);
    let out = c.output().expect("ferrops ctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).expect("one JSON object")
}

fn kill(child: &Child) {
    send_signal(child.id(), "KILL");
}

#[test]
fn a_scheduler_killed_mid_job_is_recovered_and_the_job_ends_exactly() {
    let job = start_job(2, &[]);
    progress(&job.workers[0]);
    let before = status(&job.addr)["routing_version"].as_u64().unwrap();
    // No scheduler: the pushes go on.
    let (first, next) = kill_scheduler_and_push_on(&job);
    assert!(
        next > first,
        "pushes go on without a scheduler ({first}, then {next})"
    );
    let scheduler = recover(&job.addr, &[]);
    let status = status(&job.addr);
    let after = status["routing_version"].as_u64().unwrap();
    assert!(
        after > before,
        "routing version {after} after the recovery, {before} before"
    );
    let servers = status["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2, "{status}");
    for s in servers {
        assert!(!s["holds"].as_array().unwrap().is_empty(), "{status}");
    }
    finish_exactly(job, scheduler);
}

#[test]
fn a_server_that_dies_while_no_scheduler_is_up_is_failed_over_after_the_recovery() {
    let mut job = start_job(3, &[]);
    progress(&job.workers[0]);
    kill_scheduler_and_push_on(&job);
    let mut dead = job.servers.remove(1);
    kill(&dead.child);
    let _ = dead.child.wait();
    // The dead server is taken for dead: its ranges' chains lose it and get their second copy
    // back.
    let scheduler = recover(&job.addr, &["did not rejoin: it is taken for dead"]);
    scheduler.stderr.wait_for("holds a copy", WAIT);
    finish_exactly(job, scheduler);
}

#[test]
fn a_worker_lost_before_the_scheduler_stays_lost_after_the_recovery() {
    let mut job = start_job(2, &[]);
    progress(&job.workers[1]);
    let mut lost = job.workers.remove(1);
    kill(&lost.child);
    let _ = lost.child.wait();
    job.scheduler
        .stderr
        .wait_for("the job goes on without it", WAIT);
    kill_scheduler_and_push_on(&job);
    let mut scheduler = recover(&job.addr, &[]);
    for mut w in job.workers {
        // Its sums miss what the lost worker never pushed: it fails, and says it is done.
        let (ok, out) = w.finish(FINISH);
        assert!(!ok, "{out}");
    }
    let (ok, out) = scheduler.finish(WAIT);
    assert!(!ok, "the job lost a worker: it must fail\n{out}");
    assert!(out.contains("1 workers done, 1 lost"), "{out}");
}

#[test]
fn a_node_gives_up_when_no_scheduler_comes_back_within_the_outage_allowed() {
    let mut job = start_job(2, &["--scheduler-outage-ms", "3000"]);
    progress(&job.workers[0]);
    kill(&job.scheduler.child);
    for w in &mut job.workers {
        let (ok, out) = w.finish(WAIT);
        assert!(!ok, "a worker without a scheduler must fail:\n{out}");
        assert!(out.contains("scheduler_outage_ms"), "{out}");
    }
    for s in &mut job.servers {
        let (ok, out) = s.finish(WAIT);
        assert!(!ok, "a server without a scheduler must fail:\n{out}");
        assert!(out.contains("scheduler_outage_ms"), "{out}");
    }
}

#[test]
fn ferrops_local_restarts_a_killed_scheduler_and_the_job_ends_exactly() {
    let mut c = ferrops_node();
    c.args([
        "local",
        "--servers",
        "2",
        "--workers",
        "2",
        "--replication",
        "2",
    ])
    .args(["--", "ferrops", "worker", "--job", "count"])
    .args(["--", "--pushes", &PUSHES.to_string()]);
    let mut local = Running::follow(c.spawn().expect("ferrops local starts"));
    local.stdout.wait_for("pushes acknowledged", WAIT);
    let scheduler = children_of(local.child.id())
        .into_iter()
        .find(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|a| a == b"scheduler")
        })
        .expect("the launcher's scheduler");
    send_signal(scheduler, "KILL");
    local
        .stderr
        .wait_for("restarted the scheduler with --recover", WAIT);
    let (ok, out) = local.finish(FINISH);
    assert!(ok, "the job failed:\n{out}");
    let total = format!("saw {} on all 1000 keys", 2 * PUSHES);
    assert_eq!(out.matches(&total).count(), 2, "{out}");
}
