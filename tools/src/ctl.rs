//! `ferrops ctl`: asks a running job's scheduler for its status, a checkpoint or a server's
//! drain, and prints the answer.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use ferrops::config::ConfigInput;
use ferrops_engine::control::JobStatus;
use ferrops_engine::ctl::Ctl;

use crate::cli::{CtlCheckpointArgs, CtlDrainArgs, CtlStatusArgs};

/// `ferrops ctl status`.
pub fn status(args: &CtlStatusArgs) -> Result<i32> {
    let mut ctl = connect(&args.connection.overrides())?;
    let status = ctl
        .status()
        .context("asking the scheduler for the job's status")?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(0)
}

/// `ferrops ctl checkpoint DIR`.
pub fn checkpoint(args: &CtlCheckpointArgs) -> Result<i32> {
    let mut ctl = connect(&args.connection.overrides())?;
    ctl.checkpoint(&args.dir)
        .with_context(|| format!("checkpoint into {}", args.dir.display()))?;
    println!("checkpoint written to {}", args.dir.display());
    Ok(0)
}

/// `ferrops ctl drain --server ID`.
pub fn drain(args: &CtlDrainArgs) -> Result<i32> {
    let mut ctl = connect(&args.connection.overrides())?;
    ctl.drain(args.server)
        .with_context(|| format!("draining server {}", args.server))?;
    println!(
        "server {} drained: its ranges moved and it stopped",
        args.server
    );
    Ok(0)
}

fn connect(overrides: &ferrops::config::Overrides) -> Result<Ctl> {
    let cluster = ConfigInput::gather(overrides)?
        .ctl()
        .context("configuring ferrops ctl")?;
    Ctl::connect(&cluster)
        .with_context(|| format!("reaching the scheduler at {}", cluster.scheduler))
}

/// The status as text, one line per member, range and table.
fn render(status: &JobStatus) -> String {
    let mut out = String::new();
    let ago = |ms: Option<u64>| ms.map_or("never".to_string(), |ms| format!("{ms} ms ago"));
    let _ = writeln!(out, "routing version {}", status.routing_version);
    for s in &status.servers {
        let m = &s.member;
        let live = if m.live { "live" } else { "not ready" };
        let _ = writeln!(
            out,
            "server {} (node {}) at {}: {live}, heard {}, heads {} ranges, holds {}",
            m.rank,
            m.id,
            s.addr,
            ago(m.last_heard_ms),
            s.ranges.len(),
            s.holds.len()
        );
    }
    for w in &status.workers {
        let m = &w.member;
        let live = if m.live { "live" } else { "done" };
        let clock = w.clock.map_or("-".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "worker {} (node {}): {live}, heard {}, clock {clock}",
            m.rank,
            m.id,
            ago(m.last_heard_ms)
        );
    }
    for (i, r) in status.ranges.iter().enumerate() {
        let _ = writeln!(
            out,
            "range {i} [{:#x}, {:#x}]: chain {:?}",
            r.first, r.last, r.chain
        );
    }
    for t in &status.tables {
        let _ = writeln!(
            out,
            "table {} `{}`: {} keys, {} bytes",
            t.id, t.name, t.keys, t.bytes
        );
    }
    out
}
