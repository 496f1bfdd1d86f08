//! Worker job `lda`: latent Dirichlet allocation by distributed collapsed Gibbs sampling, as
//! the parameter server paper runs it. Workers own documents (training document i goes to
//! worker i mod W) and their tokens' topics; the servers hold the word–topic counts (table
//! `lda.words`, one row of K per word) and the topic totals (`lda.topics`), both summed. Each
//! iteration a worker pulls the rows of its own vocabulary and the totals under bounded delay
//! τ, resamples its tokens with SparseLDA (`internal::lda::sampler`), and pushes the count
//! changes of the rows that changed. Every `--eval-every` iterations the workers meet at a
//! barrier; worker 0 reads the whole table and reports the training log-likelihood per token
//! and the held-out perplexity of every `--heldout-every`-th document, which no worker trains
//! on; at the end it prints each topic's top words.
//!
//! Counts travel as f32: integer sums are exact while below 2^24, and the corpus reader refuses
//! corpora with more tokens than that, so no count can get there.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use ferrops_engine::config::WorkerConfig;
use ferrops_engine::{Consistency, TableId, TableSpec, Worker};
use ferrops_kernels::Rule;
use serde::Serialize;

use super::{delay, positive_count, positive_number};
use crate::lda::corpus::{self, Corpus};
use crate::lda::likelihood::{docs_part, perplexity, topic_word, words_part};
use crate::lda::sampler::Shard;
use crate::lda::Hyper;
use crate::synth::Rng;

/// The options of the `lda` job (and of `ferrops train lda`, which hands them on unchanged).
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize)]
pub struct LdaArgs {
    /// The corpus's `docword` file (UCI bag-of-words: D, W, NNZ, then `doc word count`).
    #[arg(long, value_name = "FILE")]
    pub docword: PathBuf,

    /// The corpus's `vocab` file (one word per line, word id i on line i).
    #[arg(long, value_name = "FILE")]
    pub vocab: PathBuf,

    /// Topics K.
    #[arg(long, value_name = "K", value_parser = positive_count, default_value_t = 20)]
    pub topics: usize,

    /// Dirichlet prior α on each document's topic mixture (smaller: documents of fewer
    /// topics).
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true,
        value_parser = positive_number::<f64>)]
    pub alpha: f64,

    /// Dirichlet prior β on each topic's word distribution (smaller: topics of fewer words).
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true,
        value_parser = positive_number::<f64>)]
    pub beta: f64,

    /// Gibbs sweeps over every training token.
    #[arg(long, value_parser = positive_count, default_value_t = 100)]
    pub iters: usize,

    /// Bounded delay τ in iterations.
    #[arg(long, value_parser = delay, default_value_t = 1)]
    pub tau: u32,

    /// Report the log-likelihood and perplexity every this many iterations (and after the
    /// last).
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub eval_every: usize,

    /// Hold out every N-th document for the perplexity (0: hold out none).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub heldout_every: usize,

    /// Top words printed per topic at the end.
    #[arg(long, value_parser = positive_count, default_value_t = 10)]
    pub top_words: usize,

    /// Seed of the initial topics and of the sampler.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Where worker 0 writes the trace, one JSON object per evaluation.
    #[arg(long = "json", value_name = "TRACE.jsonl")]
    pub trace: Option<PathBuf>,
}

impl LdaArgs {
    /// What clap cannot check alone.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.topics <= 1 << 16,
            "--topics {} is more than the 65536 topics a token's topic can name",
            self.topics
        );
        Ok(())
    }

    fn is_heldout(&self, doc: usize) -> bool {
        self.heldout_every > 0 && doc % self.heldout_every == self.heldout_every - 1
    }
}

/// One evaluation, as the trace records it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LdaRecord {
    pub iteration: usize,
    /// Seconds since the first iteration began.
    pub seconds: f64,
    /// Training log p(w, z) per token.
    pub loglik_per_token: f64,
    /// Held-out perplexity (0 without held-out documents).
    pub perplexity: f64,
    /// Tokens sampled per second of sampling, averaged over the workers.
    pub tokens_per_s_per_worker: f64,
}

/// The parameter-server tables of a run.
struct Tables {
    words: TableId,
    topics: TableId,
    stats: TableId,
}

