//! Applications end to end: the LIBSVM reader (round trip with the generator, byte-range splits,
//! `file:line` errors), `ferrops data` and `ferrops train l1lr` on a real multi-process cluster
//! against the single-process reference solver.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrops::apps::{reference, trace};
use ferrops::data::gen::{self, GenSpec};
use ferrops::data::{read_part, DataError, Rows};

fn ferrops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrops"))
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrops-apps-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running ferrops");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Rows back to LIBSVM text, as the generator formats them.
fn to_text(rows: &Rows) -> String {
    let mut s = String::new();
    for i in 0..rows.len() {
        s.push_str(if rows.labels[i] > 0.0 { "+1" } else { "-1" });
        let (idx, val) = rows.row(i);
        for (j, v) in idx.iter().zip(val) {
            write!(s, " {j}:{v}").unwrap();
        }
        s.push('\n');
    }
    s
}

#[test]
fn generated_data_reads_back_exactly() {
    let dir = scratch("roundtrip");
    let path = dir.join("d.svm");
    run_ok(
        ferrops()
            .args(["data", "gen", "--rows", "700", "--features", "900"])
            .args(["--nnz-per-row", "12", "--seed", "5", "--out"])
            .arg(&path),
    );
    let rows = read_part(&path, 0, 1).unwrap();
    assert_eq!(rows.len(), 700);
    assert_eq!(to_text(&rows), std::fs::read_to_string(&path).unwrap());
    assert!(rows.idx.iter().all(|&j| (1..=900).contains(&j)));
    let mut in_memory = Vec::new();
    gen::write(
        &GenSpec {
            rows: 700,
            features: 900,
            nnz_per_row: 12,
            seed: 5,
        },
        &mut in_memory,
    )
    .unwrap();
    assert_eq!(in_memory, std::fs::read(&path).unwrap());

    let info = run_ok(ferrops().args(["data", "info"]).arg(&path));
    let positives = rows.labels.iter().filter(|&&l| l > 0.0).count();
    assert!(
        info.contains(&format!("rows       {}", rows.len())),
        "{info}"
    );
    assert!(
        info.contains(&format!("nonzeros   {} ", rows.idx.len())),
        "{info}"
    );
    assert!(
        info.contains(&format!("features   {} ", rows.dim())),
        "{info}"
    );
    assert!(
        info.contains(&format!("labels     {positives} positive")),
        "{info}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn byte_range_parts_read_every_line_exactly_once() {
    let dir = scratch("split");
    let path = dir.join("d.svm");
    // Lines of very different lengths, comments, a blank line, qid tokens, 0/1 labels and
    // no final newline; row r carries feature r + 1 so each row can be recognised.
    let mut text = String::from("# header comment\n");
    for r in 0..37u32 {
        let label = if r % 3 == 0 { "0" } else { "1" };
        write!(text, "{label} qid:{} {}:1", r % 4, r + 1).unwrap();
        for k in 0..(r * 7 % 23) {
            write!(text, " {}:0.5", 1000 + k).unwrap();
        }
        text.push_str(if r % 5 == 0 { " # trailing\n" } else { "\n" });
        if r == 11 {
            text.push('\n');
        }
    }
    text.pop();
    std::fs::write(&path, &text).unwrap();
    let whole = read_part(&path, 0, 1).unwrap();
    assert_eq!(whole.len(), 37);
    for parts in 1..=5 {
        let mut seen = Vec::new();
        for part in 0..parts {
            let rows = read_part(&path, part, parts).unwrap();
            for i in 0..rows.len() {
                seen.push(rows.row(i).0[0] - 1);
            }
        }
        assert_eq!(seen, (0..37).collect::<Vec<u32>>(), "{parts} parts");
    }
    assert!(matches!(
        read_part(&path, 5, 5),
        Err(DataError::BadPart { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_lines_are_reported_with_file_and_line() {
    let dir = scratch("bad");
    for (bad, what) in [
        ("2 1:1", "bad label"),
        ("+1 3:1 x", "bad feature"),
        ("-1 3:1 4:y", "bad feature value"),
        ("+1 5:1 5:2", "strictly increasing"),
        ("+1 7:1 2:1", "strictly increasing"),
    ] {
        let path = dir.join("bad.svm");
        let mut text = String::new();
        for r in 0..20 {
            if r == 13 {
                text.push_str(bad);
            } else {
                write!(text, "+1 {}:1", r + 1).unwrap();
            }
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        for parts in [1, 3] {
            let errors: Vec<String> = (0..parts)
                .filter_map(|p| read_part(&path, p, parts).err())
                .map(|e| e.to_string())
                .collect();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            let expected = format!("{}:14: ", path.display());
            assert!(
                errors[0].starts_with(&expected) && errors[0].contains(what),
                "{bad}: {}",
                errors[0]
            );
        }
        let out = ferrops()
            .args(["data", "info"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(":14: "));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains on a 2-server cluster of `workers` workers and returns the trace.
fn train(
    data: &Path,
    dir: &Path,
    workers: usize,
    tau: u32,
    lambda: f32,
    iters: usize,
) -> Vec<trace::Record> {
    let json = dir.join(format!("trace-{workers}-{tau}.jsonl"));
    let png = dir.join(format!("plot-{workers}-{tau}.png"));
    let out = run_ok(
        ferrops()
            .args(["train", "l1lr", "--servers", "2", "--blocks", "4"])
            .args(["--workers", &workers.to_string()])
            .args(["--tau", &tau.to_string(), "--lambda", &lambda.to_string()])
            .args(["--iters", &iters.to_string(), "--data"])
            .arg(data)
            .arg("--json")
            .arg(&json)
            .arg("--plot")
            .arg(&png)
            .env("FERROPS_LOG", "warn"),
    );
    assert!(out.contains("final: objective"), "{out}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    trace::read(&json).unwrap()
}

#[test]
fn distributed_l1lr_matches_the_single_process_solver() {
    let dir = scratch("l1lr");
    let data = dir.join("train.svm");
    let features = 600;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&data).unwrap());
    gen::write(
        &GenSpec {
            rows: 3000,
            features,
            nnz_per_row: 10,
            seed: 11,
        },
        &mut out,
    )
    .unwrap();
    drop(out);
    let lambda = 2.0;
    let rows = read_part(&data, 0, 1).unwrap();
    let dim = rows.dim();
    let w = reference::solve(&rows, dim, f64::from(lambda), 200);
    let best = reference::objective(&rows, &w, f64::from(lambda));
    let at_zero = reference::objective(&rows, &vec![0.0; dim], f64::from(lambda));

    let records = train(&data, &dir, 2, 0, lambda, 40);
    let last = records.last().unwrap();
    assert!(last.last && last.iteration == 40, "{last:?}");
    assert_eq!(records.len(), 41);
    let gap = (last.objective - best) / best;
    eprintln!(
        "τ = 0: distributed {} vs reference {best} (gap {gap:+.2e}), nnz {}",
        last.objective, last.nnz
    );
    assert!(
        gap.abs() < 1e-3,
        "distributed {} vs reference {best} (at zero {at_zero})",
        last.objective
    );
    assert!(
        last.nnz > 0 && last.nnz < features as usize,
        "nnz {}",
        last.nnz
    );
    // The trace's timestamps and traffic only grow.
    assert!(records.windows(2).all(|p| p[1].time >= p[0].time));
    assert!(records
        .windows(2)
        .all(|p| p[1].bytes_sent >= p[0].bytes_sent));

    // At τ = 0 the sums the servers apply do not depend on how the rows are split.
    let alone = train(&data, &dir, 1, 0, lambda, 40);
    let alone = alone.last().unwrap().objective;
    assert!(
        ((alone - last.objective) / alone).abs() < 1e-5,
        "1 worker {alone} vs 2 workers {}",
        last.objective
    );

    // With delayed blocks the job still converges near the same optimum.
    let delayed = train(&data, &dir, 2, 2, lambda, 40);
    let gap = (delayed.last().unwrap().objective - best) / best;
    eprintln!("τ = 2: gap {gap:+.2e}");
    assert!(gap.abs() < 0.01, "τ = 2: gap {gap}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rica_on_whitened_patches_lowers_its_objective() {
    let dir = scratch("rica");
    // A synthetic 64×64 greyscale image: two gratings and a checkerboard of inverted squares.
    let (w, h) = (64usize, 64usize);
    let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let mut v =
                0.5 + 0.2 * (xf * 0.3 + yf * 0.1).sin() + 0.2 * (yf * 0.45 - xf * 0.2).sin();
            if (x / 8 + y / 8) % 3 == 0 {
                v = 1.0 - v;
            }
            pgm.push((v.clamp(0.0, 1.0) * 255.0) as u8);
        }
    }
    let image = dir.join("img.pgm");
    std::fs::write(&image, pgm).unwrap();
    let patches = dir.join("patches.txt");
    let out = run_ok(
        ferrops()
            .args(["data", "patches", "--size", "4", "--count", "1500", "--out"])
            .arg(&patches)
            .arg(&image),
    );
    assert!(out.contains("1500 whitened 4×4 patches"), "{out}");
    let out = run_ok(
        ferrops()
            .args([
                "train",
                "rica",
                "--filters",
                "24",
                "--epochs",
                "4",
                "--batch",
                "50",
            ])
            .arg("--data")
            .arg(&patches)
            .env("FERROPS_LOG", "warn"),
    );
    let objectives: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("objective per patch ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(objectives.len(), 4, "{out}");
    assert!(objectives[3] < 0.9 * objectives[0], "{objectives:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
