//! Replication: a push travels down its range's chain (head → … → tail), each server applying
//! it with the same kernels in the order it arrived, and its acknowledgement travels back up;
//! the head acknowledges the worker once the tail has applied it.
//!
//! The servers of a chain reach each other over connections of their own: once welcomed, a
//! server dials every server of higher rank it shares a chain with (lower ranks dial it), as
//! its node id, with the cluster secret; one connection serves both directions. A server takes
//! a server connection only from a server it shares a chain with, and a forwarded push only
//! from the server before it in that push's range.

use std::time::{Duration, Instant};

use ferrops_net::auth::Identity;
use ferrops_net::{flags, CloseReason, Frame, FrameParts, Header, Io, Opcode, PeerId, Status};
use zerocopy::IntoBytes;

use super::push::acknowledge;
use super::request::Request;
use super::{Refusal, Server};
use crate::control::{reply_control, Control, Role};
use crate::key_list_cache::KeyListCache;

/// Frames of other servers held until this one adopts the routing they were sent under, at
/// most; beyond, they are handled (and refused as routed by another version) at once.
const MAX_HELD_FRAMES: usize = 4096;

/// The refusal of a push applied here but not down its chain, because of `why`.
pub(super) fn unreplicated(why: &str) -> Refusal {
    let msg = format!("{why} before this push was replicated; resend it");
    Refusal::new(Status::Unavailable, msg)
}

/// The ids of the entries of `sent` that `pick` selects.
fn ids_where<T>(sent: &std::collections::HashMap<u64, T>, pick: impl Fn(&T) -> bool) -> Vec<u64> {
    sent.iter()
        .filter(|(_, entry)| pick(entry))
        .map(|(&id, _)| id)
        .collect()
}

/// The refusal of a push whose next server in the chain is not connected.
fn not_connected(next: u32) -> Refusal {
    let msg = format!("server {next}, the next in this range's chain, is not connected");
    Refusal::new(Status::Unavailable, msg)
}

/// How often a server dials again a chain neighbour whose connection closed.
const REDIAL_EVERY: Duration = Duration::from_secs(1);

/// Where to acknowledge a forwarded push once the rest of the chain has: the connection it
/// came from (a worker, or the previous server) and its header there.
pub(super) struct Upstream {
    peer: PeerId,
    header: Header,
    /// The range it belongs to and the server it was forwarded to.
    range: u32,
    to: u32,
    /// When it was forwarded (its ack's wait is the replication lag).
    sent: std::time::Instant,
}

impl Server {
    /// Sends an applied push to `next`, the following server of its range's chain; its
    /// acknowledgement goes upstream when `next` acknowledges it.
    pub(super) fn forward(
        &mut self,
        request: &Request,
        range: u32,
        next: u32,
        io: &mut Io<'_>,
    ) -> Result<(), Refusal> {
        if !self.server_peers.contains_key(&next) {
            return Err(not_connected(next));
        }
        let h = request.frame.header;
        let keys = request.keys()?;
        // A signed list the next server holds (from an earlier forward) travels as its
        // signature, as between a worker and its server.
        let by_signature =
            self.next_holds_list(next, h.table.get(), h.key_signature.get(), keys.len());
        let id = self.next_forward;
        self.next_forward += 1;
        let mut fwd = Header::new(Opcode::Push);
        fwd.flags = flags::FORWARDED | (h.flags & (flags::VALUES_MASKED | flags::AGGREGATED));
        if by_signature {
            fwd.flags |= flags::KEYS_BY_SIGNATURE;
        }
        fwd.table = h.table;
        fwd.sender = h.sender;
        fwd.seq = h.seq;
        fwd.open_span = h.open_span;
        fwd.clock = h.clock;
        fwd.request_id = id.into();
        fwd.routing_version = self.routing.version.into();
        fwd.key_count = (keys.len() as u32).into();
        fwd.key_signature = h.key_signature;
        fwd.value_codec = h.value_codec;
        let values = [request.frame.values_bytes()];
        let keys = if by_signature { &[] } else { keys.as_bytes() };
        let extra = request.frame.extra();
        self.send_to_successor(next, fwd, keys, &values, extra, io)?;
        let upstream = Upstream {
            peer: request.peer,
            header: h,
            range,
            to: next,
            sent: std::time::Instant::now(),
        };
        self.forwards.insert(id, upstream);
        Ok(())
    }

