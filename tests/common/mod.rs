//! Helpers shared by the end-to-end test crates in this folder (each includes it with
//! `mod common;`): running the real `ferrops` binary and insisting that it succeeds, scratch
//! directories, reading the scheduler's announce line and polling until something happens.

// Each test crate uses only some of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

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

/// A node of a job a test assembles by hand: the cluster secret `secret`, short heartbeats
/// (200 ms, declared dead after 1.5 s), info logging, no standard input, output piped.
pub fn ferrops_node(secret: &str) -> Command {
    let mut c = ferrops_without_cluster_env();
    c.env("FERROPS_SECRET", secret)
        .env("FERROPS_LOG", "info")
        .env("FERROPS_HEARTBEAT_INTERVAL_MS", "200")
        .env("FERROPS_HEARTBEAT_TIMEOUT_MS", "1500")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// The `ferrops` binary, seeing none of the caller's role, scheduler, config file or secret
/// settings.
pub fn ferrops_without_cluster_env() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrops"));
    for name in [
        "FERROPS_ROLE",
        "FERROPS_SCHEDULER",
        "FERROPS_CONFIG",
        "FERROPS_SECRET",
        "FERROPS_SECRET_FILE",
        "FERROPS_INSECURE",
    ] {
        c.env_remove(name);
    }
    c
}

/// A fresh directory for one test of `suite`, removed at the end.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(suite: &str, test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "ferrops-{suite}-test-{}-{test}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The address a scheduler started with piped stdout announces on its first line
/// (`FERROPS_SCHEDULER=HOST:PORT`).
pub fn announced_address(scheduler: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(scheduler.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("FERROPS_SCHEDULER=")
        .unwrap_or_else(|| panic!("no announce line, got `{line}`"))
        .to_string()
}

/// Calls `check` every 20 ms until it returns `Ok`; fails the test with the last `Err` once
/// `within` has passed.
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process is gone once it no longer exists or is a zombie awaiting its new parent.
pub fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Sends `signal` (a name such as `TERM`) to `pid` with kill(1), failing the test if it fails.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Live processes whose environment holds `FERROPS_TEST_MARKER=<marker>`: every process a
/// launcher started with that marker, however deep, inherits it.
pub fn processes_marked(marker: &str) -> Vec<i32> {
    let needle = format!("FERROPS_TEST_MARKER={marker}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32 && !is_gone(pid))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .collect()
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                rest.split_whitespace().nth(1) == Some(&parent.to_string())
            })
        })
        .collect()
}

/// Whether `pid` runs `ferrops server` with `marker` (`FERROPS_RANK=i`) in its environment.
pub fn is_server_with(pid: u32, marker: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    cmdline.split(|&b| b == 0).any(|a| a == b"server")
        && environ.split(|&b| b == 0).any(|v| v == marker.as_bytes())
}

/// The pid of `ferrops local`'s (the process `launcher`'s) server `rank`.
pub fn launched_server(launcher: &Child, rank: usize) -> u32 {
    let marker = format!("FERROPS_RANK={rank}");
    poll(Duration::from_secs(30), || {
        children_of(launcher.id())
            .into_iter()
            .find(|&pid| is_server_with(pid, &marker))
            .ok_or_else(|| format!("no server {rank} among the launcher's children"))
    })
}

/// A child whose stdout and stderr (both piped) are followed line by line; killed if it is
/// still running when dropped.
pub struct Running {
    pub child: Child,
    pub stdout: LineLog,
    pub stderr: LineLog,
}

impl Running {
    pub fn follow(mut child: Child) -> Running {
        let stdout = LineLog::follow(child.stdout.take().expect("stdout piped"));
        let stderr = LineLog::follow(child.stderr.take().expect("stderr piped"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits up to `within` for the child to end (panics if it does not); returns whether it
    /// succeeded, and the rest of its stdout and stderr.
    pub fn finish(&mut self, within: Duration) -> (bool, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the child hung");
            thread::sleep(Duration::from_millis(50));
        };
        let out = self.stdout.rest(Duration::from_secs(10)).join("\n");
        let err = self.stderr.rest(Duration::from_secs(10)).join("\n");
        (status.success(), format!("{out}\n{err}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a child writes to a pipe (its stderr, say), as they come, read on a thread.
pub struct LineLog(std::sync::mpsc::Receiver<String>);

impl LineLog {
    /// Follows `pipe` until it closes.
    pub fn follow(pipe: impl std::io::Read + Send + 'static) -> LineLog {
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        LineLog(rx)
    }

    /// The first line from now on that contains `text`; panics when none comes `within`.
    pub fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("never logged `{text}`; logged: {seen:#?}"),
            }
        }
    }
}

impl LineLog {
    /// Waits until a line containing each of `texts` has come, in any order; panics when one
    /// has not come `within`.
    pub fn wait_for_all(&self, texts: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        let mut missing: Vec<&str> = texts.to_vec();
        let mut seen = Vec::new();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) => {
                    missing.retain(|t| !line.contains(t));
                    seen.push(line);
                }
                Err(_) => panic!("never logged {missing:?}; logged: {seen:#?}"),
            }
        }
    }

    /// Every line from now on until the pipe closes (at most `within`).
    pub fn rest(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .0
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

/// Writes `count` whitened 4×4 patches of a synthetic 48×48 picture (a smooth grating) to
/// `dir/patches.txt` with `ferrops data patches`, for `train rica`; returns the file.
pub fn synthetic_patches(dir: &std::path::Path, count: usize) -> PathBuf {
    let (w, h) = (48usize, 48usize);
    let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let v = 0.5 + 0.3 * ((x as f32) * 0.4 + (y as f32) * 0.15).sin();
            pgm.push((v * 255.0) as u8);
        }
    }
    let image = dir.join("img.pgm");
    fs::write(&image, pgm).unwrap();
    let out = dir.join("patches.txt");
    run_ok(
        ferrops_without_cluster_env()
            .args([
                "data",
                "patches",
                "--size",
                "4",
                "--count",
                &count.to_string(),
                "--out",
            ])
            .arg(&out)
            .arg(&image),
    );
    out
}

/// Writes the synthetic LIBSVM data set `spec` describes to `dir/train.svm`; returns the file.
pub fn generated_data(
    dir: &std::path::Path,
    spec: ferrops::internal::data::gen::GenSpec,
) -> PathBuf {
    let data = dir.join("train.svm");
    let mut out = std::io::BufWriter::new(fs::File::create(&data).unwrap());
    ferrops::internal::data::gen::write(&spec, &mut out).unwrap();
    out.into_inner().expect("the data set is written out");
    data
}
