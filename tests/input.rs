//! Input validation before any work: every command's and job's numeric flags refuse NaN,
//! infinities, negative and out-of-range values as usage errors naming the flag (no data file
//! is read, no cluster is started: the files named in those tests do not exist); the LIBSVM
//! reader bounds the dimension and caps the tokens it echoes; `data patches` refuses images
//! above its pixel budget before decoding them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn ferrops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrops"))
        .args(args)
        .env_remove("FERROPS_CONFIG")
        .env("FERROPS_LOG", "warn")
        // For `worker`: a complete configuration whose scheduler nobody listens on, so only
        // the job's arguments can stop it before it tries to connect.
        .env("FERROPS_SCHEDULER", "127.0.0.1:9")
        .env("FERROPS_NUM_SERVERS", "1")
        .env("FERROPS_NUM_WORKERS", "1")
        .env("FERROPS_SECRET", "input-test-secret")
        .env("FERROPS_CONNECT_TIMEOUT_MS", "60000")
        .output()
        .unwrap()
}

/// Fails unless `args` is refused with clap's "invalid value" naming `flag`, exit code 2.
fn assert_refused(args: &[&str], flag: &str) {
    let out = ferrops(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value") && stderr.contains(flag),
        "{args:?}: expected an invalid value for {flag}, got {:?}: {stderr}",
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
}

/// Fails unless `command` followed by each `(flag, value)` is refused naming the flag.
fn assert_each_refused(command: &[&str], cases: &[(&str, &str)]) {
    for &(flag, value) in cases {
        let mut args = command.to_vec();
        args.extend([flag, value]);
        assert_refused(&args, flag);
    }
}

const MISSING: &str = "/nonexistent/ferrops-flags-test";

#[test]
fn train_l1lr_refuses_bad_numbers() {
    assert_each_refused(
        &["train", "l1lr", "--data", MISSING],
        &[
            ("--tau", "4294967295"),
            ("--lambda", "inf"),
            ("--lambda", "nan"),
            ("--delta", "-1"),
            ("--tol", "0"),
            ("--tol", "nan"),
            ("--max-seconds", "0"),
            ("--max-seconds", "-1"),
            ("--iters", "0"),
            ("--max-dim", "0"),
            ("--dim", "0"),
            ("--straggler", "0.5"),
            ("--straggler", "0,4"),
            ("--straggler", "0.5,0.5"),
            ("--straggler", "nan,2"),
        ],
    );
}

#[test]
fn train_rica_refuses_bad_numbers() {
    assert_each_refused(
        &["train", "rica", "--data", MISSING],
        &[
            ("--tau", "4294967295"),
            ("--lambda", "-1"),
            ("--lr", "nan"),
            ("--lr", "0"),
            ("--init", "inf"),
            ("--epochs", "0"),
            ("--tol", "-1e-3"),
            ("--tol", "inf"),
            ("--max-seconds", "nan"),
        ],
    );
}

#[test]
fn demo_refuses_bad_numbers() {
    assert_each_refused(
        &["demo"],
        &[
            ("--tau", "4294967295"),
            ("--lambda", "nan"),
            ("--epochs", "0"),
            ("--features", "0"),
            ("--examples", "0"),
            ("--tol", "0"),
            ("--max-seconds", "0"),
        ],
    );
}

#[test]
fn bench_refuses_bad_numbers() {
    assert_each_refused(
        &["bench", "reducers"],
        &[
            ("--l1", "nan"),
            ("--theta", "-1"),
            ("--changed-theta", "inf"),
            ("--kkt-margin", "2"),
            ("--kkt-recheck", "0"),
            ("--epochs", "0"),
        ],
    );
    assert_each_refused(
        &["bench", "push-pull"],
        &[("--keys", "0"), ("--iters", "0"), ("--val-len", "0")],
    );
    assert_refused(&["bench", "kernels", "--elements", "0"], "--elements");
}

#[test]
fn data_commands_refuse_bad_numbers() {
    for (flag, value) in [
        ("--epsilon", "nan"),
        ("--epsilon", "0"),
        ("--max-pixels", "0"),
    ] {
        assert_refused(
            &["data", "patches", "--out", MISSING, flag, value, MISSING],
            flag,
        );
    }
    assert_refused(
        &[
            "data",
            "gen",
            "--out",
            MISSING,
            "--rows",
            "1",
            "--features",
            "1",
            "--nnz-per-row",
            "0",
        ],
        "--nnz-per-row",
    );
    assert_refused(&["data", "info", "--max-dim", "0", MISSING], "--max-dim");
}

#[test]
fn local_refuses_bad_seconds() {
    for (flag, value) in [
        ("--startup-timeout", "nan"),
        ("--startup-timeout", "inf"),
        ("--shutdown-grace", "-1"),
    ] {
        let args = [
            "local",
            "--servers",
            "1",
            "--workers",
            "1",
            flag,
            value,
            "--",
            "true",
        ];
        assert_refused(&args, flag);
    }
}

#[test]
fn worker_jobs_refuse_bad_numbers_before_connecting() {
    for (job, flag, value) in [
        ("logreg", "--tau", "4294967295"),
        ("logreg", "--lr", "nan"),
        ("logreg", "--kkt-margin", "-0.5"),
        ("logreg", "--batch", "0"),
        ("rica", "--epsilon", "0"),
        ("l1lr", "--lambda", "inf"),
    ] {
        let mut args = vec!["worker", "--job", job, "--", flag, value];
        if job != "logreg" {
            args.extend(["--data", MISSING]);
        }
        if job == "l1lr" {
            args.extend(["--dim", "10"]);
        }
        let out = ferrops(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("connect"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

// ---- data ----

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrops-input-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrops"))
        .args(args)
        .current_dir(dir)
        .env_remove("FERROPS_CONFIG")
        .env("FERROPS_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_huge_feature_index_is_refused_with_file_line_and_limit() {
    let dir = scratch("huge-index");
    std::fs::write(
        dir.join("d.svm"),
        "+1 1:1 3:1\n-1 2:1 4294967295:1\n+1 2:1\n",
    )
    .unwrap();
    let (code, stderr) = run_in(&dir, &["data", "info", "d.svm"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("d.svm:2") && stderr.contains("4294967295") && stderr.contains("--max-dim"),
        "{stderr}"
    );
    // Training stops at the same line before any cluster starts (and before any worker sizes
    // its arrays by the index), with --max-dim or with the --dim the user gave.
    let started = Instant::now();
    let (code, stderr) = run_in(
        &dir,
        &[
            "train",
            "l1lr",
            "--data",
            "d.svm",
            "--servers",
            "1",
            "--workers",
            "1",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("d.svm:2") && stderr.contains("--max-dim"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let (code, stderr) = run_in(&dir, &["train", "l1lr", "--data", "d.svm", "--dim", "4"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("d.svm:2") && stderr.contains("--dim 4"),
        "{stderr}"
    );
    // A limit the data fits: info reads the whole file.
    std::fs::write(dir.join("ok.svm"), "+1 1:1 3:1\n-1 2:1 9:1\n").unwrap();
    let (code, stderr) = run_in(&dir, &["data", "info", "--max-dim", "10", "ok.svm"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run_in(&dir, &["data", "info", "--max-dim", "9", "ok.svm"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("ok.svm:2") && stderr.contains("--max-dim 9"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tokens_are_echoed_only_in_part() {
    let dir = scratch("long-token");
    let label = "y".repeat(4 << 20);
    let feature = format!("1:{}", "7".repeat(4 << 20));
    std::fs::write(dir.join("label.svm"), format!("+1 1:1\n{label} 2:1\n")).unwrap();
    std::fs::write(dir.join("feature.svm"), format!("+1 {feature}\n")).unwrap();
    for (file, line, bytes) in [
        ("label.svm", 2, label.len()),
        ("feature.svm", 1, feature.len()),
    ] {
        let (code, stderr) = run_in(&dir, &["data", "info", file]);
        assert_eq!(code, Some(1), "{}", &stderr[..stderr.len().min(500)]);
        assert!(
            stderr.len() < 1000,
            "{} bytes of error for {file}",
            stderr.len()
        );
        assert!(stderr.contains(&format!("{file}:{line}")), "{stderr}");
        let length = format!("({bytes} bytes)");
        assert!(
            stderr.contains(&length),
            "says how long the token is: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CRC-32 of PNG chunks (IEEE, reflected).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `width` × `height` 8-bit RGB pixels, with only a few bytes of
/// image data: a decoder that trusts the header first allocates the whole image.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        let body = [kind, data].concat();
        c.extend_from_slice(&body);
        c.extend_from_slice(&crc32(&body).to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

#[test]
fn images_above_the_pixel_budget_are_refused_before_decoding() {
    let dir = scratch("pixels");
    std::fs::write(dir.join("bomb.png"), png_claiming(60_000, 60_000)).unwrap();
    let (code, stderr) = run_in(&dir, &["data", "patches", "--out", "p.txt", "bomb.png"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("bomb.png")
            && stderr.contains("3600000000 pixels")
            && stderr.contains("--max-pixels"),
        "{stderr}"
    );
    // A real image: refused under a smaller budget, read under the default.
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 9]));
    img.save(dir.join("small.png")).unwrap();
    let args = [
        "data", "patches", "--out", "p.txt", "--count", "10", "--size", "4",
    ];
    let (code, stderr) = run_in(
        &dir,
        &[&args[..], &["--max-pixels", "3000", "small.png"]].concat(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("3072 pixels") && stderr.contains("--max-pixels 3000"),
        "{stderr}"
    );
    let (code, stderr) = run_in(&dir, &[&args[..], &["small.png"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    // Binary PGM headers are held to the same budget.
    std::fs::write(dir.join("big.pgm"), b"P5 100000 100000 255\n\0\0\0").unwrap();
    let (code, stderr) = run_in(&dir, &["data", "patches", "--out", "p.txt", "big.pgm"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("10000000000 pixels"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
