//! Helpers shared by the end-to-end test crates in this folder (each includes it with
//! `mod common;`): running the real `ferrops` binary and insisting that it succeeds.

use std::process::Command;

/// Runs `cmd` to completion, fails the test with its status, stdout and stderr unless it
/// exits successfully, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("ferrops runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
