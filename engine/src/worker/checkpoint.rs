//! `Worker::checkpoint`: the worker's side of a collective checkpoint (see the scheduler's
//! `checkpoint` module for the protocol).

use std::path::Path;
use std::time::Duration;

use super::Worker;
use crate::checkpoint::CheckpointError;
use crate::control::Control;
use crate::EngineError;

impl Worker {
    /// Writes every table's values and rule state into the directory `dir` (created if
    /// missing; a path every server and the scheduler can reach, such as a shared file system
    /// or, on one host, any directory) at a consistent clock.
    ///
    /// Collective, like [`Worker::barrier`]: every live worker calls it, after the same pushes.
    /// Each waits until its own requests are answered, then until every live worker has asked;
    /// the servers then write one file per (table, key range) and the scheduler the manifest.
    /// Returns once the checkpoint is complete. A job started with `restore` set to `dir`
    /// begins with these tables.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<(), EngineError> {
        let dir =
            std::path::absolute(dir.as_ref()).map_err(|e| CheckpointError::io(dir.as_ref(), e))?;
        let Some(text) = dir.to_str() else {
            return Err(CheckpointError::Directory {
                path: dir.clone(),
                reason: "the path is not valid UTF-8".into(),
            }
            .into());
        };
        let mut st = self.lock();
        st.io
            .drive_until(|inbound| inbound.outstanding.is_empty(), &mut None, None)?;
        let clock = st.clock;
        st.io.send_control(&Control::Checkpoint {
            dir: text.to_string(),
            clock,
        })?;
        let result = st.io.await_control(
            |msg| match msg {
                Control::CheckpointDone { result } => Some(result.clone()),
                _ => None,
            },
            Duration::from_secs(u64::MAX / 4),
        )?;
        result.map_err(|reason| CheckpointError::Failed(reason).into())
    }
}
