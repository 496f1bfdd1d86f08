//! End-to-end demo (placeholder until its owner lands the real one).

/// Runs the demo described by `args`.
pub fn run(args: &crate::cli::DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("the demo is not built yet")
}
