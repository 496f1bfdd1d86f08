//! Flags of the application subcommands: `demo`, `data gen|info|patches|lda-corpus`,
//! `train l1lr|rica|lda` and `plot`. `train` subcommands parse straight into the runs `apps`
//! takes, which
//! flatten in the training flags shared with the worker jobs (the jobs' own structs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::apps::lda::LdaRun;
use crate::apps::train::{L1lrRun, RicaRun};
use crate::data::patches::DEFAULT_MAX_PIXELS;
use crate::data::{MaxDimArg, DEFAULT_MAX_DIM};
use crate::jobs::stop::StopArgs;
use crate::jobs::{delay, non_negative_number, positive_count, positive_number, positive_seconds};

/// `ferrops data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a synthetic sparse binary classification set (LIBSVM format, 1-based indices):
    /// power-law feature frequencies, labels from a planted sparse weight vector plus noise.
    Gen(GenArgs),

    /// Print rows, features (largest index + 1, and distinct), nonzeros and label balance.
    Info(InfoArgs),

    /// Cut random square patches from PNG, JPEG or binary PGM/PPM images (colour averaged to
    /// grey), remove each patch's mean, ZCA-whiten the set and write one patch per line (input
    /// of `train rica`).
    Patches(PatchesArgs),

    /// Turn plain-text files into a UCI bag-of-words corpus for `train lda`: each paragraph a
    /// document, lower-cased words of three letters or more, stop words and words in fewer
    /// than `--min-docs` documents or more than half of them dropped.
    LdaCorpus(LdaCorpusArgs),
}

/// Flags of `ferrops data lda-corpus`.
#[derive(Debug, Clone, Args)]
pub struct LdaCorpusArgs {
    /// Where to write `docword.txt` and `vocab.txt` (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Paragraphs shorter than this many characters are joined to the next.
    #[arg(long, value_name = "N", default_value_t = 400, value_parser = positive_count)]
    pub min_chars: usize,

    /// Words in fewer documents than this are dropped.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = positive_count)]
    pub min_docs: usize,

    /// Documents with fewer tokens than this, after dropping words, are dropped.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = positive_count)]
    pub min_doc_tokens: usize,

    /// Plain-text files (UTF-8; other bytes are replaced).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Flags of `ferrops data patches`.
#[derive(Debug, Clone, Args)]
pub struct PatchesArgs {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Patch side in pixels.
    #[arg(long, value_name = "P", default_value_t = 8, value_parser = positive_count)]
    pub size: usize,

    /// Number of patches.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = positive_count)]
    pub count: usize,

    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Shrink each image by this factor first (averaging F×F blocks): patches of a shrunk
    /// photograph hold more structure and less sensor noise.
    #[arg(long, value_name = "F", default_value_t = 1, value_parser = positive_count)]
    pub downscale: usize,

    /// ZCA regulariser ε added to the covariance eigenvalues (larger: smoother whitening).
    #[arg(long, value_name = "ε", value_parser = positive_number::<f64>, allow_hyphen_values = true,
        default_value_t = 1e-2)]
    pub epsilon: f64,

    /// Refuse an image of more pixels than this, before decoding it (decoding takes up to
    /// about 24 bytes per pixel).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,

    /// Images: PNG, JPEG, or binary PGM `P5` / PPM `P6` (8-bit).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// Flags of `ferrops data gen`.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Rows to write.
    #[arg(long, value_name = "N")]
    pub rows: u64,

    /// Feature indices are 1..=F.
    #[arg(long, value_name = "F", value_parser = clap::value_parser!(u64).range(1..))]
    pub features: u64,

    /// Feature draws per row (duplicates are merged, so rows have at most K nonzeros).
    #[arg(long, value_name = "K", value_parser = positive_count, default_value_t = 20)]
    pub nnz_per_row: usize,

    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

/// Flags of `ferrops data info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// A LIBSVM/svmlight file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// How wide the data may be.
    #[command(flatten)]
    pub max_dim: MaxDimArg,
}

