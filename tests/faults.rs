//! `ferrops faults` end to end: short, seeded runs of the `check` job on a private network of
//! namespaces, each with one kind of fault — a server killed under load (every first server
//! heads a range), a server stopped past the heartbeat timeout (failed over, then fenced when
//! it resumes), a server cut off past the timeout whose link comes back (fenced the same way)
//! and one cut off briefly (nobody notices), the scheduler killed and restarted with
//! `--recover` — and a one-minute soak of them all. Every job must pass with exact sums.
//!
//! Namespaces need root (and a kernel with veth and bridges): elsewhere `ferrops faults` prints
//! `SKIPPED: <reason>` and exits 77, and these tests say so and pass. No test asserts timing.

mod common;

use std::process::Output;
use std::sync::Mutex;

use common::ferrops_without_cluster_env;

/// One run at a time: each starts a dozen processes with 1.5 s heartbeat timeouts, and runs in
/// parallel on a small machine would starve them into false deaths.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `ferrops faults ARGS`: its output, or `None` when the host cannot make namespaces.
fn faults(args: &[&str]) -> Option<String> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out: Output = ferrops_without_cluster_env()
        .arg("faults")
        .args(args)
        .env("FERROPS_LOG", "warn")
        .output()
        .expect("ferrops faults runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        assert!(
            stdout.contains("SKIPPED: "),
            "exit 77 without a reason:\n{text}"
        );
        eprintln!(
            "skipped: this host cannot run the fault suite: {}",
            stdout.trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "ferrops faults {args:?} failed:\n{text}"
    );
    assert!(text.contains("mismatches (wrong sums): 0"), "{text}");
    assert!(text.contains("faults: passed"), "{text}");
    Some(text)
}

/// One job of `check` (long enough for the fault to land) with one fault of `kind`.
fn one_fault(seed: &str, kind: &str, hold: &str) -> Option<String> {
    let text = faults(&[
        "--seed",
        seed,
        "--jobs",
        "1",
        "--kinds",
        kind,
        "--hold",
        hold,
        "--every",
        "1",
        "--faults-per-job",
        "1",
        "--clocks",
        "8000",
    ])?;
    assert!(text.contains("faults injected: 1 "), "{text}");
    assert!(text.contains("recoveries: 1 of 1 faults"), "{text}");
    Some(text)
}

#[test]
fn a_head_killed_under_load_is_replaced_and_the_sums_stay_exact() {
    let Some(text) = one_fault("1", "kill", "any") else {
        return;
    };
    assert!(text.contains("(kill 1)"), "{text}");
    assert!(!text.contains(" 0 failovers"), "{text}");
    assert!(!text.contains(" 0 spares started"), "{text}");
}

#[test]
fn a_server_stopped_past_the_heartbeat_timeout_is_fenced_and_the_sums_stay_exact() {
    let Some(text) = one_fault("2", "stall", "long") else {
        return;
    };
    assert!(
        text.contains("stall 1 (1 past the heartbeat timeout)"),
        "{text}"
    );
    assert!(text.contains(" 1 failovers"), "{text}");
    assert!(
        text.contains(" 1 stalled or cut-off servers fenced"),
        "{text}"
    );
    assert!(!text.contains("NOT fenced"), "{text}");
}

#[test]
fn a_partition_past_the_timeout_heals_with_the_server_fenced_and_the_sums_exact() {
    let Some(text) = one_fault("3", "partition", "long") else {
        return;
    };
    assert!(
        text.contains("partition 1 (1 past the heartbeat timeout)"),
        "{text}"
    );
    assert!(
        text.contains(" 1 stalled or cut-off servers fenced"),
        "{text}"
    );
    assert!(!text.contains("NOT fenced"), "{text}");
}

#[test]
fn a_short_partition_heals_and_the_sums_stay_exact() {
    // Whether the scheduler notices depends on TCP's retransmission backoff once the link is
    // back: the test asserts the outcome, not that.
    let Some(text) = one_fault("4", "partition", "short") else {
        return;
    };
    assert!(
        text.contains("partition 1 (0 past the heartbeat timeout)"),
        "{text}"
    );
}

#[test]
fn a_scheduler_killed_past_the_heartbeat_timeout_is_recovered_and_the_sums_stay_exact() {
    // Killed, and restarted with `--recover` on its address after longer than the nodes'
    // heartbeat timeout: pushes and pulls went on without it, and it rebuilds the job's state
    // from the nodes re-registering (checkpoints every 500 clocks wait for it meanwhile).
    let Some(text) = one_fault("6", "scheduler", "long") else {
        return;
    };
    assert!(
        text.contains("scheduler 1 (1 past the heartbeat timeout)"),
        "{text}"
    );
}

#[test]
#[ignore = "the soak runs in .ci/run's faults_soak stage (3 minutes); run with --ignored"]
fn a_one_minute_soak_of_every_kind_keeps_every_sum_exact() {
    let Some(text) = faults(&["--seed", "5", "--minutes", "1", "--every", "3"]) else {
        return;
    };
    assert!(!text.contains("faults injected: 0 "), "{text}");
}

#[test]
fn netem_runs_where_the_kernel_has_it_and_skips_saying_so_elsewhere() {
    // `faults` passes, or returns None having checked the SKIPPED line (no namespaces, or no
    // netem qdisc: the reason is printed).
    let _ = faults(&[
        "--seed",
        "6",
        "--jobs",
        "1",
        "--kinds",
        "none",
        "--clocks",
        "200",
        "--netem",
        "delay 1ms loss 1%",
    ]);
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let out = ferrops_without_cluster_env()
        .args(["faults", "--kinds", "kill,flood"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kinds"));
    let out = ferrops_without_cluster_env()
        .args(["faults", "--jobs", "1", "--minutes", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--jobs and --minutes conflict");
}
