//! The worker's connections and its progress engine.
//!
//! There is no background thread: the caller's own thread writes requests straight from its
//! slices and, while it waits, reads replies (pull values go straight into the destination
//! buffer). A small request therefore costs one write and one read, like a raw ping-pong.
//! Server connections are [`Link`]s (TCP or RDMA); while RDMA links are waited on, they are
//! polled for `rdma_busy_poll` before the thread sleeps on their completion channels.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferrops_net::{
    BufferPool, Frame, FrameParts, FrameSink, Header, Link, Metrics, Opcode, Peer, ReadOutcome,
    Status,
};
use mio::{Events, Interest, Poll, Token};
use zerocopy::IntoBytes;

use super::pending::{Kind, Outstanding, PullInto};
use crate::control::Control;
use crate::key_list_cache::KeyListCache;
use crate::EngineError;
use ferrops_net::codec::values::decode_values;
use ferrops_net::codec::ValueCodec;

const SCHEDULER: Token = Token(usize::MAX);

/// A caller's slice lent to one blocking pull: values of `ticket` go straight into it.
pub(crate) struct Lent<'a> {
    pub ticket: u64,
    pub values: &'a mut [f32],
}

pub(crate) struct ClientIo {
    poll: Poll,
    events: Events,
    pub scheduler: Peer,
    pub servers: Vec<Link>,
    /// How long a wait polls RDMA links before sleeping (zero: no RDMA link).
    pub busy_poll: Duration,
    pub outstanding: Outstanding,
    pub inbox: VecDeque<Control>,
    pub shutdown: Option<String>,
    pub metrics: Metrics,
    pub payload_crc: bool,
    /// Per server: the key lists that server holds for this connection (see `keycache`).
    pub key_caches: Vec<KeyListCache<()>>,
    /// Whether key lists may travel delta + bit packed.
    pub key_packing: bool,
    /// Rows of changed-only pulls: offered (asked for), sent (changed), delayed (unchanged,
    /// left as the worker held them).
    pub changed_since: crate::filter::FilterCounts,
}

/// Routes pull-reply values straight into the buffer that waits for them.
struct Sink<'a, 'b> {
    outstanding: &'a mut Outstanding,
    lent: &'a mut Option<Lent<'b>>,
}

impl FrameSink for Sink<'_, '_> {
    fn direct_values(&mut self, header: &Header) -> Option<&mut [u8]> {
        let raw = header.value_codec == ValueCodec::Raw.id()
            && header.flags & ferrops_net::flags::VALUES_MASKED == 0;
        if header.opcode() != Some(Opcode::PullReply) || header.status() != Status::Ok || !raw {
            return None;
        }
        let sub = self.outstanding.requests.get(&header.request_id.get())?;
        let range = sub.values.clone();
        if let Some(lent) = self.lent.as_mut() {
            if lent.ticket == sub.ticket {
                return lent.values.get_mut(range).map(|v| v.as_mut_bytes());
            }
        }
        match self
            .outstanding
            .tickets
            .get_mut(&sub.ticket)
            .map(|p| &mut p.kind)
        {
            Some(Kind::Pull(PullInto::Owned(out))) => out.get_mut(range).map(|v| v.as_mut_bytes()),
            _ => None,
        }
    }
}

impl ClientIo {
    pub fn new(mut scheduler: Peer, metrics: Metrics) -> Result<ClientIo, EngineError> {
        let poll = Poll::new().map_err(ferrops_net::NetError::from)?;
        poll.registry()
            .register(scheduler.stream_mut(), SCHEDULER, Interest::READABLE)
            .map_err(ferrops_net::NetError::from)?;
        Ok(ClientIo {
            poll,
            events: Events::with_capacity(64),
            scheduler,
            servers: Vec::new(),
            busy_poll: Duration::ZERO,
            outstanding: Outstanding::default(),
            inbox: VecDeque::new(),
            shutdown: None,
            metrics,
            payload_crc: true,
            key_caches: Vec::new(),
            key_packing: true,
            changed_since: Default::default(),
        })
    }

