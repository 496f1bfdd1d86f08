//! Range copies over real processes. Re-replication: after a server of an R = 2 job dies, its
//! ranges are copied — to a spare started by hand against the running job, or to the servers
//! left — while the `count` job keeps pushing; once the copies are whole, the job survives the
//! death of the servers it started with. Moves: a server joining the running job takes a
//! range, `ferrops ctl drain` and SIGTERM hand a server's ranges to others before it exits 0,
//! and a drain that would leave a range short of copies is refused; a spare that heads a range
//! is reached although a spare before it died before any worker dialed it. Every count stays exact
//! (0 lost, 0 doubled).
//!
//! Every process runs with short heartbeat settings (200 ms interval, 1.5 s timeout); a test
//! fails on a wrong sum, a wrong exit, or a hang past five minutes (the pushes take a minute or two on a busy machine).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{send_signal, Running};

/// Pushes per worker: long enough that two kills and a copy land mid-run (sequential pushes,
/// each followed by a checked pull, are slower: fewer of them take as long).
const PUSHES: u32 = 20_000;
const SEQUENTIAL_PUSHES: u32 = 6_000;
const SECRET: &str = "re-replication test secret, 32 bytes or more";
const WAIT: Duration = Duration::from_secs(60);
const FINISH: Duration = Duration::from_secs(300);

/// A node of this test's jobs (see [`common::ferrops_node`]).
fn ferrops_node() -> Command {
    common::ferrops_node(SECRET)
}

/// `ferrops local` running `count` (`pushes` per worker, with `count_flags`; those starting
/// with `--replication-mode=` go to the launcher) on `servers` servers at R = 2; returns it
/// with its scheduler's address.
fn local_count(servers: usize, pushes: u32, count_flags: &[&str]) -> (Running, String) {
    let (launcher, count_flags): (Vec<&str>, Vec<&str>) = count_flags
        .iter()
        .partition(|a| a.starts_with("--replication-mode="));
    let mut c = ferrops_node();
    c.args(["local", "--servers", &servers.to_string(), "--workers", "2"])
        .args(launcher)
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
        .args(&count_flags);
    let local = Running::follow(c.spawn().expect("ferrops local starts"));
    let line = local.stderr.wait_for("scheduler listening on ", WAIT);
    let (_, after) = line.split_once("scheduler listening on ").unwrap();
    let addr = after.split([' ', ',']).next().unwrap().to_string();
    (local, addr)
}

/// Once `local`'s pushes flow: kills `first`, waits until each of `copies` is logged (a range
/// copied to a server), kills `second`, waits for `chains`, and checks the counts.
fn kill_copy_kill(
    local: Running,
    pushes: u32,
    spare: Option<Command>,
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
    let _spare = spare.map(|mut spare| Running::follow(spare.spawn().expect("the spare starts")));
    local.stderr.wait_for_all(copies, WAIT);
    send_signal(second, "KILL");
    local.stderr.wait_for(chains, WAIT);
    finish_exactly(local, pushes);
}

/// Lets `local` finish; both workers must have seen every key hold exactly the `pushes` each
/// was acknowledged. Returns the rest of its output.
fn finish_exactly(mut local: Running, pushes: u32) -> String {
    let (ok, out) = local.finish(FINISH);
    assert!(ok, "the job failed:\n{out}");
    let total = format!("saw {} on all 1000 keys", 2 * pushes);
    assert_eq!(out.matches(&total).count(), 2, "{out}");
    out
}

/// `ferrops ctl SUBCOMMAND --scheduler ADDR ARGS...`: its success and its output.
fn ctl(scheduler: &str, subcommand: &str, args: &[&str]) -> (bool, String) {
    let mut c = ferrops_node();
    c.args(["ctl", subcommand, "--scheduler", scheduler])
        .args(args);
    let out = c.output().expect("ferrops ctl runs");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.into_owned())
}

/// The servers `ferrops ctl status --json` lists, with the ranges each holds a copy of.
fn holdings(scheduler: &str) -> Vec<(u64, usize)> {
    let (ok, json) = ctl(scheduler, "status", &["--json"]);
    assert!(ok, "{json}");
    let status: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    let servers = status["servers"].as_array().expect("servers").clone();
    servers
        .iter()
        .map(|s| {
            (
                s["rank"].as_u64().unwrap(),
                s["holds"].as_array().unwrap().len(),
            )
        })
        .collect()
}

