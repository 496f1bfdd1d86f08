//! `ferrops train lda` end to end: topics recovered from a corpus drawn from known topics
//! (Griffiths and Steyvers' bars) by a real multi-process cluster, the distributed run's
//! log-likelihood against the single-process reference sampler, corpora refused before any
//! process starts, and `data lda-corpus` turning text into a corpus the job reads.

mod common;

use std::path::Path;

use ferrops::internal::lda::corpus::{self, bars, synthetic, Corpus};
use ferrops::internal::lda::likelihood::{docs_part, words_part};
use ferrops::internal::lda::sampler::Shard;
use ferrops::internal::lda::Hyper;
use ferrops::internal::synth::Rng;

use common::{ferrops_without_cluster_env, run_ok, Scratch};

const SIDE: usize = 4;
const TOPICS: usize = 2 * SIDE;
const ITERS: usize = 120;
const HELDOUT_EVERY: usize = 10;

fn bars_corpus() -> Corpus {
    synthetic(&bars(SIDE), 400, 40, 0.2, 7)
}

fn write_corpus(dir: &Path, c: &Corpus) {
    let mut docword = std::fs::File::create(dir.join("docword.txt")).unwrap();
    let mut vocab = std::fs::File::create(dir.join("vocab.txt")).unwrap();
    corpus::write_uci(c, &mut docword, &mut vocab).unwrap();
}

