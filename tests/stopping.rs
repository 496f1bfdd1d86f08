//! Stopping rules end to end (`--tol`, `--max-seconds`): on real multi-process clusters every
//! worker of `train l1lr` (bound steps under delay, including τ ≥ blocks, and line-search
//! steps), `train rica` and the `logreg` job stops after the same iteration and the run exits 0;
//! the trace's final record says why; the demo says when it ran out of iterations instead.

mod common;

use std::path::Path;
use std::process::Command;

use ferrops::internal::data::gen::GenSpec;
use ferrops::internal::trace;

use common::{ferrops_without_cluster_env, generated_data, run_ok, synthetic_patches, Scratch};

fn ferrops() -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_LOG", "warn");
    c
}

/// The iteration after which each worker said it stopped, by rank (`worker R: stopped after
/// iteration N` lines).
fn stopped_after(out: &str, workers: usize) -> Vec<usize> {
    (0..workers)
        .map(|rank| {
            let prefix = format!("worker {rank}: stopped after iteration ");
            let lines: Vec<usize> = out
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|n| n.trim().parse().expect("an iteration number"))
                .collect();
            assert_eq!(lines.len(), 1, "worker {rank} reports one stop: {out}");
            lines[0]
        })
        .collect()
}

fn small_data(dir: &Path) -> std::path::PathBuf {
    let spec = GenSpec {
        rows: 3000,
        features: 2000,
        nnz_per_row: 15,
        seed: 11,
    };
    generated_data(dir, spec)
}

/// `train l1lr` with 4 blocks on `data` and `options`; returns its output and trace.
fn train_l1lr(dir: &Path, data: &Path, options: &str) -> (String, Vec<trace::Record>) {
    let json = dir.join("trace.jsonl");
    let out = run_ok(
        ferrops()
            .args(["train", "l1lr", "--blocks", "4", "--lambda", "1", "--data"])
            .arg(data)
            .arg("--json")
            .arg(&json)
            .args(options.split_whitespace()),
    );
    (out, trace::read(&json).unwrap())
}

#[test]
fn l1lr_loose_tol_stops_every_worker_after_the_same_iteration() {
    let scratch = Scratch::new("stopping", "l1lr-tol");
    let data = small_data(&scratch.dir);
    // (τ, step, workers, lag in iterations between the decision and the stop: ⌈τ/4⌉).
    for (tau, step, workers, lag) in [
        (2, "bound", 3, 1),
        (5, "bound", 2, 2),
        (0, "line", 2, 0),
        (0, "newton", 3, 0),
    ] {
        let options = format!("--tau {tau} --step {step} --workers {workers} --iters 40 --tol 0.3");
        let (out, records) = train_l1lr(&scratch.dir, &data, &options);
        let at = stopped_after(&out, workers);
        assert!(
            at.iter().all(|&n| n == at[0]),
            "τ = {tau}: workers stopped after different iterations {at:?}: {out}"
        );
        let done = at[0];
        assert!(done < 40, "τ = {tau}: a loose tol stops early: {out}");
        let decided = done - lag;
        let why = format!("< tol 3e-1 at iteration {decided}");
        assert!(
            out.contains("converged: KKT violation") && out.contains(&why),
            "τ = {tau}: expected `{why}`: {out}"
        );
        let last = records.last().unwrap();
        assert!(last.last);
        assert_eq!(last.iteration, done, "τ = {tau}");
        assert!(
            last.stopped.as_deref().is_some_and(|s| s.contains(&why)),
            "τ = {tau}: {:?}",
            last.stopped
        );
        // One record per iteration run, then the final one.
        assert_eq!(records.len(), done + 1, "τ = {tau}");
    }
}

#[test]
fn l1lr_max_seconds_stops_all_workers_together() {
    let scratch = Scratch::new("stopping", "l1lr-seconds");
    let data = small_data(&scratch.dir);
    // Any first iteration takes longer than a millisecond: the decision falls after iteration
    // 1, and with τ = 1 every worker stops one iteration later.
    let (out, records) = train_l1lr(
        &scratch.dir,
        &data,
        "--tau 1 --workers 2 --iters 50 --max-seconds 0.001",
    );
    assert!(
        out.contains("stopped: max-seconds 0.001 reached at iteration 1"),
        "{out}"
    );
    assert_eq!(stopped_after(&out, 2), vec![2, 2], "{out}");
    assert_eq!(records.last().unwrap().iteration, 2);
    // Without a stopping rule every iteration runs and nothing says otherwise.
    let (out, records) = train_l1lr(&scratch.dir, &data, "--tau 1 --iters 3");
    assert!(!out.contains("stopped"), "{out}");
    let last = records.last().unwrap();
    assert_eq!((last.iteration, last.stopped.as_deref()), (3, None));
}

#[test]
fn rica_stops_by_tolerance_and_by_time_on_every_worker() {
    let scratch = Scratch::new("stopping", "rica");
    let data = synthetic_patches(&scratch.dir, 400);
    let rica = |options: &str| {
        run_ok(
            ferrops()
                .args(["train", "rica", "--filters", "8", "--batch", "50"])
                .args(["--epochs", "30", "--tau", "2", "--data"])
                .arg(&data)
                .args(options.split_whitespace()),
        )
    };
    // The first epoch has nothing to compare with; the second decreases by less than 100%.
    let out = rica("--tol 1");
    assert_eq!(stopped_after(&out, 2), vec![2, 2], "{out}");
    assert!(
        out.contains("converged: relative decrease") && out.contains("< tol 1e0 at iteration 2"),
        "{out}"
    );
    assert_eq!(out.matches("objective per patch").count(), 2, "{out}");
    let out = rica("--max-seconds 0.0001");
    assert_eq!(stopped_after(&out, 2), vec![1, 1], "{out}");
    assert!(
        out.contains("stopped: max-seconds 0.0001 reached at iteration 1"),
        "{out}"
    );
}

#[test]
fn logreg_job_stops_every_worker_after_the_same_epoch() {
    let out = run_ok(
        ferrops()
            .args(["local", "--servers", "1", "--workers", "3", "--"])
            .args(["ferrops", "worker", "--job", "logreg", "--"])
            .args(["--features", "2000", "--examples", "6000", "--batch", "200"])
            .args(["--epochs", "30", "--tau", "3", "--tol", "1"]),
    );
    let at = stopped_after(&strip_labels(&out), 3);
    assert_eq!(at, vec![2, 2, 2], "{out}");
    assert!(out.contains("RESULT {"), "{out}");
}

/// `ferrops local`'s output without its `[worker N] ` labels.
fn strip_labels(out: &str) -> String {
    out.lines()
        .map(|l| match l.strip_prefix("[worker ") {
            Some(rest) => rest.split_once("] ").map_or(l, |(_, line)| line),
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn demo_says_when_its_iterations_ran_out_before_the_tolerance() {
    let scratch = Scratch::new("stopping", "demo-cap");
    let out = run_ok(
        ferrops()
            .args(["demo", "--epochs", "2", "--examples", "4000"])
            .args([
                "--features",
                "2000",
                "--seed",
                "5",
                "--tol",
                "1e-6",
                "--plot",
            ])
            .arg(scratch.dir.join("demo.png")),
    );
    assert!(
        out.contains("stopped: all 2 iterations run (--epochs) before the stopping rule fired"),
        "{out}"
    );
    assert!(!out.contains("converged"), "{out}");
    assert!(!out.contains("stopped after iteration"), "{out}");
}
