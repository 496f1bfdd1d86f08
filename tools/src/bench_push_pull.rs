//! Push/pull benchmark (placeholder until its owner lands the real one).

/// Runs the push/pull benchmark described by `args`.
pub fn run(args: &crate::cli::PushPullArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("the push/pull benchmark is not built yet")
}
