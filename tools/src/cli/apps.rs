//! Flags of the application subcommands: `demo`, `data gen|info|patches`, `train l1lr|rica`
//! and `plot`. `train l1lr|rica` parse straight into the runs `apps::train` takes, which
//! flatten in the training flags shared with the worker jobs (the jobs' own structs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::apps::train::{L1lrRun, RicaRun};
use crate::data::patches::DEFAULT_MAX_PIXELS;
use crate::data::{MaxDimArg, DEFAULT_MAX_DIM};
use crate::jobs::{delay, non_negative_number, positive_count, positive_number};

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
}

/// Flags of `ferrops plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Output PNG.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,

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

    /// Iterations (passes over all feature blocks).
    #[arg(long, value_parser = positive_count, default_value_t = 25)]
    pub epochs: usize,

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
            features: self.features,
            examples: self.examples,
            seed: self.seed,
            lambda: self.lambda,
            tau: self.tau,
            plot: self.plot.clone(),
        }
    }
}