/// Runs the job in this worker process.
pub fn run(cfg: &WorkerConfig, args: &LdaArgs) -> Result<()> {
    args.validate()?;
    let corpus = corpus::read_uci(&args.docword, &args.vocab)?;
    ensure!(
        !corpus.docs.is_empty() && !corpus.vocab.is_empty(),
        "{}: no documents",
        args.docword.display()
    );
    let w = Worker::connect(cfg).context("connecting to the job")?;
    let (rank, workers) = (w.rank(), w.num_workers());
    let h = Hyper {
        topics: args.topics,
        vocab: corpus.vocab.len(),
        alpha: args.alpha,
        beta: args.beta,
    };
    let (train, heldout): (Vec<_>, Vec<_>) = corpus
        .docs
        .iter()
        .enumerate()
        .partition(|(d, _)| !args.is_heldout(*d));
    let train_tokens: u64 = train
        .iter()
        .flat_map(|(_, d)| d.iter().map(|&(_, c)| u64::from(c)))
        .sum();
    let mine: Vec<&[(u32, u32)]> = train
        .iter()
        .skip(rank)
        .step_by(workers)
        .map(|(_, d)| d.as_slice())
        .collect();
    let mut rng = Rng::new(args.seed.wrapping_add(0x9E37_79B9 * rank as u64));
    let mut shard = Shard::new(&mine, h.topics, &mut rng);
    let key = word_key(h.vocab);
    let keys: Vec<u64> = shard.words().iter().map(|&w| key(w)).collect();
    let tables = declare(&w, &h, args.tau)?;
    if rank == 0 {
        println!(
            "lda: {} documents ({} held out), {} words, {} training tokens, {} topics, \
             {workers} workers, α = {}, β = {}, τ = {}",
            corpus.docs.len(),
            heldout.len(),
            h.vocab,
            train_tokens,
            h.topics,
            h.alpha,
            h.beta,
            args.tau
        );
    }
    // Every worker's starting counts are in before anyone samples against them.
    let mut c = shard.counts();
    if !keys.is_empty() {
        w.push(tables.words, &keys, &c.now.rows)?;
    }
    w.push(tables.topics, &[0], &c.now.totals)?;
    w.barrier()?;
    let mut trace = match (rank, &args.trace) {
        (0, Some(path)) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        _ => None,
    };
    let heldout: Vec<Vec<(u32, u32)>> = heldout.into_iter().map(|(_, d)| d.clone()).collect();
    let (mut changed_keys, mut changed_values) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let (mut sampling, mut sampled) = (0.0f64, 0u64);
    for iteration in 1..=args.iters {
        if !keys.is_empty() {
            w.pull_into(tables.words, &keys, &mut c.now.rows)?;
        }
        w.pull_into(tables.topics, &[0], &mut c.now.totals)?;
        let t = Instant::now();
        shard.sweep(&h, &mut c, &mut rng);
        sampling += t.elapsed().as_secs_f64();
        sampled += shard.tokens() as u64;
        changed_keys.clear();
        changed_values.clear();
        for (i, delta) in c.moved.rows.chunks(h.topics).enumerate() {
            if delta.iter().any(|&d| d != 0.0) {
                changed_keys.push(keys[i]);
                changed_values.extend_from_slice(delta);
            }
        }
        if !changed_keys.is_empty() {
            w.push(tables.words, &changed_keys, &changed_values)?;
        }
        w.push(tables.topics, &[0], &c.moved.totals)?;
        w.clock()?;
        if iteration % args.eval_every == 0 || iteration == args.iters {
            let (ndk, lens) = shard.doc_counts();
            let rate = sampled as f64 / sampling.max(1e-9) / workers as f64;
            let base = 2 * (iteration as u64);
            let mine_ll = docs_part(&h, ndk, lens) / train_tokens as f64;
            w.push(
                tables.stats,
                &[base, base + 1],
                &[mine_ll as f32, rate as f32],
            )?;
            w.barrier()?;
            let model = (rank == 0)
                .then(|| -> Result<_> {
                    let all: Vec<u64> = (0..h.vocab as u32).map(&key).collect();
                    let stats = w.pull(tables.stats, &[base, base + 1])?;
                    Ok((
                        w.pull(tables.words, &all)?,
                        w.pull(tables.topics, &[0])?,
                        stats,
                    ))
                })
                .transpose()?;
            // Nobody pushes again before worker 0 has read the counts of this iteration.
            w.barrier()?;
            if let Some((all_rows, all_totals, stats)) = model {
                let record = LdaRecord {
                    iteration,
                    seconds: started.elapsed().as_secs_f64(),
                    loglik_per_token: words_part(&h, &all_rows, &all_totals) / train_tokens as f64
                        + f64::from(stats[0]),
                    perplexity: if heldout.is_empty() {
                        0.0
                    } else {
                        let phi = topic_word(&h, &all_rows, &all_totals);
                        perplexity(&h, &phi, &heldout, 20, args.seed)
                    },
                    tokens_per_s_per_worker: f64::from(stats[1]),
                };
                report(&record, trace.as_mut())?;
                if iteration == args.iters {
                    print_topics(&h, &corpus, &all_rows, args.top_words);
                }
            }
        }
    }
    w.finish()?;
    Ok(())
}

/// A word's key: word ids spread evenly over the key space, so that every server holds a
/// share of the vocabulary.
fn word_key(vocab: usize) -> impl Fn(u32) -> u64 {
    let stride = u64::MAX / vocab.max(1) as u64;
    move |w| u64::from(w) * stride
}

fn declare(w: &Worker, h: &Hyper, tau: u32) -> Result<Tables> {
    let counts = |name: &str| {
        TableSpec::new(name, h.topics as u32)
            .rule(Rule::Sum)
            .consistency(Consistency::BoundedDelay(tau))
    };
    Ok(Tables {
        words: w.declare_table(counts("lda.words"))?,
        topics: w.declare_table(counts("lda.topics"))?,
        stats: w.declare_table(TableSpec::new("lda.stats", 1).rule(Rule::Sum))?,
    })
}

fn report(r: &LdaRecord, trace: Option<&mut impl Write>) -> Result<()> {
    println!(
        "iteration {:>4}  log-likelihood/token {:.4}  held-out perplexity {:.1}  \
         {:.2} M tokens/s per worker  ({:.2} s)",
        r.iteration,
        r.loglik_per_token,
        r.perplexity,
        r.tokens_per_s_per_worker / 1e6,
        r.seconds
    );
    if let Some(t) = trace {
        serde_json::to_writer(&mut *t, r)?;
        writeln!(t)?;
        t.flush()?;
    }
    Ok(())
}

/// Prints each topic's most probable words.
fn print_topics(h: &Hyper, corpus: &Corpus, rows: &[f32], top: usize) {
    for t in 0..h.topics {
        let mut words: Vec<(f32, usize)> = (0..h.vocab)
            .map(|w| (rows[w * h.topics + t], w))
            .filter(|&(n, _)| n > 0.0)
            .collect();
        words.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let list: Vec<&str> = words
            .iter()
            .take(top)
            .map(|&(_, w)| corpus.vocab[w].as_str())
            .collect();
        println!("topic {t:>3}: {}", list.join(" "));
    }
}