    /// Connects to the next server (in rank order) and introduces this worker to it.
    pub fn add_server(
        &mut self,
        range: &crate::routing::KeyRange,
        cluster: &crate::config::ClusterConfig,
        dialer: &crate::transport::Dialer,
        pool: BufferPool,
        hello: &Control,
    ) -> Result<(), EngineError> {
        let mut link = dialer.connect(range, cluster, pool, self.metrics.clone())?;
        let token = Token(self.servers.len());
        link.register(self.poll.registry(), token, Interest::READABLE)
            .map_err(ferrops_net::NetError::from)?;
        if link.is_rdma() {
            self.busy_poll = cluster.rdma_busy_poll;
        }
        self.servers.push(link);
        let capacity = match hello {
            Control::Hello { key_cache_keys, .. } => *key_cache_keys,
            _ => 0,
        };
        self.key_caches.push(KeyListCache::new(capacity));
        let (header, extra) = hello.frame();
        let mut frame = FrameParts::with_extra(header, &extra);
        let server = self.servers.len() as u32 - 1;
        self.send(Some(server), &mut frame, &mut None)
    }

    /// Sends a frame to the scheduler (control messages are small; waits if the socket is full).
    pub fn send_control(&mut self, msg: &Control) -> Result<(), EngineError> {
        let (header, extra) = msg.frame();
        let mut frame = FrameParts::with_extra(header, &extra);
        self.send(None, &mut frame, &mut None)
    }

    /// Writes a whole frame to a server (`Some(rank)`) or the scheduler (`None`), straight from
    /// the frame's slices; while the socket is full, reads whatever arrives so neither side can
    /// block the other.
    pub fn send(
        &mut self,
        server: Option<u32>,
        frame: &mut FrameParts<'_>,
        lent: &mut Option<Lent<'_>>,
    ) -> Result<(), EngineError> {
        frame.finish(self.payload_crc);
        if let Some(s) = server {
            let link = self
                .servers
                .get_mut(s as usize)
                .ok_or(EngineError::ServerLost(s))?;
            if link.is_rdma() {
                // Never blocks: what cannot be posted now goes out as credits return.
                link.send(frame)?;
                return Ok(());
            }
        }
        let total = frame.wire_len();
        let mut offset = 0;
        loop {
            let peer = self.peer_mut(server)?;
            offset = peer.write_frame_from(frame, offset)?;
            if offset == total {
                return Ok(());
            }
            let token = server.map_or(SCHEDULER, |s| Token(s as usize));
            self.set_writable(server, token, true)?;
            let waited = self.progress(Some(Duration::from_millis(100)), lent);
            self.set_writable(server, token, false)?;
            waited?;
        }
    }

    /// Sends a frame to server `server` whose values lie in `values`, registered with that
    /// server's RDMA connection (their bulk transfer reads them in place).
    pub fn send_values_registered(
        &mut self,
        server: u32,
        frame: &mut FrameParts<'_>,
        values: &super::direct::Registered,
    ) -> Result<(), EngineError> {
        #[cfg(feature = "rdma")]
        {
            frame.finish(self.payload_crc);
            let link = self
                .servers
                .get_mut(server as usize)
                .ok_or(EngineError::ServerLost(server))?;
            link.send_values_registered(frame, values.registration())?;
            Ok(())
        }
        #[cfg(not(feature = "rdma"))]
        {
            let _ = values;
            self.send(Some(server), frame, &mut None)
        }
    }

    fn set_writable(
        &mut self,
        server: Option<u32>,
        token: Token,
        on: bool,
    ) -> Result<(), EngineError> {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let registry = self
            .poll
            .registry()
            .try_clone()
            .map_err(ferrops_net::NetError::from)?;
        let peer = self.peer_mut(server)?;
        registry
            .reregister(peer.stream_mut(), token, interest)
            .map_err(ferrops_net::NetError::from)?;
        Ok(())
    }

    /// The TCP connection to a server (`Some(rank)`) or the scheduler.
    fn peer_mut(&mut self, server: Option<u32>) -> Result<&mut Peer, EngineError> {
        match server {
            None => Ok(&mut self.scheduler),
            Some(s) => self
                .servers
                .get_mut(s as usize)
                .and_then(Link::as_tcp_mut)
                .ok_or(EngineError::ServerLost(s)),
        }
    }

