//! `ferrops train lda`: runs the `lda` job on a local cluster. Worker 0 prints the
//! log-likelihood and held-out perplexity as it goes and each topic's top words at the end;
//! with `--plot` the driver draws the log-likelihood per token against seconds.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::plot::{LinePlot, Series};
use super::train::{absolute, ClusterSize};
use crate::jobs::lda::{LdaArgs, LdaRecord};
use crate::jobs::Job;

/// An LDA run on a local cluster; the flags of `ferrops train lda`.
#[derive(Clone, Debug, Args)]
pub struct LdaRun {
    /// What the `lda` job trains, and how.
    #[command(flatten)]
    pub settings: LdaArgs,

    /// The local cluster to train on.
    #[command(flatten)]
    pub cluster: ClusterSize,

    /// Plot the training log-likelihood per token against seconds as PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

/// Trains; returns the trace's records.
pub fn lda(run: &LdaRun) -> Result<Vec<LdaRecord>> {
    let s = &run.settings;
    s.validate()?;
    // The corpus is read (and refused, naming the file and line) before any process starts.
    let corpus = crate::lda::corpus::read_uci(&s.docword, &s.vocab)?;
    println!(
        "corpus: {} documents, {} words, {} tokens",
        corpus.docs.len(),
        corpus.vocab.len(),
        corpus.tokens()
    );
    let temporary = s.trace.is_none();
    let trace = match &s.trace {
        Some(p) => absolute(p)?,
        None => std::env::temp_dir().join(format!("ferrops-lda-{}.jsonl", std::process::id())),
    };
    let job = Job::Lda(LdaArgs {
        docword: absolute(&s.docword)?,
        vocab: absolute(&s.vocab)?,
        trace: Some(trace.clone()),
        ..s.clone()
    });
    let code = run.cluster.run(&job)?;
    let text = std::fs::read_to_string(&trace);
    if temporary {
        let _ = std::fs::remove_file(&trace);
    }
    if code != 0 {
        bail!("the lda job failed with exit code {code}");
    }
    let text = text.with_context(|| format!("reading the trace {}", trace.display()))?;
    let records = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<LdaRecord>, _>>()
        .with_context(|| format!("parsing the trace {}", trace.display()))?;
    if let Some(png) = &run.plot {
        let mut p = LinePlot::new(
            "LDA by distributed Gibbs sampling",
            "seconds",
            "log-likelihood per token",
        );
        p.series = vec![Series {
            label: format!("{} workers, τ = {}", run.cluster.workers, s.tau),
            points: records
                .iter()
                .map(|r| (r.seconds, r.loglik_per_token))
                .collect(),
        }];
        p.write_or_warn(png)?;
        println!("plot: {}", png.display());
    }
    Ok(records)
}