/// Kills server 1, starts a spare that takes a copy of both ranges, then kills server 0: the
/// spare alone holds the job's every key, and serves the rest of the run.
fn spare_replaces_both(pushes: u32, count_flags: &[&str]) {
    let (local, scheduler) = local_count(2, pushes, count_flags);
    let mut spare = ferrops_node();
    spare.args(["server", "--scheduler", &scheduler]);
    if let Some(mode) = count_flags
        .iter()
        .find_map(|a| a.strip_prefix("--replication-mode="))
    {
        spare.args(["--replication-mode", mode]);
    }
    let copies = [
        "range 0: server 2 holds a copy",
        "range 1: server 2 holds a copy",
    ];
    kill_copy_kill(
        local,
        pushes,
        Some(spare),
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
fn replicated_after_aggregation_a_spare_takes_a_copy_and_carries_the_job() {
    // Batches reach the spare while it copies: rows it then overwrites, or keys it has not
    // copied yet. Server 0 is killed as the copies' routing is published, when the spare may
    // refuse batches stamped with the routing before: their pushes come back as resends,
    // whose numbers must reach the spare with the rows (a push applied twice once, before).
    spare_replaces_both(PUSHES, &["--replication-mode=aggregated"]);
}

#[test]
fn a_spare_that_died_before_any_worker_dialed_it_does_not_keep_them_from_the_next() {
    // Spare 2 copies both ranges as a tail (no worker dials it) and dies; spare 3 copies them
    // and becomes their head when server 0 dies. The workers' dial of rank 2 fails, and rank 3
    // must be dialed all the same.
    let pushes = 2 * PUSHES;
    let (local, scheduler) = local_count(2, pushes, &[]);
    let server = |i| common::launched_server(&local.child, i);
    let (first, last) = (server(0), server(1));
    let spare = || {
        let mut spare = ferrops_node();
        spare.args(["server", "--scheduler", &scheduler]);
        Running::follow(spare.spawn().expect("the spare starts"))
    };
    local.stdout.wait_for("has 500 pushes acknowledged", WAIT);
    send_signal(last, "KILL");
    local.stderr.wait_for("chains [[0], [0]]", WAIT);
    let doomed = spare();
    let copies = |rank| [0, 1].map(|r| format!("range {r}: server {rank} holds a copy"));
    let [a, b] = copies(2);
    local.stderr.wait_for_all(&[&a, &b], WAIT);
    send_signal(doomed.child.id(), "KILL");
    local.stderr.wait_for("chains [[0], [0]]", WAIT);
    let _next = spare();
    let [a, b] = copies(3);
    local.stderr.wait_for_all(&[&a, &b], WAIT);
    send_signal(first, "KILL");
    local.stderr.wait_for("chains [[3], [3]]", WAIT);
    finish_exactly(local, pushes);
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

/// Lets `local` finish exactly; server 1, drained, exited 0 (`ferrops local` logs a failure).
fn finish_with_server_1_drained(local: Running) {
    let out = finish_exactly(local, PUSHES);
    // The launcher's line is "server 1 failed: <status>"; a chain's "forwarding to server 1
    // failed: broken pipe" while the drained server leaves contains the same words.
    let launcher_saw_failure = out
        .lines()
        .any(|line| line.contains("server 1 failed") && !line.contains("to server 1 failed"));
    assert!(!launcher_saw_failure, "a drained server exits 0:\n{out}");
}

/// [`local_count`] with `PUSHES`, once its pushes flow.
fn pushing(servers: usize, count_flags: &[&str]) -> (Running, String) {
    let (local, scheduler) = local_count(servers, PUSHES, count_flags);
    local.stdout.wait_for("has 500 pushes acknowledged", WAIT);
    (local, scheduler)
}

#[test]
fn a_server_joining_under_load_takes_a_range_and_a_drained_one_hands_its_ranges_off() {
    let (local, scheduler) = pushing(2, &[]);
    let mut spare = ferrops_node();
    spare.args(["server", "--scheduler", &scheduler]);
    let _spare = Running::follow(spare.spawn().expect("the spare starts"));
    local
        .stderr
        .wait_for("moved from server 0 to server 2", WAIT);
    // Every server holds a copy of some range, and each range has its two copies.
    let held = holdings(&scheduler);
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().all(|&(_, n)| n > 0), "{held:?}");
    assert_eq!(held.iter().map(|&(_, n)| n).sum::<usize>(), 4, "{held:?}");
    let (ok, out) = ctl(&scheduler, "drain", &["--server", "1"]);
    assert!(ok, "{out}");
    let held = holdings(&scheduler);
    assert_eq!(
        held.iter().map(|&(rank, _)| rank).collect::<Vec<_>>(),
        [0, 2]
    );
    assert!(held.iter().all(|&(_, n)| n == 2), "{held:?}");
    finish_with_server_1_drained(local);
}

#[test]
fn sigterm_hands_a_servers_ranges_off_before_it_exits_0() {
    let (local, _) = pushing(3, &["--async"]);
    send_signal(common::launched_server(&local.child, 1), "TERM");
    local.stderr.wait_for("server 1 is drained", WAIT);
    finish_with_server_1_drained(local);
}

#[test]
fn replicated_after_aggregation_a_drained_head_hands_its_ranges_off_exactly() {
    // Server 1 heads range 1 and holds its pushes' acknowledgements in batches: those applied
    // before the copy's last rows reach the learner before it counts as a copy.
    let (local, _) = pushing(3, &["--replication-mode=aggregated"]);
    send_signal(common::launched_server(&local.child, 1), "TERM");
    local.stderr.wait_for("server 1 is drained", WAIT);
    finish_with_server_1_drained(local);
}

#[test]
fn a_drain_that_would_leave_a_range_short_of_copies_is_refused() {
    let (local, scheduler) = pushing(2, &[]);
    let (ok, out) = ctl(&scheduler, "drain", &["--server", "1"]);
    assert!(!ok, "{out}");
    assert!(out.contains("start a spare server first"), "{out}");
    let (ok, out) = ctl(&scheduler, "drain", &["--server", "7"]);
    assert!(!ok && out.contains("there is no live server 7"), "{out}");
    finish_exactly(local, PUSHES);
}
