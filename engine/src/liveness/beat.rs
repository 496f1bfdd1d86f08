//! A node's heartbeat thread: sends the scheduler `Control::Heartbeat` every interval through
//! the shared write side of the node's scheduler connection, whatever the node's own thread is
//! busy with.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use ferrops_net::{FrameParts, SharedWriter};

use crate::control::Control;
use crate::EngineError;

/// The running heartbeat thread; dropping it stops the thread (at once) and waits for it.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts sending a heartbeat through `writer` every `interval`. The thread ends when the
    /// connection fails (the node's own thread finds that out too and says why) or on drop.
    pub(crate) fn start(
        writer: SharedWriter,
        interval: Duration,
        payload_crc: bool,
    ) -> Result<Heartbeat, EngineError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let (header, extra) = Control::Heartbeat.frame();
                let mut frame = FrameParts::with_extra(header, &extra);
                frame.finish(payload_crc);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if let Err(e) = writer.send(&frame) {
                        tracing::debug!("heartbeats stop: {e}");
                        return;
                    }
                }
            })
            .map_err(|e| EngineError::Config(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
