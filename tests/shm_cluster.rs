//! Multi-process jobs over shared memory: `ferrops local` starts the scheduler, 2 servers and
//! 2 workers as separate processes on this host, once with `FERROPS_TRANSPORT=shm` and once
//! with `tcp`; the `check` job (exact sums of every push, small and bulk) must pass with the
//! same results both ways, and over `shm` every worker↔server connection is shared memory.

mod common;

use common::ferrops_without_cluster_env;

/// Runs the `check` job on 2 servers and 2 workers over `transport`; returns its stdout
/// (without the timing figures) and stderr.
fn check_job_over(transport: &str) -> (Vec<String>, String) {
    let out = ferrops_without_cluster_env()
        .env("FERROPS_TRANSPORT", transport)
        .env("FERROPS_LOG", "info")
        .args(["local", "--servers", "2", "--workers", "2", "--"])
        // 300 000 keys: bulk frames larger than the rings, on both servers.
        .args(["ferrops", "worker", "--job", "check"])
        .args(["--", "--keys", "300000", "--clocks", "3"])
        .output()
        .expect("ferrops runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{transport}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let mut results: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("check passed"))
        .map(|l| l.split(" max_stall_ms").next().unwrap_or(l).to_string())
        .collect();
    results.sort();
    (results, stderr)
}

#[test]
fn check_job_over_shared_memory_matches_tcp() {
    let (shm, log) = check_job_over("shm");
    assert_eq!(shm.len(), 2, "{shm:?}\n{log}");
    assert_eq!(
        log.matches("listening for shared-memory connections")
            .count(),
        2,
        "each server listens for shared memory:\n{log}"
    );
    assert_eq!(
        log.matches("through shared memory").count(),
        4,
        "every worker reaches every server through shared memory:\n{log}"
    );
    let (tcp, log) = check_job_over("tcp");
    assert!(!log.contains("through shared memory"), "{log}");
    assert_eq!(shm, tcp, "the same sums over shared memory as over TCP");
}
