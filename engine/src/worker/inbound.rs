//! What the worker does with the frames that arrive: replies complete their sub-requests, pull
//! values go into the buffer that waits for them (straight from the link when they are raw),
//! key-list misses make the worker forget the list, and the scheduler's messages queue up for
//! whoever waits on them. `ferrops_net::ClientDriver` reads the frames and calls in here.

use std::collections::VecDeque;
use std::time::Instant;

use ferrops_net::codec::values::decode_values;
use ferrops_net::codec::ValueCodec;
use ferrops_net::{ClientHandler, Frame, FrameSink, Header, Metrics, Opcode, Status};
use zerocopy::IntoBytes;

use super::pending::{Kind, Outstanding, PullInto};
use crate::control::Control;
use crate::key_list_cache::KeyListCache;
use crate::liveness::Silence;
use crate::EngineError;

/// A caller's slice lent to one blocking pull: values of `ticket` go straight into it.
pub(crate) struct Lent<'a> {
    pub ticket: u64,
    pub values: &'a mut [f32],
}

/// The worker's state that arriving frames change.
pub(crate) struct Inbound {
    pub outstanding: Outstanding,
    pub inbox: VecDeque<Control>,
    pub shutdown: Option<String>,
    pub metrics: Metrics,
    /// Per server: the key lists that server holds for this connection (see `key_list_cache`).
    pub key_caches: Vec<KeyListCache<()>>,
    /// Rows of changed-only pulls: offered (asked for), sent (changed), delayed (unchanged,
    /// left as the worker held them).
    pub changed_since: crate::filter::FilterCounts,
    /// How long the scheduler has said nothing (its heartbeat answers included).
    pub scheduler_silence: Silence,
    /// Whether the job replicates its ranges (R > 1): a lost server is then survived.
    pub replicated: bool,
    /// Servers out of the job (lost, or in no chain of the latest routing).
    pub dead: std::collections::BTreeSet<u32>,
    /// The newest routing the scheduler sent after a failover (`failover`).
    pub latest_routing: Option<crate::routing::RoutingTable>,
    /// Whether losing the scheduler is survived (once welcomed: the worker redials it), and
    /// whether it is lost now.
    pub survives_scheduler: bool,
    pub scheduler_down: bool,
    /// Rejoined a scheduler that has not published its routing yet (it is recovering).
    pub recovering: bool,
}

impl Inbound {
    /// `heartbeat_timeout`: how long the scheduler may stay silent.
    pub fn new(metrics: Metrics, heartbeat_timeout: std::time::Duration) -> Inbound {
        Inbound {
            scheduler_silence: Silence::new(heartbeat_timeout, Instant::now()),
            outstanding: Outstanding::default(),
            inbox: VecDeque::new(),
            shutdown: None,
            metrics,
            key_caches: Vec::new(),
            changed_since: Default::default(),
            replicated: false,
            dead: Default::default(),
            latest_routing: None,
            survives_scheduler: false,
            scheduler_down: false,
            recovering: false,
        }
    }

    /// A newer routing after a failover: the servers it leaves out are dead, and their
    /// requests fail (`ServerLost`) so that blocking calls resend them under it.
    fn routing_arrived(&mut self, routing: crate::routing::RoutingTable) {
        if self
            .latest_routing
            .as_ref()
            .is_some_and(|r| r.version >= routing.version)
        {
            return;
        }
        for server in 0..self.key_caches.len() as u32 {
            let held = routing.ranges.iter().any(|r| r.chain.contains(&server));
            if !held && self.dead.insert(server) {
                self.outstanding
                    .fail_server(server, || EngineError::ServerLost(server));
            }
        }
        self.latest_routing = Some(routing);
    }
}

/// [`Inbound`] while the caller may have lent a buffer: the handler the driver reads into.
pub(crate) struct Receiver<'a, 'b> {
    pub inbound: &'a mut Inbound,
    pub lent: &'a mut Option<Lent<'b>>,
}

impl FrameSink for Receiver<'_, '_> {
    /// Routes pull-reply values straight into the buffer that waits for them.
    fn direct_values(&mut self, header: &Header) -> Option<&mut [u8]> {
        let raw = header.value_codec == ValueCodec::Raw.id()
            && header.flags & ferrops_net::flags::VALUES_MASKED == 0;
        if header.opcode() != Some(Opcode::PullReply) || header.status() != Status::Ok || !raw {
            return None;
        }
        let outstanding = &mut self.inbound.outstanding;
        let sub = outstanding.requests.get(&header.request_id.get())?;
        let range = sub.values.clone();
        if let Some(lent) = self.lent.as_mut() {
            if lent.ticket == sub.ticket {
                return lent.values.get_mut(range).map(|v| v.as_mut_bytes());
            }
        }
        match outstanding
            .tickets
            .get_mut(&sub.ticket)
            .map(|p| &mut p.kind)
        {
            Some(Kind::Pull(PullInto::Owned(out))) => out.get_mut(range).map(|v| v.as_mut_bytes()),
            _ => None,
        }
    }
}