    /// Whether the signed key list (`table`, `signature`) of `keys` keys travels to `next` by
    /// its signature: this end's mirror of `next`'s cache for this connection holds it (the
    /// access updates the mirror as `next` will update its cache).
    pub(super) fn next_holds_list(
        &mut self,
        next: u32,
        table: u32,
        signature: u64,
        keys: usize,
    ) -> bool {
        let version = self.routing.version;
        signature != 0
            && keys > 0
            && self.out_caches.get_mut(&next).is_some_and(|cache| {
                cache.follow_routing(version);
                cache
                    .access((table, signature), keys as u64, || ())
                    .is_some()
            })
    }

    /// Sends a frame to `next`, the following server of a chain; `Unavailable` when it is not
    /// connected or the send fails (the connection is then closed).
    pub(super) fn send_to_successor(
        &mut self,
        next: u32,
        header: Header,
        keys: &[u8],
        values: &[&[u8]],
        extra: &[u8],
        io: &mut Io<'_>,
    ) -> Result<(), Refusal> {
        let Some(&to) = self.server_peers.get(&next) else {
            return Err(not_connected(next));
        };
        let mut parts = FrameParts {
            header,
            keys,
            values,
            extra,
        };
        if let Err(e) = io.send(to, &mut parts) {
            io.close(to, CloseReason::Error(e.to_string()));
            let msg = format!("forwarding to server {next} failed: {e}");
            return Err(Refusal::new(Status::Unavailable, msg));
        }
        Ok(())
    }

    /// A frame from another server of a chain: a forwarded push, or the answer to one this
    /// server forwarded.
    pub(super) fn on_server_frame(
        &mut self,
        peer: PeerId,
        rank: u32,
        frame: Frame,
        io: &mut Io<'_>,
    ) {
        let h = frame.header;
        // Sent under a routing this server has not adopted yet (the scheduler's message is on
        // its way): held, in order, until it has. Every later frame of that server waits too.
        let ahead = h.routing_version.get() > self.routing.version;
        let holding = self.held_frames.iter().any(|(p, _, _)| *p == peer);
        if (ahead || holding) && self.held_frames.len() < MAX_HELD_FRAMES {
            self.held_frames.push((peer, rank, frame));
            return;
        }
        match frame.opcode() {
            Opcode::Push if h.flags & flags::FORWARDED != 0 => {
                let request = match self.admit(peer, frame, Some(rank)) {
                    Ok(r) => r,
                    Err((header, refusal)) => return self.refuse(io, peer, &header, &refusal),
                };
                if let Err(refusal) = self.push(&request, io) {
                    tracing::error!(
                        "a push forwarded by server {rank} was refused here: {}",
                        refusal.message
                    );
                    self.refuse(io, peer, &h, &refusal);
                }
            }
            Opcode::Copy => self.take_copy_step((peer, rank), frame, io),
            Opcode::Clock => {
                let (worker, completed) = (h.sender.get(), h.clock.get());
                if self.clocks.merge(worker, completed) {
                    self.forward_clock(worker, completed, io);
                    self.release_parked(io);
                }
            }
            Opcode::PushAck => {
                if let Some(up) = self.forwards.remove(&h.request_id.get()) {
                    self.meters.replicated(up.sent.elapsed());
                    acknowledge(io, up.peer, &up.header);
                } else {
                    self.batch_answered(h.request_id.get(), None, io);
                }
            }
            Opcode::Error => {
                let Some(up) = self.forwards.remove(&h.request_id.get()) else {
                    let why = String::from_utf8_lossy(frame.extra());
                    let msg = format!("server {rank}, a replica of this range, refused it: {why}");
                    let status = Status::from_u16(h.status.get());
                    let refusal = Refusal::new(status, msg);
                    self.batch_answered(h.request_id.get(), Some(&refusal), io);
                    return;
                };
                let mut status = Status::from_u16(h.status.get());
                if status == Status::KeysUnknown {
                    // The two ends' caches of this chain link disagree, not the worker's: the
                    // worker is not told that its own list missed.
                    if let Some(cache) = self.out_caches.get_mut(&rank) {
                        cache.remove((h.table.get(), h.key_signature.get()));
                    }
                    status = Status::BadRequest;
                }
                let why = String::from_utf8_lossy(frame.extra());
                let msg = format!("server {rank}, a replica of this range, refused it: {why}");
                self.refuse(io, up.peer, &up.header, &Refusal::new(status, msg));
            }
            op => {
                let msg = format!("servers do not accept {op:?} frames from servers");
                self.refuse_bad_request(io, peer, &h, msg);
            }
        }
    }

