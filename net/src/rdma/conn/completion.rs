//! Completions and waiting: polling the completion queue and dispatching each work
//! completion (a send finished, a message or a bulk payload arrived), the completion channel
//! that makes the connection's fd readable (drain, re-arm, [`RdmaConn::prepare_sleep`]),
//! and the waits built on them (spin, then sleep on the channel and the rdma_cm events).

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use sideway::ibverbs::completion::CompletionQueue as _;
use sideway::rdmacm::communication_manager::EventType;

use super::post::{OP_DIRECT, OP_SLOT, OP_WRITE, SEND_BIT};
use super::RdmaConn;
use crate::rdma::RdmaError;

/// What a work completion says, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Completion {
    wr_id: u64,
    status: u32,
    opcode: u32,
    byte_len: u32,
    imm: u32,
    vendor_err: u32,
}

/// poll(2) on `fds` for readability; `Ok(false)` on timeout.
pub(super) fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> Result<bool, RdmaError> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: pfds is a valid array of pollfd of the given length.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(RdmaError::Verbs {
                op: "poll",
                source: err,
            });
        }
    }
}

impl RdmaConn {
    /// [`RdmaConn::progress`] without the completion channel: handles completions and posts
    /// what was queued, with no system call (the sends' tail; sleeping callers re-arm first).
    pub(super) fn poll_progress(&mut self) -> Result<(), RdmaError> {
        self.poll_cq()?;
        self.flush_pending()?;
        if let Some(why) = &self.failed {
            return Err(RdmaError::Protocol(why.clone()));
        }
        Ok(())
    }

    /// Handles every completion that arrived, answers the peer's control messages and posts
    /// what was queued. Call it when the fd is readable (any send or receive calls it too).
    pub fn progress(&mut self) -> Result<(), RdmaError> {
        self.drain_channel()?;
        self.poll_cq()?;
        self.flush_pending()?;
        if self.sq_used == 0 && !self.retired.is_empty() {
            self.retired.clear();
        }
        if let Some(why) = &self.failed {
            return Err(RdmaError::Protocol(why.clone()));
        }
        Ok(())
    }

    /// Makes the fd trustworthy for a sleep: takes the completion channel's events, re-arms
    /// the notification, then handles whatever completed meanwhile. `Ok(true)` when a frame is
    /// ready (do not sleep: [`RdmaConn::try_recv_frame`] has it).
    pub fn prepare_sleep(&mut self) -> Result<bool, RdmaError> {
        self.progress()?;
        Ok(!self.ready.is_empty() || (self.closed && self.ready.is_empty()))
    }

    /// Acknowledges completion-channel events and re-arms the notification.
    pub(super) fn drain_channel(&mut self) -> Result<(), RdmaError> {
        let mut events = 0u32;
        loop {
            let mut cq: *mut rdma_mummy_sys::ibv_cq = std::ptr::null_mut();
            let mut ctx: *mut libc::c_void = std::ptr::null_mut();
            // SAFETY: the channel is non-blocking and owned by this connection; the out
            // pointers are valid locals.
            let rc = unsafe {
                rdma_mummy_sys::ibv_get_cq_event(
                    self.comp.comp_channel().as_ptr(),
                    &mut cq,
                    &mut ctx,
                )
            };
            if rc != 0 {
                break;
            }
            events += 1;
        }
        if events > 0 {
            // SAFETY: the events were taken from this connection's only CQ.
            unsafe { rdma_mummy_sys::ibv_ack_cq_events(self.cq.cq().as_ptr(), events) };
            self.armed = false;
        }
        if !self.armed {
            self.arm()?;
        }
        Ok(())
    }

