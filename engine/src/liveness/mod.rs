//! Liveness: the scheduler and every node watch each other through heartbeats.
//!
//! Every node (each server shard, each worker) runs a heartbeat thread ([`Heartbeat`]) that sends
//! the scheduler a small `Control::Heartbeat` frame every `heartbeat_interval` on the node's
//! existing scheduler connection, whose writes are shared for that
//! (`ferrops_net::SharedWriter`), so a shard busy applying a large push or a worker computing
//! between calls never delays a heartbeat. The scheduler answers each with `HeartbeatAck`.
//!
//! - The scheduler keeps a [`Detector`]: any frame from a registered node counts as a sign of
//!   life; a node silent for longer than `heartbeat_timeout`, or whose connection closes before
//!   it said it was done, becomes a [`Death`] event. What a death means is the scheduler's
//!   policy, kept in one place so that failover can change it: before the job starts, the
//!   node's slot is freed for another; once it runs, the job ends naming the node.
//! - A node keeps a [`Silence`] for the scheduler: any frame from it counts; a scheduler silent
//!   for longer than the timeout ends the node with `EngineError::SchedulerSilent`.
//!
//! Silence is measured from when frames were *read*. An event loop that was busy (a long
//! apply) or stopped has not read what arrived meanwhile, so the first look after such a stall
//! judges nothing ([`StallGuard`]); the next round reads the waiting frames first.

mod beat;
mod detector;
mod watch;

pub(crate) use beat::Heartbeat;
pub use detector::{Cause, Death, Detector};
pub(crate) use watch::{Silence, StallGuard};

use std::time::Duration;

use crate::config::LivenessConfig;

/// How often an event loop that watches peers looks at them: often enough to notice a timeout
/// within a fraction of the heartbeat interval, at most every 100 ms.
pub(crate) fn tick(cfg: &LivenessConfig) -> Duration {
    (cfg.heartbeat_interval / 2).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// A duration for messages: milliseconds below a second, else seconds with one decimal.
pub(crate) fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
