//! Tests of the l1lr job's arguments.

use super::*;

#[test]
fn arguments_round_trip_and_reject_bad_flags() {
    let args = L1lrArgs {
        settings: L1lrSettings {
            data: "x.svm".into(),
            lambda: 1.0,
            tau: 3,
            blocks: 8,
            iters: 20,
            delta: 1.0,
            window: Some(2),
            kkt: true,
            step: Step::Bound,
            straggler: None,
            applier: false,
            stop: crate::jobs::stop::StopArgs {
                tol: Some(0.05),
                max_seconds: Some(2.5),
            },
            checkpoints: crate::jobs::checkpoints::CheckpointFlags {
                checkpoint_every: Some(4),
                checkpoint_dir: Some("ckpt".into()),
            },
        },
        dim: 10,
        trace: Some("t.jsonl".into()),
        lines: false,
    };
    let job = crate::jobs::Job::L1lr(args.clone());
    let parsed = crate::jobs::Job::parse("l1lr", &job.args()).unwrap();
    assert_eq!(parsed, job);
    let parse = |a: &[&str]| {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        crate::jobs::Job::parse("l1lr", &a)
    };
    assert!(parse(&["--data", "x", "--dim", "3", "--bogus", "1"]).is_err());
    assert!(parse(&["--data", "x"]).is_err()); // no --dim
    let Ok(crate::jobs::Job::L1lr(defaults)) = parse(&["--data", "x", "--dim", "3"]) else {
        panic!("l1lr parses")
    };
    assert_eq!((defaults.settings.blocks, defaults.lines), (8, true));
    assert_eq!(defaults.settings.checkpoints.checkpoint_every, None);
    // The checkpoint flags come as a pair, N at least 1, and not with the KKT filter.
    let base = ["--data", "x", "--dim", "3"];
    for bad in [
        &["--checkpoint-every", "2"][..],
        &["--checkpoint-dir", "d"],
        &["--checkpoint-every", "0", "--checkpoint-dir", "d"],
    ] {
        let err = parse(&[&base[..], bad].concat()).unwrap_err().to_string();
        assert!(err.contains("--checkpoint"), "{bad:?}: {err}");
    }
    assert!(args.validate().unwrap_err().to_string().contains("--kkt"));
    let mut without_kkt = args;
    without_kkt.settings.kkt = false;
    without_kkt.validate().unwrap();
}