    pub(super) fn arm(&mut self) -> Result<(), RdmaError> {
        // SAFETY: the CQ is alive for as long as the connection.
        let rc = unsafe { rdma_mummy_sys::ibv_req_notify_cq(self.cq.cq().as_ptr(), 0) };
        if rc != 0 {
            return Err(RdmaError::Verbs {
                op: "ibv_req_notify_cq",
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        self.armed = true;
        Ok(())
    }

    /// Polls the completion queue once; `Ok(n)` completions handled.
    pub(super) fn poll_cq(&mut self) -> Result<usize, RdmaError> {
        // The completions are copied out before any is handled (handling needs `self`), into
        // a vector kept between polls: no allocation per poll on the small-message path.
        let mut wcs = std::mem::take(&mut self.completions);
        wcs.clear();
        if let Ok(poller) = self.cq.start_poll() {
            for wc in poller {
                wcs.push(Completion {
                    wr_id: wc.wr_id(),
                    status: wc.status(),
                    opcode: wc.opcode(),
                    byte_len: wc.byte_len(),
                    imm: wc.imm_data(),
                    vendor_err: wc.vendor_err(),
                });
            }
        }
        let n = wcs.len();
        let handled = self.handle_completions(&wcs);
        self.completions = wcs;
        handled.map(|()| n)
    }

    fn handle_completions(&mut self, wcs: &[Completion]) -> Result<(), RdmaError> {
        for wc in wcs {
            let &Completion {
                wr_id,
                status,
                opcode,
                byte_len,
                imm,
                vendor_err,
            } = wc;
            if wr_id & SEND_BIT != 0 {
                self.sq_used = self.sq_used.saturating_sub(1);
                self.send_done(wr_id & !SEND_BIT);
            }
            if status != 0 {
                if self.closed {
                    continue; // flushed after the peer left
                }
                if self.failed.is_none() {
                    let op = if wr_id & SEND_BIT != 0 {
                        "send"
                    } else {
                        "receive"
                    };
                    let err = RdmaError::Completion {
                        op,
                        status,
                        vendor_err,
                    };
                    // Retry exhausted / remote gone: the peer has disappeared.
                    self.failed = Some(format!("{err} (peer gone or connection broken)"));
                }
                continue;
            }
            if wr_id & SEND_BIT == 0 {
                self.recv_done(wr_id as u32, opcode, byte_len as usize, imm)?;
            }
        }
        Ok(())
    }

    pub(super) fn send_done(&mut self, id: u64) {
        let op = id & !0xffff_ffff;
        let low = id & 0xffff_ffff;
        match op {
            OP_SLOT => self.send_free.push(low as u32),
            OP_WRITE => {
                if let Some(bulk) = self.bulk_out.remove(&low) {
                    self.give_staging(bulk.stage);
                }
            }
            OP_DIRECT => {
                if let Some(stage) = self.direct.remove(&low) {
                    self.give_staging(stage);
                }
            }
            _ => {}
        }
    }

    /// Waits until every accepted frame is posted and its send completed (or `timeout`).
    pub fn flush(&mut self, timeout: Duration) -> Result<(), RdmaError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.progress()?;
            if self.pending.is_empty() && self.sq_used == 0 {
                return Ok(());
            }
            if self.closed {
                return Err(RdmaError::Closed);
            }
            if !self.wait_event(deadline)? {
                return Err(RdmaError::Timeout("the send queue to drain"));
            }
        }
    }

    /// Spins on the completion queue for a while, then sleeps on the completion channel (and
    /// the rdma_cm channel, for disconnects). `Ok(false)` at the deadline.
    pub(super) fn wait_event(&mut self, deadline: Instant) -> Result<bool, RdmaError> {
        let spin_until = Instant::now() + self.spin;
        let mut round = 0u32;
        loop {
            if self.poll_cq()? > 0 {
                return Ok(true);
            }
            // The clock is read every few rounds only: where it is not in the vDSO (a VM
            // without a stable TSC) each read is a system call.
            round = round.wrapping_add(1);
            if round.is_multiple_of(64) && Instant::now() >= spin_until.min(deadline) {
                break;
            }
            std::hint::spin_loop();
        }
        self.drain_channel()?;
        if self.poll_cq()? > 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let mut fds = vec![self.comp.as_raw_fd()];
        if let Some(ch) = &self.cm_channel {
            fds.push(ch.as_raw_fd());
        }
        let slice = (deadline - now).min(Duration::from_millis(100));
        wait_readable(&fds, Some(slice))?;
        self.check_cm_events();
        Ok(Instant::now() < deadline)
    }

    /// Disconnect events of the connecting side.
    pub(super) fn check_cm_events(&mut self) {
        let Some(ch) = self.cm_channel.clone() else {
            return;
        };
        if ch.set_nonblocking(true).is_err() {
            return;
        }
        while let Ok(event) = ch.get_cm_event() {
            if matches!(
                event.event_type(),
                EventType::Disconnected | EventType::DeviceRemoval | EventType::TimewaitExit
            ) {
                self.closed = true;
            }
            drop(event.ack());
        }
    }
}
