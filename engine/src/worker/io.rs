//! The worker's side of its connections: frames go out through `ferrops_net::ClientDriver`
//! (which owns the links, the poller and the spin-then-sleep wait) and what arrives is handled
//! by [`Inbound`]. Everything runs on the caller's thread: a small request is one write and one
//! read.

use std::time::{Duration, Instant};

use ferrops_net::client::{ClientHandler, DialOptions, Dialer, ServerAddrs};
use ferrops_net::{BufferPool, ClientDriver, FrameParts, Link, Metrics, Peer, Registration};

use super::inbound::{Inbound, Lent, Receiver};
use crate::control::Control;
use crate::key_list_cache::KeyListCache;
use crate::EngineError;

/// How long a request that lost a connection waits for the scheduler's word on why.
const EXPLANATION_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct ClientIo {
    net: ClientDriver,
    pub inbound: Inbound,
    /// Once welcomed: how to redial a lost scheduler and what to tell it (`rejoin.rs`).
    pub rejoin: Option<super::rejoin::Rejoining>,
    /// The request that waits for the scheduler's answer (sent again after a rejoin).
    pub awaiting: Option<Control>,
    pub payload_crc: bool,
    /// Whether key lists may travel delta + bit packed.
    pub key_packing: bool,
}

impl ClientIo {
    /// `heartbeat_timeout`: how long the scheduler may stay silent before a wait gives up.
    pub fn new(
        scheduler: Peer,
        metrics: Metrics,
        busy_poll: Duration,
        heartbeat_timeout: Duration,
    ) -> Result<ClientIo, EngineError> {
        Ok(ClientIo {
            net: ClientDriver::new(scheduler, busy_poll)?,
            inbound: Inbound::new(metrics, heartbeat_timeout),
            rejoin: None,
            awaiting: None,
            payload_crc: true,
            key_packing: true,
        })
    }

    /// Connects to the next server (in rank order) and introduces this worker to it.
    pub fn add_server(
        &mut self,
        to: ServerAddrs<'_>,
        options: &DialOptions,
        dialer: &Dialer,
        pool: BufferPool,
        hello: &Control,
    ) -> Result<(), EngineError> {
        let metrics = self.inbound.metrics.clone();
        let server = self
            .net
            .dial_server(dialer, to, options, pool, metrics)
            .map_err(crate::transport::dial_error)?;
        let capacity = match hello {
            Control::Hello { key_cache_keys, .. } => *key_cache_keys,
            _ => 0,
        };
        self.inbound.key_caches.push(KeyListCache::new(capacity));
        let (header, extra) = hello.frame();
        let mut frame = FrameParts::with_extra(header, &extra);
        self.send(server, &mut frame, &mut None)
    }

    /// Takes the next rank's place for a server that could not be dialed: it counts as lost
    /// (its requests fail over) until [`ClientIo::redial_server`] connects it.
    pub fn add_unreachable_server(&mut self) {
        let rank = self.net.add_absent_server();
        self.inbound.key_caches.push(KeyListCache::new(0));
        self.inbound.dead.insert(rank);
    }

    /// Dials server `rank` again (one that could not be dialed before, now a head) and
    /// introduces this worker to it, with a key cache that starts empty.
    pub fn redial_server(
        &mut self,
        rank: u32,
        to: ServerAddrs<'_>,
        (options, dialer): (&DialOptions, &Dialer),
        pool: BufferPool,
        hello: &Control,
    ) -> Result<(), EngineError> {
        let metrics = self.inbound.metrics.clone();
        self.net
            .redial_server(rank, dialer, to, options, pool, metrics)
            .map_err(crate::transport::dial_error)?;
        let capacity = match hello {
            Control::Hello { key_cache_keys, .. } => *key_cache_keys,
            _ => 0,
        };
        self.inbound.key_caches[rank as usize] = KeyListCache::new(capacity);
        self.inbound.dead.remove(&rank);
        let (header, extra) = hello.frame();
        let mut frame = FrameParts::with_extra(header, &extra);
        self.send(rank, &mut frame, &mut None)
    }

    /// How many servers are connected.
    pub fn num_servers(&self) -> usize {
        self.net.num_servers()
    }