impl ClientHandler for Receiver<'_, '_> {
    type Error = EngineError;

    fn server_frame(&mut self, server: u32, frame: Frame) {
        self.on_server_frame(server, frame);
    }

    fn server_lost(&mut self, server: u32) -> Result<(), EngineError> {
        // A server the scheduler stopped: its requests fail with the scheduler's reason.
        let shutdown = self.inbound.shutdown.clone();
        let why = || match &shutdown {
            Some(reason) => EngineError::Shutdown(reason.clone()),
            None => EngineError::ServerLost(server),
        };
        self.inbound.outstanding.fail_server(server, why);
        match shutdown {
            Some(_) => Ok(()),
            // Replication covers it: the scheduler publishes a routing without it.
            None if self.inbound.replicated => {
                if self.inbound.dead.insert(server) {
                    tracing::warn!("lost the connection to server {server}; failing over");
                }
                Ok(())
            }
            None => Err(EngineError::ServerLost(server)),
        }
    }

    fn scheduler_frame(&mut self, frame: Frame) {
        self.on_scheduler_frame(&frame);
    }

    fn scheduler_lost(&mut self) {
        if self.inbound.survives_scheduler && self.inbound.shutdown.is_none() {
            tracing::warn!("lost the connection to the scheduler; going on and redialing it");
            self.inbound.scheduler_down = true;
            return;
        }
        if self.inbound.shutdown.is_none() {
            self.inbound.shutdown = Some("lost the connection to the scheduler".into());
        }
    }
}

impl Receiver<'_, '_> {
    fn on_server_frame(&mut self, server: u32, frame: Frame) {
        let request = frame.header.request_id.get();
        let outstanding = &mut self.inbound.outstanding;
        match frame.opcode() {
            Opcode::PushAck => {
                outstanding.complete(request, None);
            }
            Opcode::PullReply if frame.values_were_direct() => {
                outstanding.complete(request, None);
            }
            Opcode::PullReply => self.copy_pull_values(request, &frame),
            Opcode::Error => {
                let status = frame.header.status();
                let error = if status == Status::KeysUnknown {
                    // The server's cache lost the list: forget it here too, so both agree again
                    // and the next request carries the keys.
                    let list = (frame.header.table.get(), frame.header.key_signature.get());
                    if let Some(cache) = self.inbound.key_caches.get_mut(server as usize) {
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
                if outstanding.complete(request, Some(error)).is_none() {
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
    fn copy_pull_values(&mut self, request: u64, frame: &Frame) {
        let inbound = &mut *self.inbound;
        let Some(sub) = inbound.outstanding.requests.get(&request).cloned() else {
            return;
        };
        let dest = match self.lent.as_mut() {
            Some(l) if l.ticket == sub.ticket => l.values.get_mut(sub.values.clone()),
            _ => match inbound
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
                let c = &mut inbound.changed_since;
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
                inbound.metrics.values_copied(n * 4);
                None
            }
            Err(e) => Some(EngineError::Protocol {
                peer: format!("server {}", sub.server),
                detail: format!("pull reply values: {e}"),
            }),
        };
        inbound.outstanding.complete(request, error);
    }

    fn on_scheduler_frame(&mut self, frame: &Frame) {
        let inbound = &mut *self.inbound;
        inbound.scheduler_silence.heard(Instant::now());
        if frame.opcode() == Opcode::Error {
            let text = String::from_utf8_lossy(frame.extra()).into_owned();
            inbound.inbox.push_back(Control::Refused { reason: text });
            return;
        }
        match Control::decode(frame.extra()) {
            Ok(Control::Shutdown { reason, .. }) => {
                inbound.shutdown.get_or_insert(reason);
            }
            // Its arrival was the point (counted above).
            Ok(Control::HeartbeatAck) => {}
            Ok(Control::Routing { routing }) => {
                inbound.recovering = false;
                inbound.routing_arrived(routing);
            }
            Ok(msg) => inbound.inbox.push_back(msg),
            Err(e) => tracing::error!("undecodable message from the scheduler: {e}"),
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
