//! One node of a job, started inside its slot's network namespace (`ip netns exec`, which
//! execs the program, so the pid is the node's own) with its output in a log file, in its own
//! process group and killed with the harness. Signals go to the node's group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;

use crate::launch::process::{die_with_parent, signal_group};

/// A running (or exited) node.
pub struct Node {
    /// `server 3`, `worker 0`, `scheduler`: the harness's name for it.
    pub label: String,
    /// The network slot it runs in.
    pub slot: usize,
    pub log: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Node {
    /// Starts `exe ARGS` in `namespace` with `env` (after removing every `FERROPS_*` variable
    /// of the harness), its stdout and stderr appended to `log`.
    pub fn start(
        label: String,
        slot: usize,
        namespace: &str,
        exe: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
    ) -> Result<Node> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("sharing a log file")?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (name, _) in std::env::vars_os().filter_map(|(n, v)| Some((n.into_string().ok()?, v))) {
            if name.starts_with("FERROPS_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {label} in {namespace}"))?;
        Ok(Node {
            label,
            slot,
            log,
            child,
            exited: None,
        })
    }

    /// The exit status, once it has exited.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.poll().is_none()
    }

    /// Sends `signal` to its process group (nothing once it has exited).
    pub fn signal(&mut self, signal: i32) {
        if self.alive() {
            signal_group(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits up to `within` for it to exit by itself.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.poll()
    }

    /// Kills it (SIGKILL; a stopped process dies too) and reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
    }

    /// Its log so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
