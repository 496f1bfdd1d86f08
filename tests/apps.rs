//! Applications end to end: the LIBSVM reader (round trip with the generator, byte-range splits,
//! `file:line` errors), `ferrops data` (including PNG/JPEG input to `data patches` and corrupt
//! images), `ferrops train l1lr` on a real multi-process cluster against the single-process
//! reference solver, with and without the KKT filter, the objective plot and RICA's filter grid.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrops::internal::data::gen::{self, GenSpec};
use ferrops::internal::data::{read_part, DataError, DimBound, Rows, DEFAULT_MAX_DIM};

/// The bound of every read here: the data sets are generated well within it.
const ANY_DIM: DimBound = DimBound::Max(DEFAULT_MAX_DIM);
use ferrops::internal::{reference, trace};

use common::run_ok;

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

/// A fresh directory for one test holding the data set `spec` describes as `train.svm`;
/// returns the directory and the data file's path.
fn scratch_with_data(name: &str, spec: GenSpec) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let data = common::generated_data(&dir, spec);
    (dir, data)
}

/// Runs `ferrops train l1lr` on `data` with 4 blocks and the cluster and solver options
/// `options` (flags and values separated by spaces), tracing to `json`, plotting to `plot` if
/// given and logging only warnings; returns its output and the trace.
fn train_l1lr(
    data: &Path,
    json: &Path,
    plot: Option<&Path>,
    options: &str,
) -> (String, Vec<trace::Record>) {
    let mut cmd = ferrops();
    cmd.args(["train", "l1lr", "--blocks", "4", "--data"])
        .arg(data)
        .arg("--json")
        .arg(json)
        .args(options.split_whitespace())
        .env("FERROPS_LOG", "warn");
    if let Some(png) = plot {
        cmd.arg("--plot").arg(png);
    }
    (run_ok(&mut cmd), trace::read(json).unwrap())
}

/// A small generated set (3000 rows, 2000 features, 10 nonzeros a row) in a scratch folder.
fn small_set(name: &str, seed: u64) -> (PathBuf, PathBuf) {
    scratch_with_data(
        name,
        GenSpec {
            rows: 3000,
            features: 2000,
            nnz_per_row: 10,
            seed,
        },
    )
}

/// `train l1lr` with `args` on `data` fails, saying `message`.
fn refuses_l1lr(data: &Path, args: &[&str], message: &str) {
    let refused = ferrops()
        .args(["train", "l1lr"])
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains(message), "{err}");
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
    let rows = read_part(&path, 0, 1, ANY_DIM).unwrap();
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
    let whole = read_part(&path, 0, 1, ANY_DIM).unwrap();
    assert_eq!(whole.len(), 37);
    for parts in 1..=5 {
        let mut seen = Vec::new();
        for part in 0..parts {
            let rows = read_part(&path, part, parts, ANY_DIM).unwrap();
            for i in 0..rows.len() {
                seen.push(rows.row(i).0[0] - 1);
            }
        }
        assert_eq!(seen, (0..37).collect::<Vec<u32>>(), "{parts} parts");
    }
    assert!(matches!(
        read_part(&path, 5, 5, ANY_DIM),
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
                .filter_map(|p| read_part(&path, p, parts, ANY_DIM).err())
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
    let options =
        format!("--servers 2 --workers {workers} --tau {tau} --lambda {lambda} --iters {iters}");
    let (out, records) = train_l1lr(data, &json, Some(&png), &options);
    assert!(out.contains("final: objective"), "{out}");
    assert_plot(&png, &[[31, 119, 180]]);
    records
}

/// The file is an 800 × 500 PNG on which every one of `colours` (the series') is drawn, along
/// with some black (axes).
fn assert_plot(png: &Path, colours: &[[u8; 3]]) {
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (800, 500));
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    for &c in colours {
        assert!(count(c) > 100, "colour {c:?}: {} pixels", count(c));
    }
    assert!(count([0, 0, 0]) > 500, "no axes");
}