    /// Waits up to `timeout` for any socket, then handles every frame available.
    pub fn progress(
        &mut self,
        timeout: Option<Duration>,
        lent: &mut Option<Lent<'_>>,
    ) -> Result<(), EngineError> {
        if !self.read_available(lent)? {
            if !self.busy_poll.is_zero() {
                let until = Instant::now() + self.busy_poll.min(timeout.unwrap_or(Duration::MAX));
                // The clock is read every few rounds only: where it is not in the vDSO (a VM
                // without a stable TSC) each read is a system call.
                let mut round = 0u32;
                loop {
                    if self.read_rdma_available(lent)? {
                        return Ok(());
                    }
                    round = round.wrapping_add(1);
                    if round.is_multiple_of(64) && Instant::now() >= until {
                        break;
                    }
                    std::hint::spin_loop();
                }
                // RDMA fds must be re-armed before the sleep; a frame found meanwhile is read
                // instead.
                let mut ready = false;
                for link in self.servers.iter_mut() {
                    ready |= link.prepare_sleep()?;
                }
                if ready {
                    self.read_available(lent)?;
                    return Ok(());
                }
            }
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ferrops_net::NetError::from(e).into()),
            }
            self.read_available(lent)?;
        }
        Ok(())
    }

    /// Reads every frame the RDMA links hold now (no system call); true if any was handled.
    fn read_rdma_available(&mut self, lent: &mut Option<Lent<'_>>) -> Result<bool, EngineError> {
        let mut any = false;
        for s in 0..self.servers.len() {
            if self.servers[s].is_rdma() {
                any |= self.read_server(s, lent)?;
            }
        }
        Ok(any)
    }

    /// Reads every frame server `s`'s link holds now; true if any was handled.
    fn read_server(&mut self, s: usize, lent: &mut Option<Lent<'_>>) -> Result<bool, EngineError> {
        let mut any = false;
        loop {
            let mut sink = Sink {
                outstanding: &mut self.outstanding,
                lent,
            };
            match self.servers[s].read_frame(&mut sink) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    self.on_server_frame(s as u32, frame, lent);
                }
                Ok(ReadOutcome::WouldBlock) => return Ok(any),
                Ok(ReadOutcome::Closed) | Err(_) => {
                    self.outstanding.fail_server(s as u32);
                    if self.shutdown.is_none() {
                        return Err(EngineError::ServerLost(s as u32));
                    }
                    return Ok(any);
                }
            }
        }
    }

    /// Reads every frame the sockets hold now; true if any frame was handled.
    fn read_available(&mut self, lent: &mut Option<Lent<'_>>) -> Result<bool, EngineError> {
        let mut any = false;
        for s in 0..self.servers.len() {
            any |= self.read_server(s, lent)?;
        }
        loop {
            match self.scheduler.read_frame(&mut ferrops_net::NoDirectValues) {
                Ok(ReadOutcome::Frame(frame)) => {
                    any = true;
                    self.on_scheduler_frame(&frame);
                }
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::Closed) | Err(_) => {
                    if self.shutdown.is_none() {
                        self.shutdown = Some("lost the connection to the scheduler".into());
                    }
                    break;
                }
            }
        }
        Ok(any)
    }

    fn on_server_frame(&mut self, server: u32, frame: Frame, lent: &mut Option<Lent<'_>>) {
        let request = frame.header.request_id.get();
        match frame.opcode() {
            Opcode::PushAck => {
                self.outstanding.complete(request, None);
            }
            Opcode::PullReply if frame.values_were_direct() => {
                self.outstanding.complete(request, None);
            }
            Opcode::PullReply => self.copy_pull_values(request, &frame, lent),
            Opcode::Error => {
                let status = frame.header.status();
                let error = if status == Status::KeysUnknown {
                    // The server's cache lost the list: forget it here too, so both agree again
                    // and the next request carries the keys.
                    let list = (frame.header.table.get(), frame.header.key_signature.get());
                    if let Some(cache) = self.key_caches.get_mut(server as usize) {
                        cache.remove(list);
                    }
                    EngineError::KeyListMissed {
                        servers: vec![server],
                    }
                } else {
                    EngineError::Remote {
                        server,
                        status,
                        message: String::from_utf8_lossy(frame.extra()).into_owned(),
                    }
                };
                if self.outstanding.complete(request, Some(error)).is_none() {
                    tracing::error!(
                        "server {server}: {:?}: {}",
                        frame.header.status(),
                        String::from_utf8_lossy(frame.extra())
                    );
                }
            }
            op => tracing::warn!("server {server} sent an unexpected {op:?} frame"),
        }
    }

    /// The values did not go straight to their buffer (encoded, or an empty reply): decode them
    /// into it, checking their number.
    fn copy_pull_values(&mut self, request: u64, frame: &Frame, lent: &mut Option<Lent<'_>>) {
        let Some(sub) = self.outstanding.requests.get(&request).cloned() else {
            return;
        };
        let dest = match lent.as_mut() {
            Some(l) if l.ticket == sub.ticket => l.values.get_mut(sub.values.clone()),
            _ => match self
                .outstanding
                .tickets
                .get_mut(&sub.ticket)
                .map(|p| &mut p.kind)
            {
                Some(Kind::Pull(PullInto::Owned(out))) => out.get_mut(sub.values.clone()),
                _ => None,
            },
        };
        let masked = frame.header.flags & ferrops_net::flags::VALUES_MASKED != 0;
        let decoded = ValueCodec::from_id(frame.header.value_codec).and_then(|codec| match dest {
            Some(d) if masked => {
                let n = scatter_masked(codec, frame, d)?;
                let keys = u64::from(frame.header.key_count.get());
                let rows = (n / (d.len() / keys.max(1) as usize).max(1)) as u64;
                let c = &mut self.changed_since;
                c.offered += keys;
                c.sent += rows;
                c.delayed += keys.saturating_sub(rows);
                Ok(n)
            }
            Some(d) => decode_values(codec, frame.values_bytes(), d).map(|()| d.len()),
            None => Ok(0),
        });
        let error = match decoded {
            Ok(n) => {
                self.metrics.values_copied(n * 4);
                None
            }
            Err(e) => Some(EngineError::Protocol {
                peer: format!("server {}", sub.server),
                detail: format!("pull reply values: {e}"),
            }),
        };
        self.outstanding.complete(request, error);
    }

    fn on_scheduler_frame(&mut self, frame: &Frame) {
        if frame.opcode() == Opcode::Error {
            let text = String::from_utf8_lossy(frame.extra()).into_owned();
            self.inbox.push_back(Control::Refused { reason: text });
            return;
        }
        match Control::decode(frame.extra()) {
            Ok(Control::Shutdown { reason, .. }) => {
                self.shutdown.get_or_insert(reason);
            }
            Ok(msg) => self.inbox.push_back(msg),
            Err(e) => tracing::error!("undecodable message from the scheduler: {e}"),
        }
    }

    /// Drives progress until `done` says so, the job shuts down, or `deadline` passes.
    pub fn drive_until(
        &mut self,
        mut done: impl FnMut(&mut ClientIo) -> bool,
        lent: &mut Option<Lent<'_>>,
        deadline: Option<Instant>,
    ) -> Result<bool, EngineError> {
        loop {
            if done(self) {
                return Ok(true);
            }
            if let Some(reason) = &self.shutdown {
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
            |io| {
                while let Some(msg) = io.inbox.pop_front() {
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
        match found {
            Some(result) if arrived => result,
            _ => Err(EngineError::Refused(format!(
                "no answer from the scheduler within {} s",
                timeout.as_secs()
            ))),
        }
    }
}

/// Writes the rows a masked reply carries into their places in `dest` (the rows of the reply's
/// keys, in order); returns how many floats it wrote.
fn scatter_masked(
    codec: ValueCodec,
    frame: &Frame,
    dest: &mut [f32],
) -> Result<usize, ferrops_net::codec::CodecError> {
    let keys = frame.header.key_count.get() as usize;
    let mask = frame.extra();
    if keys == 0 || !dest.len().is_multiple_of(keys) || mask.len() != keys.div_ceil(8) {
        return Err(ferrops_net::codec::CodecError::Length {
            what: "pull reply value mask",
            got: mask.len(),
            expected: keys.div_ceil(8),
        });
    }
    let dim = dest.len() / keys;
    let rows: Vec<usize> = (0..keys)
        .filter(|i| mask[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    let mut values = vec![0.0f32; rows.len() * dim];
    decode_values(codec, frame.values_bytes(), &mut values)?;
    for (r, chunk) in rows.iter().zip(values.chunks_exact(dim.max(1))) {
        dest[r * dim..(r + 1) * dim].copy_from_slice(chunk);
    }
    Ok(values.len())
}
