//! Re-replication over real processes: after a server of an R = 2 job dies, its ranges are
//! copied — to a spare started by hand against the running job, or to the servers left — while
//! the `count` job keeps pushing; once the copies are whole, the job survives the death of the
//! servers it started with, with every count exact (0 lost, 0 doubled).
//!
//! Every process runs with short heartbeat settings (200 ms interval, 1.5 s timeout); a test
//! fails on a wrong sum, a wrong exit, or a hang past five minutes (the pushes take a minute or two on a busy machine).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ferrops_without_cluster_env, send_signal, Running};

/// Pushes per worker: long enough that two kills and a copy land mid-run (sequential pushes,
/// each followed by a checked pull, are slower: fewer of them take as long).
const PUSHES: u32 = 20_000;
const SEQUENTIAL_PUSHES: u32 = 6_000;
const SECRET: &str = "re-replication test secret, 32 bytes or more";
const WAIT: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(300);

/// A command with the test's secret, heartbeats and log level.
fn ferrops_node() -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_SECRET", SECRET)
        .env("FERROPS_LOG", "info")
        .env("FERROPS_HEARTBEAT_INTERVAL_MS", "200")
        .env("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `ferrops local` running `count` (`pushes` per worker, with `count_flags`) on `servers`
/// servers at R = 2; returns it with its scheduler's address.
fn local_count(servers: usize, pushes: u32, count_flags: &[&str]) -> (Running, String) {
    let mut c = ferrops_node();
    c.args(["local", "--servers", &servers.to_string(), "--workers", "2"])
        .args([
            "--replication",
            "2",
            "--",
            "ferrops",
            "worker",
            "--job",
            "count",
        ])
        .args(["--", "--pushes", &pushes.to_string()])
        .args(count_flags);
    let local = Running::follow(c.spawn().expect("ferrops local starts"));
    let line = local.stderr.wait_for("scheduler listening on ", WAIT);
    let (_, after) = line.split_once("scheduler listening on ").unwrap();
    let addr = after.split([' ', ',']).next().unwrap().to_string();
    (local, addr)
}

/// Once `local`'s pushes flow: kills `first`, waits until each of `copies` is logged (a range
/// copied to a server), kills `second`, waits for `chains`, and checks the counts.
fn kill_copy_kill(
    mut local: Running,
    pushes: u32,
    spare: Option<&str>,
    first: usize,
    copies: &[&str],
    second: usize,
    chains: &str,
) {
    let first = common::launched_server(&local.child, first);
    let second = common::launched_server(&local.child, second);
    local.stdout.wait_for("has 500 pushes acknowledged", WAIT);
    send_signal(first, "KILL");
    local
        .stderr
        .wait_for("the job goes on with routing version", WAIT);
    let _spare = spare.map(|scheduler| {
        let mut spare = ferrops_node();
        spare.args(["server", "--scheduler", scheduler]);
        Running::follow(spare.spawn().expect("the spare starts"))
    });
    local.stderr.wait_for_all(copies, WAIT);
    send_signal(second, "KILL");
    local.stderr.wait_for(chains, WAIT);
    let (ok, out) = local.finish(FINISH);
    assert!(ok, "the job failed:\n{out}");
    let total = format!("saw {} on all 1000 keys", 2 * pushes);
    assert_eq!(out.matches(&total).count(), 2, "{out}");
}

/// Kills server 1, starts a spare that takes a copy of both ranges, then kills server 0: the
/// spare alone holds the job's every key, and serves the rest of the run.
fn spare_replaces_both(pushes: u32, count_flags: &[&str]) {
    let (local, scheduler) = local_count(2, pushes, count_flags);
    let copies = [
        "range 0: server 2 holds a copy",
        "range 1: server 2 holds a copy",
    ];
    kill_copy_kill(
        local,
        pushes,
        Some(&scheduler),
        1,
        &copies,
        0,
        "chains [[2], [2]]",
    );
}

#[test]
fn a_spare_takes_a_copy_and_carries_the_job_when_both_first_servers_die() {
    spare_replaces_both(PUSHES, &[]);
}

#[test]
fn a_spare_that_becomes_head_answers_bounded_delay_pulls_by_the_copied_clocks() {
    spare_replaces_both(SEQUENTIAL_PUSHES, &["--sequential"]);
}

#[test]
fn the_servers_left_take_a_copy_of_what_a_dead_server_held() {
    // Chains [0, 1], [1, 2], [2, 0]: when 1 dies, 2 copies range 0 and 0 copies range 1, so
    // that server 2 dying next still leaves every range a copy, on server 0.
    let (local, _) = local_count(3, PUSHES, &["--async"]);
    let copies = [
        "range 0: server 2 holds a copy",
        "range 1: server 0 holds a copy",
    ];
    kill_copy_kill(local, PUSHES, None, 1, &copies, 2, "chains [[0], [0], [0]]");
}