#[test]
fn distributed_l1lr_matches_the_single_process_solver() {
    let features = 600;
    let (dir, data) = scratch_with_data(
        "l1lr",
        GenSpec {
            rows: 3000,
            features,
            nnz_per_row: 10,
            seed: 11,
        },
    );
    let lambda = 2.0;
    let rows = read_part(&data, 0, 1, ANY_DIM).unwrap();
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

/// Trains with `--step <step>` and `--delta <delta>` (τ = 0, 2 workers, 1 server) and returns
/// the trace.
fn train_step(
    data: &Path,
    dir: &Path,
    (step, delta): (&str, f32),
    iters: usize,
) -> Vec<trace::Record> {
    let json = dir.join(format!("trace-{step}.jsonl"));
    let options =
        format!("--servers 1 --workers 2 --lambda 2 --step {step} --delta {delta} --iters {iters}");
    let (out, records) = train_l1lr(data, &json, None, &options);
    assert!(out.contains("final: objective"), "{out}");
    records
}

#[test]
fn line_search_and_newton_steps_descend_and_beat_the_bound_steps() {
    let (dir, data) = scratch_with_data(
        "l1lr-line",
        GenSpec {
            rows: 2000,
            features: 400,
            nnz_per_row: 12,
            seed: 5,
        },
    );
    let rows = read_part(&data, 0, 1, ANY_DIM).unwrap();
    let dim = rows.dim();
    let best = reference::objective(&rows, &reference::solve(&rows, dim, 2.0, 200), 2.0);
    let line = train_step(&data, &dir, ("line", 1.0), 10);
    let bound = train_step(&data, &dir, ("bound", 1.0), 10);
    let newton = train_step(&data, &dir, ("newton", 0.01), 10);
    let (l, b, n) = (
        line.last().unwrap(),
        bound.last().unwrap(),
        newton.last().unwrap(),
    );
    eprintln!(
        "after 10 iterations: line {} bound {} newton {} optimum {best}",
        l.objective, b.objective, n.objective
    );
    assert!(l.objective <= b.objective, "line {l:?} bound {b:?}");
    assert!(n.objective <= l.objective, "newton {n:?} line {l:?}");
    for trace in [&line, &newton] {
        // Every accepted step lowers the objective (the per-iteration records sum the shards'
        // losses in f32: allow for that rounding).
        assert!(trace
            .windows(2)
            .all(|p| p[1].objective <= p[0].objective * (1.0 + 1e-6)));
    }
    let gap = (l.objective - best) / best;
    assert!(
        gap.abs() < 1e-2,
        "line search after 10 iterations: gap {gap}"
    );
    // Each block's working set fits under the exact-Hessian cap here, so ten Newton steps
    // land on the optimum (to the reference solver's own accuracy).
    let gap = (n.objective - best) / best;
    assert!(gap.abs() < 1e-6, "Newton after 10 iterations: gap {gap}");
    let gap = (n.objective - best) / best;
    assert!(gap.abs() < 1e-3, "Newton after 10 iterations: gap {gap}");
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
                "--zoom",
                "3",
            ])
            .arg("--data")
            .arg(&patches)
            .arg("--save")
            .arg(dir.join("filters.txt"))
            .arg("--plot")
            .arg(dir.join("filters.png"))
            .env("FERROPS_LOG", "warn"),
    );
    // 24 filters of 4×4 values: a 5 × 5 grid of 12-pixel tiles with 2-pixel gaps.
    let saved = std::fs::read_to_string(dir.join("filters.txt")).unwrap();
    assert_eq!(saved.lines().count(), 24);
    assert!(saved.lines().all(|l| l.split_whitespace().count() == 16));
    let grid = image::open(dir.join("filters.png")).unwrap().to_luma8();
    assert_eq!(grid.dimensions(), (5 * 14 + 2, 5 * 14 + 2));
    // Each tile is scaled to its own largest |value|: every tile has a black or white pixel.
    for n in 0..24u32 {
        let (x0, y0) = (2 + (n % 5) * 14, 2 + (n / 5) * 14);
        let extreme = (0..12)
            .flat_map(|dy| (0..12).map(move |dx| (dx, dy)))
            .any(|(dx, dy)| matches!(grid.get_pixel(x0 + dx, y0 + dy).0[0], 0 | 255));
        assert!(extreme, "tile {n}");
    }
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

