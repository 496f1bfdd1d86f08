//! Checkpoints from the command line: the trainers' `--checkpoint-every` and `train
//! --restore` resume a run (on another number of servers) where it stopped, and `ferrops
//! local --restore` and `ferrops scheduler --restore` refuse a bad checkpoint, naming the
//! file, before anything else starts.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ferrops_without_cluster_env, generated_data, run_ok, synthetic_patches, Scratch};
use ferrops::internal::data::gen::GenSpec;
use ferrops::internal::trace;

fn ferrops() -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_LOG", "warn");
    c
}

/// `train rica` on one worker (so the run is deterministic) and `servers` servers, with
/// `extra` flags; returns its output and the saved filters.
fn rica(
    dir: &Path,
    data: &Path,
    servers: usize,
    epochs: usize,
    extra: &[&str],
) -> (String, String) {
    let save = dir.join(format!("filters-{servers}-{epochs}.txt"));
    let out = run_ok(
        ferrops()
            .args(["train", "rica", "--filters", "12", "--batch", "50"])
            .args(["--workers", "1", "--servers", &servers.to_string()])
            .args(["--epochs", &epochs.to_string()])
            .arg("--data")
            .arg(data)
            .arg("--save")
            .arg(&save)
            .args(extra),
    );
    (out, std::fs::read_to_string(&save).unwrap())
}