/// `ferrops train` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// L1-regularised logistic regression, min Σ log(1+exp(−y·wᵀx)) + λ‖w‖₁, by delayed block
    /// proximal gradient with bounded delay τ, on a local cluster of S servers and W workers
    /// (worker r reads the r-th byte range of the file).
    L1lr(L1lrRun),

    /// Reconstruction ICA: an overcomplete filter bank W minimising λ Σ √((Wx)²+ε) +
    /// ½‖WᵀWx − x‖² over whitened patches (`data patches`), workers pushing minibatch gradients,
    /// servers applying AdaGrad.
    Rica(RicaRun),

    /// Latent Dirichlet allocation by distributed collapsed Gibbs sampling on a UCI
    /// bag-of-words corpus (`data lda-corpus` makes one from text): workers own documents,
    /// servers hold the word–topic counts; prints the log-likelihood per token, the held-out
    /// perplexity and each topic's top words.
    Lda(LdaRun),
}

/// Flags of `ferrops plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Output PNG.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,

    /// Draw each trace's final idle fraction against its τ instead (the paper's idle-time
    /// figure): one line per folder of traces, named after the folder, e.g.
    /// `applier/tau*.jsonl` beside `plain/tau*.jsonl`.
    #[arg(long)]
    pub idle_against_tau: bool,

    /// Traces written by `ferrops train l1lr --json`.
    #[arg(required = true, value_name = "TRACE.jsonl")]
    pub traces: Vec<PathBuf>,
}

/// Flags of `ferrops demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Servers in the demo cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub servers: usize,

    /// Workers in the demo cluster.
    #[arg(long, value_parser = positive_count, default_value_t = 2)]
    pub workers: usize,

    /// Replication factor R: servers holding each key range, 1 to S [default: 2, or 1 with a
    /// single server]
    #[arg(long, value_name = "R", value_parser = positive_count)]
    pub replication: Option<usize>,

    /// Iterations (passes over all feature blocks) at most; the run normally ends earlier, by
    /// --tol.
    #[arg(long, value_parser = positive_count, default_value_t = 100)]
    pub epochs: usize,

    /// Stop once the KKT violation, relative to the first iteration's, falls below ε.
    #[arg(long, value_name = "ε", value_parser = positive_number::<f64>, allow_hyphen_values = true,
        default_value_t = 0.1)]
    pub tol: f64,

    /// Stop after the first iteration that ends S seconds or more into training.
    #[arg(long, value_name = "S", value_parser = positive_seconds, allow_hyphen_values = true)]
    pub max_seconds: Option<f64>,

    /// Feature-space size (number of model weights, below --max-dim's default).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..DEFAULT_MAX_DIM),
        default_value_t = 100_000)]
    pub features: u64,

    /// Synthetic training examples (rows).
    #[arg(long, value_parser = positive_count, default_value_t = 200_000)]
    pub examples: usize,

    /// Seed of the synthetic data set (random when omitted).
    #[arg(long)]
    pub seed: Option<u64>,

    /// L1 penalty λ.
    #[arg(long, value_name = "λ", value_parser = non_negative_number::<f32>,
        allow_hyphen_values = true, default_value_t = 4.0)]
    pub lambda: f32,

    /// Maximal delay τ in blocks.
    #[arg(long, value_name = "τ", value_parser = delay, default_value_t = 2)]
    pub tau: u32,

    /// Where to write the plot of objective against seconds.
    #[arg(long, value_name = "FILE.png", default_value = "ferrops-demo.png")]
    pub plot: PathBuf,
}

impl DemoArgs {
    /// The demo these flags ask for.
    pub fn options(&self) -> crate::demo::DemoOptions {
        crate::demo::DemoOptions {
            servers: self.servers,
            workers: self.workers,
            replication: self.replication.unwrap_or(self.servers.min(2)),
            epochs: self.epochs,
            stop: StopArgs {
                tol: Some(self.tol),
                max_seconds: self.max_seconds,
            },
            features: self.features,
            examples: self.examples,
            seed: self.seed,
            lambda: self.lambda,
            tau: self.tau,
            plot: self.plot.clone(),
        }
    }
}
