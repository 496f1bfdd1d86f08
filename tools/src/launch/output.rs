//! Output forwarding: copies the children's stdout and stderr to the launcher's, line by line,
//! each line labelled `[worker 1] `, and picks the scheduler's address announcement out of its
//! stdout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ChildStdout;
use std::sync::mpsc;

use super::ANNOUNCE_PREFIX;

/// Which of the launcher's streams a child's pipe is copied to.
#[derive(Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// Copies `pipe` line by line to the launcher's stream, each line prefixed with `[prefix] `.
pub(super) fn forward_lines(pipe: impl Read, prefix: Option<String>, to: Stream) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => write_line(&line, prefix.as_deref(), to),
        }
    }
}

/// Like [`forward_lines`] for the scheduler's stdout, but its first `FERROPS_SCHEDULER=` line is
/// sent to `announcements` instead of being printed.
pub(super) fn forward_scheduler_stdout(
    stdout: ChildStdout,
    prefix: Option<String>,
    announcements: mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(addr) = line.trim_end().strip_prefix(ANNOUNCE_PREFIX) {
            let _ = announcements.send(addr.to_string());
            break;
        }
        write_line(line.as_bytes(), prefix.as_deref(), Stream::Stdout);
    }
    forward_lines(reader, prefix, Stream::Stdout);
}

pub(super) fn write_line(line: &[u8], prefix: Option<&str>, to: Stream) {
    let mut out = Vec::with_capacity(line.len() + 16);
    if let Some(prefix) = prefix {
        out.extend_from_slice(format!("[{prefix}] ").as_bytes());
    }
    out.extend_from_slice(line);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    // Output errors (a closed terminal) must not stop the draining that keeps children unblocked.
    let _ = match to {
        Stream::Stdout => io::stdout().lock().write_all(&out),
        Stream::Stderr => io::stderr().lock().write_all(&out),
    };
}