    /// A newer routing from the scheduler (a server died, a learner joined or finished its
    /// copy): adopt it; a server that held ranges and is in no chain any more has been fenced
    /// out and stops. Forwards to a server that is no longer next in their chain are refused
    /// upstream (`Unavailable`): the worker resends them to the head under the new routing,
    /// and every server of the new chain drops what it already applied. Ranges no longer held
    /// are dropped; new chain neighbours are dialed; copies to new learners start.
    pub(super) fn reroute(&mut self, routing: crate::routing::RoutingTable, io: &mut Io<'_>) {
        let Some(rank) = self.rank else { return };
        if routing.version <= self.routing.version {
            return;
        }
        let held_before = self.routing.held_by(rank).next().is_some();
        if held_before && routing.held_by(rank).next().is_none() {
            let why = format!(
                "server {rank} was removed from the job (routing version {}): the scheduler \
                 took it for dead",
                routing.version
            );
            tracing::error!("{why}");
            self.stop = Some(Err(crate::EngineError::Shutdown(why)));
            return;
        }
        for i in routing.held_by(rank) {
            let was_head = self.routing.ranges.get(i).is_some_and(|r| r.server == rank);
            if routing.ranges[i].server == rank && !was_head {
                tracing::warn!("server {rank} now heads range {i}");
                self.forget_resolutions_of(i as u32);
            }
        }
        self.routing = routing;
        let held: std::collections::BTreeSet<u32> =
            self.routing.held_by(rank).map(|i| i as u32).collect();
        self.tables.retain(|&(_, r), _| held.contains(&r));
        self.applied.keep_ranges(|r| held.contains(&r));
        let routing = &self.routing;
        self.copies_in
            .retain(|&r, _| routing.ranges[r as usize].learner == Some(rank));
        let chains = self.routing.clone();
        let stale = |range: u32, to: u32| chains.successor(range as usize, rank) != Some(to);
        self.fail_unreplicated(stale, "the chain changed", io);
        self.fail_open_batches("the chain changed", io);
        let gone: Vec<(u32, PeerId)> = self
            .server_peers
            .iter()
            .filter(|(&other, _)| !self.routing.share_a_chain(rank, other))
            .map(|(&r, &p)| (r, p))
            .collect();
        for (_, peer) in gone {
            self.drop_chain_peer(peer);
            io.close(peer, CloseReason::Local);
        }
        if let Err(e) = self.dial_chain_peers(io) {
            // The server it could not reach will be taken for dead by the scheduler, which
            // publishes a routing without it.
            tracing::error!("{e}");
        }
        self.start_copies(io);
        for (peer, from, frame) in std::mem::take(&mut self.held_frames) {
            if self.server_ranks.get(&peer) == Some(&from) {
                self.on_server_frame(peer, from, frame, io);
            }
        }
        let adopted = Control::RoutingAdopted {
            version: self.routing.version,
        };
        reply_control(io, self.scheduler, &adopted);
    }

    /// Passes a worker's clock to the servers after this one in its chains, so that every copy
    /// of a range — a learner, a spare that never heard from the worker — can answer its
    /// bounded-delay pulls the moment it becomes the head. A server passes a clock on only
    /// when it learned something from it, so clocks do not circle between chains.
    pub(super) fn forward_clock(&mut self, worker: u32, completed: u32, io: &mut Io<'_>) {
        let Some(rank) = self.rank else { return };
        let mut next: Vec<u32> = self
            .routing
            .held_by(rank)
            .filter_map(|i| self.routing.successor(i, rank))
            .collect();
        next.sort_unstable();
        next.dedup();
        let mut h = Header::new(Opcode::Clock);
        h.flags = flags::FORWARDED;
        h.sender = worker.into();
        h.clock = completed.into();
        for to in next {
            let Some(&peer) = self.server_peers.get(&to) else {
                continue;
            };
            if let Err(e) = io.send(peer, &mut FrameParts::header_only(h)) {
                io.close(peer, CloseReason::Error(e.to_string()));
            }
        }
    }

    /// The connection to server `rank` closed: what was forwarded to it is refused upstream.
    pub(super) fn lost_server(&mut self, rank: u32, io: &mut Io<'_>) {
        let why = "the next server of the chain was lost";
        self.fail_unreplicated(|_, to| to == rank, why, io);
    }

    /// Refuses (`Unavailable`: the worker resends) what this server sent down a chain and
    /// `gone(range, next server)` says will not be acknowledged: forwarded pushes and batches.
    fn fail_unreplicated(&mut self, gone: impl Fn(u32, u32) -> bool, why: &str, io: &mut Io<'_>) {
        let refusal = unreplicated(why);
        let forwards: Vec<u64> = ids_where(&self.forwards, |up| gone(up.range, up.to));
        for id in forwards {
            if let Some(up) = self.forwards.remove(&id) {
                self.refuse(io, up.peer, &up.header, &refusal);
            }
        }
        let batches = ids_where(&self.batches_out, |b| gone(b.range, b.to));
        for id in batches {
            self.batch_answered(id, Some(&refusal), io);
        }
    }

