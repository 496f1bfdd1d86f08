//! Real clusters as separate processes on loopback: the scheduler, servers and workers are each
//! a `ferrops` process, started by `ferrops local` or by hand the way an HPC launcher would.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{announced_address, ferrops_without_cluster_env, run_ok};

fn ferrops() -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_LOG", "warn");
    c
}

/// `ferrops local` with `servers` servers and `workers` workers; the caller appends the
/// launcher's other options, `--` and the worker command.
fn local(servers: usize, workers: usize) -> Command {
    let mut c = ferrops();
    c.args(["local", "--servers", &servers.to_string()])
        .args(["--workers", &workers.to_string()]);
    c
}

#[test]
fn check_job_passes_on_every_worker_of_a_local_cluster() {
    let out = run_ok(local(2, 3).args(["--", "ferrops", "worker", "--job", "check"]));
    assert_eq!(out.matches("check passed").count(), 3, "{out}");
}

#[test]
fn check_job_flags_set_its_clocks_and_keys_and_it_reports_its_longest_stall() {
    let out = run_ok(
        local(2, 2)
            .args(["--", "ferrops", "worker", "--job", "check"])
            .args(["--", "--clocks", "6", "--keys", "50"]),
    );
    // 2 workers × 6 clocks of +1 on each of 50 keys.
    assert_eq!(
        out.matches("saw 12 on all 50 keys after 6 clocks max_stall_ms=")
            .count(),
        2,
        "{out}"
    );
    let stalls: Vec<f64> = out
        .split("max_stall_ms=")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(stalls.len(), 2, "{out}");
    assert!(stalls.iter().all(|s| s.is_finite() && *s >= 0.0), "{out}");
    let bad = ferrops()
        .args(["local", "--servers", "1", "--workers", "1", "--"])
        .args(["ferrops", "worker", "--job", "check", "--", "--clocks", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--clocks"), "{err}");
}

#[test]
fn demo_trains_until_its_tolerance_and_its_loss_falls() {
    let plot = std::env::temp_dir().join(format!("ferrops-demo-test-{}.png", std::process::id()));
    let out = run_ok(
        ferrops()
            .args(["demo", "--examples", "20000"])
            .args(["--features", "5000", "--seed", "7", "--plot"])
            .arg(&plot),
    );
    let objectives: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("iter "))
        .filter_map(|l| l.split("objective ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    // It stops by tolerance (default 0.1) well before its 100-iteration cap, every worker
    // after the iteration it reports.
    let n = objectives.len();
    assert!((2..100).contains(&n), "{out}");
    assert!(
        out.contains("converged: KKT violation") && out.contains("< tol 1e-1 at iteration"),
        "{out}"
    );
    for rank in 0..2 {
        assert!(
            out.contains(&format!("worker {rank}: stopped after iteration {n}\n")),
            "{out}"
        );
    }
    assert!(
        objectives[n - 1] < 0.9 * objectives[0],
        "the objective falls: {objectives:?}"
    );
    let accuracy: f64 = out
        .split("training accuracy ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {out}"));
    assert!(accuracy > 75.0, "the model learns something: {out}");
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    std::fs::remove_file(&plot).unwrap();
}

/// The ps-lite style: every process gets its role and the scheduler's address from the
/// environment, as a batch system's launcher would set them.
#[test]
fn roles_configured_by_environment_variables_form_a_job() {
    let mut scheduler = ferrops()
        .env("FERROPS_ROLE", "scheduler")
        .env("FERROPS_SECRET", "env-launch-secret")
        .env("FERROPS_NUM_SERVERS", "1")
        .env("FERROPS_NUM_WORKERS", "2")
        .env("FERROPS_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = announced_address(&mut scheduler);
    let env = |c: &mut Command, role: &str| {
        c.env("FERROPS_ROLE", role)
            .env("FERROPS_SECRET", "env-launch-secret")
            .env("FERROPS_SCHEDULER", &addr)
            .env("FERROPS_NUM_SERVERS", "1")
            .env("FERROPS_NUM_WORKERS", "2")
            .env("FERROPS_BIND", "127.0.0.1:0");
    };
    let mut server = ferrops();
    env(&mut server, "server");
    let mut server = server.spawn().unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut w = ferrops();
            env(&mut w, "worker");
            w.env("FERROPS_JOB", "check")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("check passed"));
    }
    for child in [&mut server, &mut scheduler] {
        let mut waited = Duration::ZERO;
        while child.try_wait().unwrap().is_none() {
            assert!(
                waited < Duration::from_secs(20),
                "roles exit by themselves when workers finish"
            );
            std::thread::sleep(Duration::from_millis(20));
            waited += Duration::from_millis(20);
        }
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn a_killed_worker_fails_the_job_without_hanging_the_others() {
    let started = std::time::Instant::now();
    let lock = std::env::temp_dir().join(format!("ferrops-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir(&lock);
    // Each worker is a shell running a long training job; the first to take the lock SIGKILLs
    // its job shortly after, the other trains on until the launcher stops it.
    let script = "\"$0\" worker --job logreg -- --epochs 500 --examples 20000 & pid=$!; \
                  if mkdir \"$1\" 2>/dev/null; then sleep 0.5; kill -9 $pid; fi; wait $pid";
    let killed = local(1, 2)
        .args(["--", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_ferrops"))
        .arg(&lock)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&lock);
    assert_eq!(
        killed.status.code(),
        Some(137),
        "the killed worker's status (128 + SIGKILL) is the job's: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60), "nothing hangs");
}

fn last_json_line(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

#[test]
fn bench_reports_json_with_a_floor_after_checking_the_sums() {
    let out = run_ok(ferrops().args([
        "bench",
        "push-pull",
        "--keys",
        "3000",
        "--iters",
        "5",
        "--servers",
        "2",
        "--floor",
        "--json",
    ]));
    let r = last_json_line(&out);
    assert_eq!(r["bench"], "push-pull");
    assert_eq!(r["servers"], 2);
    assert_eq!(r["keys"], 3000);
    for op in ["push", "pull"] {
        let p50 = r[op]["p50_us"].as_f64().unwrap();
        assert!(
            p50 > 0.0 && p50 <= r[op]["p99_us"].as_f64().unwrap(),
            "{op}: {r}"
        );
        assert!(r[op]["min_us"].as_f64().unwrap() <= p50);
    }
    assert!(r["floor"]["push_round_trip"]["p50_us"].as_f64().unwrap() > 0.0);
    // 6 pushes (1 warm-up + 5) of 3000 values, keys sent once thanks to key caching.
    assert!(r["bytes_sent"].as_u64().unwrap() >= 6 * 3000 * 4 + 3000 * 8);
    assert!(r["bytes_sent"].as_u64().unwrap() < 6 * 3000 * 12);
    assert_eq!(r["sent_by_section"]["keys"], 3000 * 8, "keys sent once");
    // 6 rounds × (push + pull) × 2 servers, all by signature but the first push to each server.
    assert_eq!(r["reducers"]["key_cached"]["sections"], 6 * 2 * 2 - 2);
    // The two servers' own memory report: 3000 keys of 8 bytes and one f32 between them.
    let m = &r["server_memory"];
    assert_eq!(m["raw_bytes"], 3000 * 12, "{m}");
    assert!(m["resident_bytes"].as_u64().unwrap() > 0);
    assert!(m["key_map_bytes"].as_u64().unwrap() >= 3000 * 12);
    assert!(m["resident_over_raw"].as_f64().unwrap() > 1.0);
}

#[test]
fn bench_joins_a_job_started_by_the_launcher() {
    let out = run_ok(
        local(1, 2)
            .args(["--no-prefix", "--", "ferrops", "bench", "push-pull"])
            .args(["--keys", "500", "--iters", "5", "--json"]),
    );
    let reports: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "one report per worker: {out}");
    assert!(reports
        .iter()
        .all(|r| r["workers"] == 2 && r["servers"] == 1));
}

#[test]
fn bench_reducers_reports_every_configuration_against_none() {
    let out = run_ok(ferrops().args([
        "bench",
        "reducers",
        "--features",
        "5000",
        "--examples",
        "4000",
        "--epochs",
        "2",
        "--json",
    ]));
    let r = last_json_line(&out);
    let runs = r["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "none",
            "keys",
            "fp16",
            "significant",
            "kkt",
            "changed",
            "all"
        ]
    );
    assert_eq!(runs[0]["reduction"].as_f64(), Some(1.0));
    assert!(
        runs[1]["reduction"].as_f64().unwrap() > 1.2,
        "key caching saves bytes: {}",
        runs[1]
    );
    assert!(
        runs[2]["bytes_received"].as_u64() < runs[0]["bytes_received"].as_u64(),
        "fp16 pulls"
    );
    for run in runs {
        assert!(run["objective"].as_f64().unwrap().is_finite());
    }
}

/// `ferrops scheduler` on loopback for 1 server and 1 worker.
fn small_scheduler() -> Command {
    let mut c = ferrops();
    c.args(["scheduler", "--bind", "127.0.0.1:0"]).args([
        "--num-servers",
        "1",
        "--num-workers",
        "1",
    ]);
    c
}

/// Starts a scheduler for 1 server and 1 worker with `secret`; returns it (stderr piped) and
/// its address.
fn scheduler_with_secret(secret: &str) -> (std::process::Child, String) {
    let mut scheduler = small_scheduler()
        .env("FERROPS_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = announced_address(&mut scheduler);
    (scheduler, addr)
}

#[test]
fn a_node_with_a_wrong_secret_is_refused_with_one_clear_line_on_both_sides() {
    let (mut scheduler, addr) = scheduler_with_secret("the-job-secret");
    let out = ferrops()
        .args([
            "worker",
            "--scheduler",
            &addr,
            "--num-servers",
            "1",
            "--num-workers",
            "1",
        ])
        .args(["--job", "check"])
        .env("FERROPS_SECRET", "another-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let worker_err = String::from_utf8_lossy(&out.stderr);
    assert!(worker_err.contains("different secrets"), "{worker_err}");
    assert!(!worker_err.contains("the-job-secret") && !worker_err.contains("another-secret"));
    // The scheduler logs the refusal as it reads it (it may still be reading when the worker
    // has exited): wait for the line, then stop it.
    let log = common::LineLog::follow(scheduler.stderr.take().unwrap());
    let refusal = log.wait_for("authentication failed", Duration::from_secs(30));
    assert!(refusal.contains("different secrets"), "{refusal}");
    scheduler.kill().unwrap();
    scheduler.wait().unwrap();
}

#[test]
fn a_role_without_a_secret_refuses_to_start_unless_told_insecure() {
    let out = ferrops()
        .args([
            "scheduler",
            "--bind",
            "0.0.0.0:0",
            "--num-servers",
            "1",
            "--num-workers",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no cluster secret") && err.contains("--insecure"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it never announced an address");

    // With --insecure it starts, and says loudly what that means.
    let mut insecure = small_scheduler()
        .arg("--insecure")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    announced_address(&mut insecure);
    insecure.kill().unwrap();
    let err = String::from_utf8_lossy(&insecure.wait_with_output().unwrap().stderr).into_owned();
    assert!(err.contains("without a cluster secret"), "{err}");
}