fn objectives(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split("objective per patch ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn rica_resumed_from_a_checkpoint_on_other_servers_ends_where_the_whole_run_does() {
    let scratch = Scratch::new("checkpoint", "rica");
    let data = synthetic_patches(&scratch.dir, 600);
    let ckpt = scratch.dir.join("ckpt");
    let ckpt_flags = [
        "--checkpoint-every",
        "1",
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
    ];
    let (first, _) = rica(&scratch.dir, &data, 2, 2, &ckpt_flags);
    assert_eq!(
        first.matches("checkpoint after epoch").count(),
        2,
        "{first}"
    );
    let manifest = std::fs::read_to_string(ckpt.join("manifest.json")).unwrap();
    assert!(manifest.contains("rica.delta") && manifest.contains("rica.progress"));
    let restore = ["--restore", ckpt.to_str().unwrap()];
    let (resumed, resumed_filters) = rica(&scratch.dir, &data, 3, 4, &restore);
    assert!(resumed.contains("resuming after epoch 2"), "{resumed}");
    let (whole, whole_filters) = rica(&scratch.dir, &data, 1, 4, &[]);
    let (a, b, c) = (objectives(&first), objectives(&resumed), objectives(&whole));
    assert_eq!(
        (a.len(), b.len(), c.len()),
        (2, 2, 4),
        "{first}{resumed}{whole}"
    );
    // Δ and AdaGrad's accumulators came back bit for bit: the resumed epochs are the whole
    // run's last two, and the filters are the same.
    assert_eq!([&a[..], &b[..]].concat(), c);
    assert_eq!(resumed_filters, whole_filters);
}

#[test]
fn l1lr_resumed_from_a_checkpoint_reaches_the_objective_of_the_whole_run() {
    let scratch = Scratch::new("checkpoint", "l1lr");
    let spec = GenSpec {
        rows: 1500,
        features: 300,
        nnz_per_row: 10,
        seed: 3,
    };
    let data = generated_data(&scratch.dir, spec);
    let train = |servers: usize, iters: usize, extra: &[&str]| {
        let json = scratch.dir.join(format!("trace-{servers}-{iters}.jsonl"));
        let out = run_ok(
            ferrops()
                .args([
                    "train",
                    "l1lr",
                    "--blocks",
                    "4",
                    "--lambda",
                    "2",
                    "--workers",
                    "2",
                ])
                .args([
                    "--servers",
                    &servers.to_string(),
                    "--iters",
                    &iters.to_string(),
                ])
                .arg("--data")
                .arg(&data)
                .arg("--json")
                .arg(&json)
                .args(extra),
        );
        (out, trace::read(&json).unwrap())
    };
    let ckpt = scratch.dir.join("ckpt");
    let dir = ckpt.to_str().unwrap();
    // Every 8 clocks: 4 blocks of 3 clocks each make one iteration 12 clocks, so one
    // checkpoint per iteration.
    train(2, 3, &["--checkpoint-every", "8", "--checkpoint-dir", dir]);
    let manifest = ferrops_engine::checkpoint::verify(&ckpt).unwrap();
    assert_eq!(manifest.clock, 36, "three iterations of 12 clocks");
    let (resumed, rest) = train(1, 6, &["--restore", dir]);
    assert!(resumed.contains("resuming after iteration 3"), "{resumed}");
    let (_, whole) = train(2, 6, &[]);
    let steps = |t: &[trace::Record]| t.iter().filter(|r| !r.last).count();
    assert_eq!((steps(&rest), steps(&whole)), (3, 6));
    let (r, w) = (
        rest.last().unwrap().objective,
        whole.last().unwrap().objective,
    );
    // The resumed workers rebuild their margins from the weights in one sum rather than
    // step by step: the same optimisation up to rounding.
    assert!(((r - w) / w).abs() < 1e-6, "resumed {r}, whole {w}");
}

/// The name of the file of `dir`'s checkpoint that holds range `range` of table `table`, by
/// its manifest.
fn range_file(dir: &Path, table: u64, range: u64) -> String {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("a manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let tables = manifest["tables"].as_array().expect("tables");
    let table = tables.iter().find(|t| t["id"] == table).expect("the table");
    let files = table["files"].as_array().expect("files");
    let file = files
        .iter()
        .find(|f| f["range"] == range)
        .expect("the range");
    file["file"].as_str().expect("a name").to_string()
}

#[test]
fn local_and_scheduler_refuse_a_bad_checkpoint_by_name_before_anything_starts() {
    let scratch = Scratch::new("checkpoint", "refused");
    let marker = scratch.dir.join("worker-ran");
    let local = |dir: &Path| {
        ferrops()
            .args(["local", "--servers", "2", "--workers", "1", "--restore"])
            .arg(dir)
            .args(["--", "sh", "-c"])
            .arg(format!("touch {}", marker.display()))
            .output()
            .unwrap()
    };
    // The command failed, and its error says all of `what`.
    let refused = |out: &std::process::Output, what: &[&str]| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(what.iter().all(|w| err.contains(w)), "{err}");
    };
    refused(
        &local(&scratch.dir.join("missing")),
        &["missing", "no such directory"],
    );
    // A real checkpoint, then damaged.
    let ckpt = scratch.dir.join("ckpt");
    let data = synthetic_patches(&scratch.dir, 600);
    rica(
        &scratch.dir,
        &data,
        2,
        1,
        &[
            "--checkpoint-every",
            "1",
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
        ],
    );
    let name = range_file(&ckpt, 0, 1);
    let file = ckpt.join(&name);
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() - 40] ^= 0x80;
    std::fs::write(&file, &flipped).unwrap();
    refused(&local(&ckpt), &[&name, "checksum"]);
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let out = ferrops()
        .args([
            "scheduler",
            "--insecure",
            "--bind",
            "127.0.0.1:0",
            "--num-servers",
            "1",
            "--num-workers",
            "1",
        ])
        .arg("--restore")
        .arg(&ckpt)
        .output()
        .unwrap();
    refused(&out, &[&name, "truncated"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FERROPS_SCHEDULER="),
        "refused before it listened"
    );
    assert!(!marker.exists(), "no worker started");
}

#[test]
fn the_checkpoint_benchmark_reports_fractions_of_the_disk_floor_of_every_round() {
    let scratch = Scratch::new("checkpoint", "bench");
    let out = run_ok(
        ferrops()
            .args(["bench", "checkpoint", "--keys", "20000", "--rounds", "2"])
            .args([
                "--servers",
                "2",
                "--restore-servers",
                "1",
                "--json",
                "--dir",
            ])
            .arg(&scratch.dir),
    );
    let json = out.lines().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(report["keys"], 20000, "{out}");
    // 20 000 sparse Adam keys: a key-map entry (key, slot) and a value and two moments each,
    // plus two headers.
    let bytes = report["bytes"].as_u64().unwrap();
    assert!(
        (20_000 * 24..20_000 * 24 + 1024).contains(&bytes),
        "{bytes}"
    );
    for series in ["write_fraction", "restore_fraction"] {
        let v = report[series].as_array().unwrap();
        assert_eq!(v.len(), 2, "{series}: {out}");
        assert!(
            v.iter().all(|x| x.as_f64().unwrap() > 0.0),
            "{series}: {out}"
        );
    }
    assert!(out.contains("of raw write+fsync"), "{out}");
}