/// A smooth RGB test picture: horizontal and vertical ramps in two channels, a blob in the third.
fn picture(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 3.0);
        let blob = 255.0 * (-(dx * dx + dy * dy) / 200.0).exp();
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, blob as u8])
    })
}

#[test]
fn patches_read_png_and_jpeg() {
    use ferrops::internal::data::patches;
    let dir = scratch("images");
    let img = picture(48, 40);
    let (png, jpg) = (dir.join("a.png"), dir.join("b.jpg"));
    img.save_with_format(&png, image::ImageFormat::Png).unwrap();
    img.save_with_format(&jpg, image::ImageFormat::Jpeg)
        .unwrap();
    // A 16-bit greyscale PNG, with a file name that does not say what it is.
    let grey16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(20, 10, |x, _| {
        image::Luma([(x * 3000) as u16])
    });
    let odd = dir.join("grey16.data");
    grey16
        .save_with_format(&odd, image::ImageFormat::Png)
        .unwrap();

    // PNG is lossless: every pixel is the mean of its three channels.
    let g = patches::read_image(&png, patches::DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((g.width, g.height), (48, 40));
    for (i, p) in img.pixels().enumerate() {
        let want = p.0.iter().map(|&c| f32::from(c)).sum::<f32>() / 3.0 / 255.0;
        assert!((g.pixels[i] - want).abs() < 1e-5, "pixel {i}");
    }
    // JPEG is lossy, but a smooth picture survives closely.
    let j = patches::read_image(&jpg, patches::DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((j.width, j.height), (48, 40));
    let worst = g
        .pixels
        .iter()
        .zip(&j.pixels)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.08, "JPEG differs from PNG by up to {worst}");
    let o = patches::read_image(&odd, patches::DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((o.width, o.height), (20, 10));
    assert!((o.pixels[19] - 19.0 * 3000.0 / 65535.0).abs() < 1e-4);

    // The command takes PNG, JPEG and PGM together.
    let mut pgm = b"P5\n16 16\n255\n".to_vec();
    pgm.extend((0..256).map(|v| (v * 7 % 256) as u8));
    std::fs::write(dir.join("c.pgm"), pgm).unwrap();
    let out_file = dir.join("p.txt");
    let out = run_ok(
        ferrops()
            .args(["data", "patches", "--size", "6", "--count", "300", "--out"])
            .arg(&out_file)
            .args([&png, &jpg, &dir.join("c.pgm")]),
    );
    assert!(out.contains("300 whitened 6×6 patches"), "{out}");
    let cut = patches::read(&out_file).unwrap();
    assert_eq!(cut.len(), 300);
    assert!(cut.iter().all(|p| p.len() == 36));
    // Whitened: the average squared value per coordinate is near 1 (one direction, the
    // removed mean, has none, and ε shrinks the weakest ones a little).
    let power: f64 = cut
        .iter()
        .flatten()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / (300.0 * 36.0);
    assert!(power > 0.3 && power < 1.0, "mean square {power}");

    // --downscale 2 halves the picture: 6×6 patches still fit in 24×20.
    run_ok(
        ferrops()
            .args(["data", "patches", "--size", "6", "--count", "50"])
            .args(["--downscale", "2", "--out"])
            .arg(&out_file)
            .arg(&png),
    );
    assert_eq!(patches::read(&out_file).unwrap().len(), 50);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_images_are_clear_errors() {
    let dir = scratch("corrupt");
    let good = dir.join("good.png");
    picture(32, 32)
        .save_with_format(&good, image::ImageFormat::Png)
        .unwrap();
    let mut jpeg = Vec::new();
    picture(32, 32)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let png_bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // A PNG signature followed by garbage.
        (
            "garbage.png",
            [&png_bytes[..8], &[7u8; 40][..]].concat(),
            "PNG",
        ),
        // A PNG cut in the middle of its image data.
        ("cut.png", png_bytes[..png_bytes.len() / 2].to_vec(), "PNG"),
        // A JPEG cut after its headers.
        ("cut.jpg", jpeg[..jpeg.len() / 3].to_vec(), "JPEG"),
        // Not an image at all.
        ("notes.png", b"just some text\n".to_vec(), "not a PNG, JPEG"),
        ("empty.jpg", Vec::new(), "not a PNG, JPEG"),
    ];
    for (name, bytes, says) in cases {
        let bad = dir.join(name);
        std::fs::write(&bad, bytes).unwrap();
        let out = ferrops()
            .args(["data", "patches", "--size", "4", "--count", "10", "--out"])
            .arg(dir.join("p.txt"))
            .arg(&good)
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the error does not name the file: {stderr}"
        );
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let missing = ferrops()
        .args(["data", "patches", "--out"])
        .arg(dir.join("p.txt"))
        .arg(dir.join("missing.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.png"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains L1-LR once, with or without the KKT filter, and returns the trace.
fn train_kkt(data: &Path, dir: &Path, kkt: bool, tau: u32) -> Vec<trace::Record> {
    let json = dir.join(format!("kkt-{kkt}-{tau}.jsonl"));
    let filter = if kkt { "--kkt" } else { "" };
    let options = format!("--servers 2 --workers 2 --iters 30 --lambda 2 --tau {tau} {filter}");
    let (out, records) = train_l1lr(data, &json, None, &options);
    assert_eq!(out.contains("kkt: skipped"), kkt, "{out}");
    records
}

#[test]
fn kkt_filter_skips_coordinates_and_reaches_the_same_objective() {
    let (dir, data) = scratch_with_data(
        "kkt",
        GenSpec {
            rows: 4000,
            features: 3000,
            nnz_per_row: 10,
            seed: 21,
        },
    );
    let dim = read_part(&data, 0, 1, ANY_DIM).unwrap().dim();
    for tau in [0, 2] {
        let off = train_kkt(&data, &dir, false, tau);
        let on = train_kkt(&data, &dir, true, tau);
        let (a, b) = (off.last().unwrap(), on.last().unwrap());
        assert!(a.last && b.last);
        let diff = (b.objective - a.objective) / a.objective;
        eprintln!(
            "τ = {tau}: objective {} without KKT, {} with ({diff:+.2e}); skipped {} of {}; bytes sent {} vs {}",
            a.objective, b.objective, b.kkt_skipped, b.kkt_offered, a.bytes_sent, b.bytes_sent
        );
        // Skipped keys only miss updates until the next recheck, and a sparse solution keeps
        // most weights at zero where skipping changes nothing: the objectives agree closely.
        assert!(
            diff.abs() < 1e-3,
            "τ = {tau}: {} vs {}",
            b.objective,
            a.objective
        );
        assert_eq!((a.kkt_offered, a.kkt_skipped), (0.0, 0.0));
        // Each of the 2 workers is offered every feature in each of the 30 iterations.
        assert_eq!(b.kkt_offered, 2.0 * 30.0 * dim as f64);
        assert!(
            b.kkt_skipped > 0.3 * b.kkt_offered,
            "τ = {tau}: skipped only {} of {}",
            b.kkt_skipped,
            b.kkt_offered
        );
        assert!(
            b.bytes_sent < a.bytes_sent,
            "{} vs {}",
            b.bytes_sent,
            a.bytes_sent
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_command_draws_one_coloured_series_per_trace() {
    let dir = scratch("plot");
    let mut paths = Vec::new();
    for (n, scale) in [1.0, 2.0, 3.0].iter().enumerate() {
        let path = dir.join(format!("t{n}.jsonl"));
        let mut text = String::new();
        for i in 0..10 {
            let r = trace::Record {
                time: 0.1 * f64::from(i),
                iteration: i as usize + 1,
                objective: scale * 1000.0 / f64::from(i + 1),
                loss: 0.0,
                nnz: 0,
                accuracy: 0.5,
                bytes_sent: 0.0,
                bytes_received: 0.0,
                idle_seconds: 0.0,
                idle_fraction: 0.0,
                last: false,
                kkt_offered: 0.0,
                kkt_skipped: 0.0,
                stopped: None,
                tau: None,
            };
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let png = dir.join("p.png");
    run_ok(ferrops().args(["plot", "--out"]).arg(&png).args(&paths));
    assert_plot(&png, &[[31, 119, 180], [255, 127, 14], [44, 160, 44]]);
    // Without a font the plot is still written, without text, and says so.
    let bare = dir.join("bare.png");
    let out = ferrops()
        .args(["plot", "--out"])
        .arg(&bare)
        .args(&paths)
        .env("FERROPS_FONT", dir.join("no-such-font.ttf"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without text"));
    assert_plot(&bare, &[[31, 119, 180], [255, 127, 14], [44, 160, 44]]);
    // Text (tick labels, axis titles, legend) is dark: the plot with a font has much more dark
    // ink than the bare one, whose only dark pixels are its two axes.
    let dark = |p: &Path| {
        let img = image::open(p).unwrap().to_rgb8();
        img.pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count()
    };
    assert!(
        dark(&png) > dark(&bare) + 500,
        "{} vs {}",
        dark(&png),
        dark(&bare)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idle_against_tau_draws_one_line_per_folder_and_needs_tau() {
    let dir = scratch("plot-tau");
    let final_record = |tau: Option<u32>, idle: f64| trace::Record {
        time: 1.0,
        iteration: 15,
        objective: 1.0,
        loss: 1.0,
        nnz: 0,
        accuracy: 0.5,
        bytes_sent: 0.0,
        bytes_received: 0.0,
        idle_seconds: idle,
        idle_fraction: idle,
        last: true,
        kkt_offered: 0.0,
        kkt_skipped: 0.0,
        stopped: None,
        tau,
    };
    let mut paths = Vec::new();
    for (folder, scale) in [("plain", 0.5), ("applier", 0.3)] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        for tau in [0u32, 4, 16] {
            let path = dir.join(folder).join(format!("tau{tau}.jsonl"));
            let r = final_record(Some(tau), scale / f64::from(tau + 1));
            std::fs::write(&path, serde_json::to_string(&r).unwrap() + "\n").unwrap();
            paths.push(path);
        }
    }
    let png = dir.join("idle.png");
    run_ok(
        ferrops()
            .args(["plot", "--idle-against-tau", "--out"])
            .arg(&png)
            .args(&paths),
    );
    // Two folders, two lines: blue and orange, and no third colour.
    assert_plot(&png, &[[31, 119, 180], [255, 127, 14]]);
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.pixels().filter(|p| p.0 == [44, 160, 44]).count(), 0);
    // A trace that does not say its τ is named, not plotted at τ = 0.
    let old = dir.join("old.jsonl");
    std::fs::write(
        &old,
        serde_json::to_string(&final_record(None, 0.2)).unwrap(),
    )
    .unwrap();
    let refused = ferrops()
        .args(["plot", "--idle-against-tau", "--out"])
        .arg(dir.join("no.png"))
        .arg(&paths[0])
        .arg(&old)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("old.jsonl does not record τ"),
        "{err}"
    );
    assert!(!dir.join("no.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn injected_stragglers_slow_steps_but_not_the_arithmetic() {
    let (dir, data) = small_set("straggler", 5);
    let base = "--servers 1 --workers 2 --iters 6 --lambda 2 --tau 0 --step bound";
    let (_, plain) = train_l1lr(&data, &dir.join("plain.jsonl"), None, base);
    let slowed = format!("{base} --straggler 0.5,3");
    let (out, records) = train_l1lr(&data, &dir.join("slow.jsonl"), None, &slowed);
    // 6 iterations × 4 blocks per worker; about half of them slowed.
    for rank in 0..2 {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("worker {rank}: straggled in")))
            .unwrap_or_else(|| panic!("worker {rank} reports its straggling:\n{out}"));
        let slowed: u32 = line
            .split("straggled in ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(slowed > 0 && slowed < 24, "{line}");
        assert!(line.contains("of 24 block steps"), "{line}");
    }
    // τ = 0 is deterministic: a straggler changes when steps happen, not what they compute.
    let (a, b) = (plain.last().unwrap(), records.last().unwrap());
    assert_eq!(a.objective, b.objective);
    refuses_l1lr(
        &data,
        &["--step", "line", "--straggler", "0.5,3"],
        "--straggler applies to the bound step",
    );
}

#[test]
fn a_dedicated_applier_changes_who_waits_not_the_arithmetic() {
    let (dir, data) = small_set("applier", 6);
    let base = "--servers 1 --workers 2 --iters 6 --lambda 2 --tau 0 --step bound";
    let (_, plain) = train_l1lr(&data, &dir.join("plain.jsonl"), None, base);
    let applied = format!("{base} --applier --straggler 0.5,3");
    let (out, records) = train_l1lr(&data, &dir.join("applier.jsonl"), None, &applied);
    assert!(out.contains("2 workers and a dedicated applier"), "{out}");
    assert!(out.contains("applier: waited"), "{out}");
    // The two data workers (ranks 1 and 2) straggle; the applier (rank 0) computes nothing.
    for rank in 1..3 {
        assert!(
            out.contains(&format!("worker {rank}: straggled in")),
            "worker {rank} reports its straggling:\n{out}"
        );
    }
    assert!(!out.contains("worker 0: straggled in"), "{out}");
    // The same two shards sum into the same steps: τ = 0 gives the same objective exactly.
    let (a, b) = (plain.last().unwrap(), records.last().unwrap());
    assert_eq!(a.objective, b.objective);
    // Every record says its τ, for `plot --idle-against-tau`.
    assert!(records.iter().all(|r| r.tau == Some(0)));
    refuses_l1lr(
        &data,
        &["--step", "line", "--applier"],
        "--applier applies to the bound step",
    );
}

#[test]
fn line_search_traces_report_the_objective_after_each_iteration() {
    let (dir, data) = small_set("trace-now", 8);
    for step in ["line", "newton"] {
        let base = format!("--servers 1 --workers 2 --lambda 2 --delta 0.01 --step {step}");
        let (_, short) = train_l1lr(
            &data,
            &dir.join("short.jsonl"),
            None,
            &format!("{base} --iters 3"),
        );
        let (_, long) = train_l1lr(
            &data,
            &dir.join("long.jsonl"),
            None,
            &format!("{base} --iters 4"),
        );
        // The final record evaluates the weights after 3 iterations exactly; the longer run's
        // record of iteration 3 must say the same, not the objective one step earlier.
        let exact = short.last().unwrap();
        assert!(exact.last && exact.iteration == 3);
        let third = long.iter().find(|r| !r.last && r.iteration == 3).unwrap();
        let gap = (third.objective - exact.objective).abs() / exact.objective;
        assert!(
            gap < 1e-5,
            "{step}: iteration 3 records {} but the weights after it give {}",
            third.objective,
            exact.objective
        );
        assert!(
            (third.accuracy - exact.accuracy).abs() < 1e-6,
            "{step}: accuracy {} vs {}",
            third.accuracy,
            exact.accuracy
        );
    }
}