/// Runs `train lda` on the corpus in `dir` with `workers` workers; returns its output and the
/// last record of the trace.
fn train(dir: &Path, workers: usize) -> (String, serde_json::Value) {
    let trace = dir.join("trace.jsonl");
    let out = run_ok(
        ferrops_without_cluster_env()
            .args(["train", "lda", "--servers", "2", "--workers"])
            .arg(workers.to_string())
            .arg("--docword")
            .arg(dir.join("docword.txt"))
            .arg("--vocab")
            .arg(dir.join("vocab.txt"))
            .args([
                "--topics",
                &TOPICS.to_string(),
                "--iters",
                &ITERS.to_string(),
            ])
            .args([
                "--eval-every",
                "40",
                "--top-words",
                &SIDE.to_string(),
                "--tau",
                "1",
            ])
            .args(["--heldout-every", &HELDOUT_EVERY.to_string(), "--json"])
            .arg(&trace)
            .env("FERROPS_LOG", "warn"),
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let last = text.lines().last().expect("a trace record");
    (out, serde_json::from_str(last).unwrap())
}

/// The word lists of the `topic N: w w w` lines of a run's output.
fn printed_topics(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .filter_map(|l| l.split_once("topic ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(':'))
        .filter(|(n, _)| n.trim().parse::<usize>().is_ok())
        .map(|(_, words)| words.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn a_cluster_recovers_the_topics_the_corpus_was_drawn_from() {
    let scratch = Scratch::new("lda", "bars");
    write_corpus(&scratch.dir, &bars_corpus());
    let (out, last) = train(&scratch.dir, 2);
    let mut found: Vec<Vec<String>> = printed_topics(&out);
    assert_eq!(found.len(), TOPICS, "{out}");
    found.iter_mut().for_each(|t| t.sort());
    let truth = bars(SIDE);
    let recovered = truth
        .iter()
        .filter(|bar| {
            let mut words: Vec<String> = (0..bar.len())
                .filter(|&w| bar[w] > 0.0)
                .map(|w| format!("w{w}"))
                .collect();
            words.sort();
            found.contains(&words)
        })
        .count();
    // Collapsed Gibbs sampling from a random start lands now and then in a local mode where
    // two topics share one bar and two others share the remaining two bars between them:
    // 6 of 8. Measured over 130 runs of this test (over shared memory and TCP): all 8 in
    // 87%, 7 in 7%, 6 in 6%, never fewer. Two such events in one run (4 of 8) would come
    // about once in 300 runs; a sampler that loses or doubles counts finds no bar at all.
    assert!(
        recovered >= TOPICS - 2,
        "{recovered} of {TOPICS} bars found:\n{out}"
    );
    let perplexity = last["perplexity"].as_f64().unwrap();
    // A document mixes few bars of 4 words each: far below the 16 of a uniform guess.
    assert!(perplexity > 1.0 && perplexity < 10.0, "{last}");
    assert!(last["tokens_per_s_per_worker"].as_f64().unwrap() > 0.0);
}

#[test]
fn two_workers_reach_the_likelihood_of_the_single_process_reference_sampler() {
    let scratch = Scratch::new("lda", "reference");
    let c = bars_corpus();
    write_corpus(&scratch.dir, &c);
    let distributed = |dir: &Path| train(dir, 2).1["loglik_per_token"].as_f64().unwrap();
    // The reference: one shard holding every training document, the plain O(K) sampler.
    let h = Hyper {
        topics: TOPICS,
        vocab: c.vocab.len(),
        alpha: 0.1,
        beta: 0.01,
    };
    let docs: Vec<&[(u32, u32)]> = c
        .docs
        .iter()
        .enumerate()
        .filter(|(d, _)| d % HELDOUT_EVERY != HELDOUT_EVERY - 1)
        .map(|(_, d)| d.as_slice())
        .collect();
    let mut rng = Rng::new(3);
    let mut shard = Shard::new(&docs, TOPICS, &mut rng);
    let mut c = shard.counts();
    for _ in 0..ITERS {
        shard.sweep_dense(&h, &mut c, &mut rng);
    }
    let (rows, totals) = (c.now.rows, c.now.totals);
    let mut full = vec![0f32; h.vocab * TOPICS];
    for (i, &w) in shard.words().iter().enumerate() {
        let w = w as usize;
        full[w * TOPICS..(w + 1) * TOPICS].copy_from_slice(&rows[i * TOPICS..(i + 1) * TOPICS]);
    }
    let (ndk, lens) = shard.doc_counts();
    let reference =
        (words_part(&h, &full, &totals) + docs_part(&h, ndk, lens)) / shard.tokens() as f64;
    let close = |d: f64| (d - reference).abs() < 0.03 * reference.abs();
    // A Gibbs chain can settle in a poorer mode (two bars' topics merged) for a while; with
    // τ = 1 which counts a worker samples from depends on timing, so on a loaded machine one
    // run in many does. A second run must not.
    let first = distributed(&scratch.dir);
    if close(first) {
        return;
    }
    let second = distributed(&scratch.dir);
    assert!(
        close(second),
        "distributed {first}, then {second}, vs reference {reference} per token"
    );
}

#[test]
fn a_bad_corpus_is_refused_naming_file_and_line_before_any_process_starts() {
    let scratch = Scratch::new("lda", "bad");
    std::fs::write(scratch.dir.join("docword.txt"), "1\n2\n1\n1 3 1\n").unwrap();
    std::fs::write(scratch.dir.join("vocab.txt"), "a\nb\n").unwrap();
    let out = ferrops_without_cluster_env()
        .args(["train", "lda", "--docword"])
        .arg(scratch.dir.join("docword.txt"))
        .arg("--vocab")
        .arg(scratch.dir.join("vocab.txt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stderr.contains("docword.txt line 4") && stderr.contains("word id 3 is not in 1..=2"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("scheduler") && !stderr.contains("scheduler"),
        "{stdout}{stderr}"
    );
    let out = ferrops_without_cluster_env()
        .args([
            "train",
            "lda",
            "--topics",
            "70000",
            "--docword",
            "d",
            "--vocab",
            "v",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--topics 70000"));
}

#[test]
fn text_becomes_a_corpus_the_job_reads() {
    let scratch = Scratch::new("lda", "text");
    let mut text = String::new();
    for i in 0..30 {
        let (a, b) = if i % 2 == 0 {
            (
                "kernel memory paging scheduler threads",
                "interrupt driver device",
            )
        } else {
            (
                "matrix vector eigenvalue solver",
                "gradient descent convergence",
            )
        };
        text.push_str(&format!("{a} {b} {a}\n{b} {a} {b}\n\n"));
    }
    let file = scratch.dir.join("book.txt");
    std::fs::write(&file, text).unwrap();
    let out_dir = scratch.dir.join("corpus");
    let out = run_ok(
        ferrops_without_cluster_env()
            .args(["data", "lda-corpus", "--min-chars", "10", "--min-docs", "2"])
            .args(["--min-doc-tokens", "5", "--out"])
            .arg(&out_dir)
            .arg(&file),
    );
    assert!(out.contains("30 documents"), "{out}");
    let c = corpus::read_uci(&out_dir.join("docword.txt"), &out_dir.join("vocab.txt")).unwrap();
    assert_eq!(c.docs.len(), 30);
    assert!(c.vocab.contains(&"eigenvalue".to_string()));
    let (out, _) = {
        let trace = scratch.dir.join("t.jsonl");
        let out = run_ok(
            ferrops_without_cluster_env()
                .args([
                    "train",
                    "lda",
                    "--servers",
                    "1",
                    "--workers",
                    "2",
                    "--topics",
                    "2",
                ])
                .args([
                    "--iters",
                    "30",
                    "--top-words",
                    "3",
                    "--heldout-every",
                    "0",
                    "--docword",
                ])
                .arg(out_dir.join("docword.txt"))
                .arg("--vocab")
                .arg(out_dir.join("vocab.txt"))
                .arg("--json")
                .arg(&trace)
                .env("FERROPS_LOG", "warn"),
        );
        (out, trace)
    };
    assert_eq!(printed_topics(&out).len(), 2, "{out}");
}