    /// How many server connections are RDMA (the rest are TCP).
    pub fn rdma_servers(&self) -> usize {
        self.net.rdma_servers()
    }

    /// How many server links are shared memory.
    pub fn shm_servers(&self) -> usize {
        self.net.shm_servers()
    }

    /// The connection to server `server`.
    pub fn link(&self, server: u32) -> Option<&Link> {
        self.net.server(server)
    }

    /// Sends a frame to the scheduler (control messages are small; waits if the socket is full).
    pub fn send_control(&mut self, msg: &Control) -> Result<(), EngineError> {
        if self.rejoin.is_none() {
            return self.send_control_now(msg);
        }
        // A request that waits for an answer is sent again to a scheduler that recovers.
        if matches!(
            msg,
            Control::Barrier { .. } | Control::DeclareTable { .. } | Control::Checkpoint { .. }
        ) {
            self.awaiting = Some(msg.clone());
        }
        loop {
            // Without a scheduler, wait (pushes and pulls go on meanwhile) until one is back.
            self.drive_until(|inbound| !inbound.scheduler_down, &mut None, None)?;
            match self.send_control_now(msg) {
                Err(EngineError::Net(e)) if self.inbound.shutdown.is_none() => {
                    tracing::debug!("sending to the scheduler failed: {e}");
                    self.inbound.scheduler_down = true;
                }
                other => return other,
            }
        }
    }

    /// Sends a frame to the scheduler now (its connection must be up).
    pub(super) fn send_control_now(&mut self, msg: &Control) -> Result<(), EngineError> {
        let (header, extra) = msg.frame();
        let mut frame = FrameParts::with_extra(header, &extra);
        frame.finish(self.payload_crc);
        let mut receiver = Receiver {
            inbound: &mut self.inbound,
            lent: &mut None,
        };
        let sent = self.net.send_to_scheduler(&frame, &mut receiver);
        self.explained(sent)
    }

    /// Writes a whole frame to server `server`, straight from the frame's slices; while the
    /// socket is full, reads whatever arrives so neither side can block the other.
    pub fn send(
        &mut self,
        server: u32,
        frame: &mut FrameParts<'_>,
        lent: &mut Option<Lent<'_>>,
    ) -> Result<(), EngineError> {
        frame.finish(self.payload_crc);
        if server as usize >= self.net.num_servers() || self.inbound.dead.contains(&server) {
            return Err(EngineError::ServerLost(server));
        }
        let mut receiver = Receiver {
            inbound: &mut self.inbound,
            lent,
        };
        let sent = self.net.send_to_server(server, frame, &mut receiver);
        let sent = self.lost_if_broken(server, sent);
        self.explained(sent)
    }

    /// Sends a frame to server `server` whose values lie in `values`, registered with that
    /// server's connection (their bulk transfer reads them in place).
    pub fn send_registered(
        &mut self,
        server: u32,
        frame: &mut FrameParts<'_>,
        values: &Registration,
    ) -> Result<(), EngineError> {
        frame.finish(self.payload_crc);
        if server as usize >= self.net.num_servers() || self.inbound.dead.contains(&server) {
            return Err(EngineError::ServerLost(server));
        }
        let sent = self.net.send_registered(server, frame, values);
        let sent = self.lost_if_broken(server, sent.map_err(EngineError::from));
        self.explained(sent)
    }

    /// Puts a new scheduler connection in the lost one's place.
    pub(super) fn replace_scheduler(&mut self, peer: Peer) -> Result<(), EngineError> {
        Ok(self.net.replace_scheduler(peer)?)
    }

    /// Waits up to `timeout` for any connection, then handles every frame available.
    pub fn progress(
        &mut self,
        timeout: Option<Duration>,
        lent: &mut Option<Lent<'_>>,
    ) -> Result<(), EngineError> {
        let mut receiver = Receiver {
            inbound: &mut self.inbound,
            lent,
        };
        let progressed = self.net.progress(timeout, &mut receiver);
        self.explained(progressed)
    }

