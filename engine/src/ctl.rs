//! The operator's side of `ferrops ctl`: a connection to a running job's scheduler,
//! authenticated with the cluster secret as [`Role::Ctl`]. It is no member of the job: it
//! never registers, sends no heartbeats, and no server admits it. The scheduler's side is
//! `scheduler/ctl.rs`.

use std::path::Path;
use std::time::Duration;

use ferrops_net::{BufferPool, Metrics};

use crate::checkpoint::CheckpointError;
use crate::config::ClusterConfig;
use crate::connect::connect_scheduler;
use crate::control::{Control, JobStatus, Role};
use crate::worker::io::ClientIo;
use crate::EngineError;

/// How long a status may take (the scheduler asks every server first).
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);
/// A checkpoint waits for the job's next barrier, a drain for its ranges' copies, however long
/// that takes; the job's end answers them too.
const UNBOUNDED: Duration = Duration::from_secs(u64::MAX / 4);

/// A control connection to a running job.
pub struct Ctl {
    io: ClientIo,
}

impl Ctl {
    /// Connects to `cluster.scheduler` and authenticates (waiting for it up to
    /// `cluster.connect_timeout`).
    pub fn connect(cluster: &ClusterConfig) -> Result<Ctl, EngineError> {
        let metrics = Metrics::new();
        let (scheduler, _) =
            connect_scheduler(cluster, Role::Ctl, BufferPool::new(), metrics.clone())?;
        // The scheduler sends a control connection nothing unasked: its silence is no sign.
        let io = ClientIo::new(scheduler, metrics, Duration::ZERO, UNBOUNDED)?;
        Ok(Ctl { io })
    }

    /// The job's members, ranges, tables and worker clocks, as the scheduler's JSON text (one
    /// object; [`JobStatus::from_json`] reads it).
    pub fn status_json(&mut self) -> Result<String, EngineError> {
        self.io.send_control(&Control::StatusRequest)?;
        self.io.await_control(
            |msg| match msg {
                Control::Status { json } => Some(json.clone()),
                _ => None,
            },
            STATUS_TIMEOUT,
        )
    }

    /// The job's members, ranges, tables and worker clocks.
    pub fn status(&mut self) -> Result<JobStatus, EngineError> {
        let json = self.status_json()?;
        JobStatus::from_json(&json).map_err(|e| {
            EngineError::Refused(format!("the scheduler's status is not a status: {e}"))
        })
    }

    /// Checkpoints every table into `dir` (a path every server and the scheduler can reach)
    /// while every live worker waits at the job's next barrier; returns once the manifest is
    /// written.
    pub fn checkpoint(&mut self, dir: &Path) -> Result<(), EngineError> {
        let dir = std::path::absolute(dir).map_err(|e| CheckpointError::io(dir, e))?;
        let Some(text) = dir.to_str() else {
            return Err(CheckpointError::Directory {
                path: dir.clone(),
                reason: "the path is not valid UTF-8".into(),
            }
            .into());
        };
        let ask = Control::CtlCheckpoint {
            dir: text.to_string(),
        };
        let result = self.ask_until_done(&ask, |msg| match msg {
            Control::CheckpointDone { result } => Some(result.clone()),
            _ => None,
        })?;
        result.map_err(|reason| CheckpointError::Failed(reason).into())
    }

    /// Sends `ask` and waits, however long it takes, for the answer `done` recognises.
    fn ask_until_done(
        &mut self,
        ask: &Control,
        done: impl FnMut(&Control) -> Option<Result<(), String>>,
    ) -> Result<Result<(), String>, EngineError> {
        self.io.send_control(ask)?;
        self.io.await_control(done, UNBOUNDED)
    }

    /// Drains server `rank`: its ranges move to other servers, then it stops. Returns once it
    /// is out of the job, or the scheduler's reason why it cannot be drained.
    pub fn drain(&mut self, rank: u32) -> Result<(), EngineError> {
        let ask = Control::CtlDrain { server: rank };
        let result = self.ask_until_done(&ask, |msg| match msg {
            Control::Drained { result } => Some(result.clone()),
            _ => None,
        })?;
        result.map_err(EngineError::Refused)
    }
}
