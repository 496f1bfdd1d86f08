//! `ferrops demo`: a whole local cluster (scheduler, servers and workers as separate processes)
//! training sparse logistic regression on generated data, printing the loss as it falls.

use anyhow::{bail, Result};

use crate::cli::DemoArgs;
use crate::jobs::LogRegOptions;
use crate::launch::{run_local, LocalSpec};

/// Runs the demo; fails if any process of the job fails.
pub fn run(args: &DemoArgs) -> Result<()> {
    let options = LogRegOptions {
        features: args.features,
        examples: args.examples,
        epochs: args.epochs,
        seed: args.seed.unwrap_or(1),
        ..LogRegOptions::default()
    };
    println!(
        "ferrops demo: {} servers and {} workers on loopback, sparse logistic regression",
        args.servers, args.workers
    );
    if std::env::var_os("FERROPS_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The demo shows the training output; the roles' start-up chatter stays quiet.
        std::env::set_var("FERROPS_LOG", "warn");
    }
    let mut spec = LocalSpec::new(args.servers, args.workers)?;
    spec.command = ["ferrops", "worker", "--job", "logreg", "--"]
        .into_iter()
        .map(String::from)
        .chain(options.to_args())
        .map(Into::into)
        .collect();
    let code = run_local(&spec)?;
    if code != 0 {
        bail!("the demo job failed with exit code {code}");
    }
    Ok(())
}