    /// Once welcomed: dials every server of higher rank this one shares a chain with. Lower
    /// ranks dial this one, so that no two servers wait on each other's dial.
    pub(super) fn dial_chain_peers(&mut self, io: &mut Io<'_>) -> Result<(), String> {
        let (Some(rank), Some(node)) = (self.rank, self.node_id) else {
            return Ok(());
        };
        let me = Identity {
            role: Role::Server.wire_index(),
            node,
        };
        let peers: Vec<u32> = (rank + 1..self.routing.server_addrs.len() as u32)
            .filter(|&other| self.routing.share_a_chain(rank, other))
            .filter(|other| !self.server_peers.contains_key(other))
            .collect();
        for other in peers {
            let addr = &self.routing.server_addrs[other as usize];
            let at = addr
                .parse()
                .map_err(|e| format!("server {other}'s address {addr} is not IP:PORT: {e}"))?;
            let peer = io
                .connect_as(at, self.dial_timeout, me)
                .map_err(|e| format!("cannot reach server {other} of a chain at {addr}: {e}"))?;
            tracing::info!("connected to server {other} at {addr} (replication chain)");
            self.add_chain_peer(other, peer);
        }
        // Accepted before the routing was known: keep only the servers of this one's chains.
        let strangers: Vec<(PeerId, u32)> = self
            .server_ranks
            .iter()
            .filter(|&(_, &other)| !self.routing.share_a_chain(rank, other) || other == rank)
            .map(|(&p, &r)| (p, r))
            .collect();
        for (peer, other) in strangers {
            tracing::warn!("closing the connection of server {other}: it shares no chain here");
            self.drop_chain_peer(peer);
            io.close(peer, CloseReason::Error("not a chain neighbour".into()));
        }
        Ok(())
    }

    /// Dials again, at most once every [`REDIAL_EVERY`], the servers of higher rank this one
    /// shares a chain with whose connection closed while the routing still names them: a
    /// closed connection is not a dead server (only the scheduler says that, with a routing
    /// without it), and until it is back every push of the chain is refused `Unavailable`.
    pub(super) fn redial_chain_peers(&mut self, now: Instant, io: &mut Io<'_>) {
        let Some(rank) = self.rank else {
            return;
        };
        let missing = (rank + 1..self.routing.server_addrs.len() as u32).any(|other| {
            self.routing.share_a_chain(rank, other) && !self.server_peers.contains_key(&other)
        });
        if !missing || now < self.next_redial {
            return;
        }
        self.next_redial = now + REDIAL_EVERY;
        match self.dial_chain_peers(io) {
            // A learner dialed only now gets its copy now.
            Ok(()) => self.start_copies(io),
            Err(e) => tracing::warn!("{e}; dialing again in {REDIAL_EVERY:?}"),
        }
    }

    /// Admits a connection from server node `node`: one of this server's chains, or a server
    /// this one's routing does not place yet (it may have adopted a newer routing first, see
    /// `Control::RoutingAdopted`); such a connection is closed when a routing adopted here
    /// shares no chain with it, and until then its frames are checked against this server's
    /// routing like any other.
    pub(super) fn admit_server(&mut self, peer: PeerId, node: u32) -> Result<(), String> {
        let other = node.wrapping_sub(1);
        if let Some(rank) = self.rank {
            let known = (other as usize) < self.routing.server_addrs.len();
            if other == rank || (known && !self.routing.share_a_chain(rank, other)) {
                return Err(format!(
                    "server {other} shares no replication chain with server {rank}"
                ));
            }
        }
        if self.server_peers.contains_key(&other) {
            return Err(format!("server {other} is already connected"));
        }
        self.add_chain_peer(other, peer);
        Ok(())
    }

    /// A connection to server `rank` of a chain, with an empty key cache each way.
    fn add_chain_peer(&mut self, rank: u32, peer: PeerId) {
        self.server_peers.insert(rank, peer);
        self.server_ranks.insert(peer, rank);
        let keys = self.chain_cache_keys;
        self.key_caches.insert(peer, KeyListCache::new(keys));
        self.out_caches.insert(rank, KeyListCache::new(keys));
    }

    /// Forgets the connection `peer` to a server of a chain; its rank, if it was one.
    pub(super) fn drop_chain_peer(&mut self, peer: PeerId) -> Option<u32> {
        let rank = self.server_ranks.remove(&peer)?;
        self.server_peers.remove(&rank);
        self.key_caches.remove(&peer);
        self.out_caches.remove(&rank);
        Some(rank)
    }
}