    /// Reads whatever the scheduler's connection holds now (no wait).
    fn read_scheduler(&mut self, lent: &mut Option<Lent<'_>>) {
        let mut receiver = Receiver {
            inbound: &mut self.inbound,
            lent,
        };
        self.net.read_scheduler(&mut receiver);
    }

    /// A send to server `server` that failed in the transport (a write into a connection the
    /// server closed: it died while a large frame was being written) lost that server, as a
    /// read that finds the connection closed does: its requests fail, and with replication the
    /// worker fails over (`ServerLost`) instead of failing the call with an i/o error.
    fn lost_if_broken(
        &mut self,
        server: u32,
        result: Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let Err(EngineError::Net(e)) = result else {
            return result;
        };
        tracing::debug!("writing to server {server} failed: {e}");
        let mut receiver = Receiver {
            inbound: &mut self.inbound,
            lent: &mut None,
        };
        receiver.server_lost(server)?;
        Err(EngineError::ServerLost(server))
    }

    /// `result`, unless it failed because a connection broke and the scheduler has ended the
    /// job: then the scheduler's reason, which says why (servers it stopped vanish, and may do
    /// so a moment before its message is read). Waits a little for that message.
    fn explained<T>(&mut self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        let error = match result {
            Err(e @ (EngineError::ServerLost(_) | EngineError::Net(_))) => e,
            other => return other,
        };
        let deadline = Instant::now() + EXPLANATION_WAIT;
        loop {
            let mut receiver = Receiver {
                inbound: &mut self.inbound,
                lent: &mut None,
            };
            self.net.read_scheduler(&mut receiver);
            if let Some(reason) = &self.inbound.shutdown {
                return Err(EngineError::Shutdown(reason.clone()));
            }
            if Instant::now() >= deadline {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drives progress until `done` says so, the job shuts down, or `deadline` passes.
    pub fn drive_until(
        &mut self,
        mut done: impl FnMut(&mut Inbound) -> bool,
        lent: &mut Option<Lent<'_>>,
        deadline: Option<Instant>,
    ) -> Result<bool, EngineError> {
        loop {
            if done(&mut self.inbound) {
                return Ok(true);
            }
            if let Some(reason) = &self.inbound.shutdown {
                return Err(EngineError::Shutdown(reason.clone()));
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    left.min(Duration::from_millis(200))
                }
                None => Duration::from_millis(200),
            };
            self.progress(Some(timeout), lent)?;
            if self.inbound.scheduler_down {
                self.reconnect()?;
                continue;
            }
            if self
                .inbound
                .scheduler_silence
                .exceeded(Instant::now())
                .is_some()
            {
                // A wait over in-memory links reads the scheduler only now and then: judge
                // right after reading it.
                self.read_scheduler(lent);
                if self.inbound.scheduler_down {
                    self.reconnect()?;
                    continue;
                }
                let silence = &self.inbound.scheduler_silence;
                if let Some(silent_for) = silence.exceeded(Instant::now()) {
                    return Err(EngineError::SchedulerSilent {
                        silent_for,
                        timeout: silence.timeout(),
                    });
                }
            }
        }
    }

    /// Waits for the next control message from the scheduler that `want` accepts; a `Refused`
    /// is returned as an error.
    pub fn await_control<T>(
        &mut self,
        mut want: impl FnMut(&Control) -> Option<T>,
        timeout: Duration,
    ) -> Result<T, EngineError> {
        let deadline = Instant::now() + timeout;
        let mut found = None;
        let arrived = self.drive_until(
            |inbound| {
                while let Some(msg) = inbound.inbox.pop_front() {
                    if let Control::Refused { reason } = &msg {
                        found = Some(Err(EngineError::Refused(reason.clone())));
                        return true;
                    }
                    if let Some(t) = want(&msg) {
                        found = Some(Ok(t));
                        return true;
                    }
                    tracing::debug!("ignoring control message {msg:?}");
                }
                false
            },
            &mut None,
            Some(deadline),
        )?;
        self.awaiting = None;
        match found {
            Some(result) if arrived => result,
            _ => Err(EngineError::Refused(format!(
                "no answer from the scheduler within {} s",
                timeout.as_secs()
            ))),
        }
    }
}
