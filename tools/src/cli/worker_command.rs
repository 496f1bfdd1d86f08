//! The flags `ferrops local` and `ferrops slurm` share: the worker command, and the binary that
//! runs the scheduler and servers (and the worker command when it names `ferrops`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

/// What the launcher runs: flattened last into a launcher's flags, since COMMAND takes every
/// argument after it.
#[derive(Debug, Clone, Args)]
pub struct WorkerCommand {
    /// Run the scheduler and servers from this ferrops binary instead of the running one.
    #[arg(long, value_name = "PATH")]
    pub node_exe: Option<PathBuf>,

    /// Worker command and its arguments (a program named `ferrops` is the binary that runs the
    /// scheduler and servers).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}
