//! What a handler can do with the loop's connections ([`Io`]), and adding a connection.

use std::net::SocketAddr;
use std::time::Duration;

use mio::{Interest, Registry, Token};

use super::{AuthState, CloseReason, Io, PeerId, Settings};
use crate::auth::{self, Identity};
use crate::{FrameParts, Header, Link, Metrics, NetError, Opcode, Peer};

impl Io<'_> {
    /// Finishes `frame` (lengths, checksums) and sends it to `peer`. Over TCP, a frame the
    /// socket does not take at once is written on, straight from its slices, while the peer
    /// reads, for up to the loop's busy-poll time without progress; only then is the rest
    /// copied into the connection's queue. Nothing else runs on this loop meanwhile, so a pull
    /// reply's slices of storage cannot change under it.
    pub fn send(&mut self, peer: PeerId, frame: &mut FrameParts<'_>) -> Result<(), NetError> {
        frame.finish(self.settings.payload_crc);
        let patience = self.settings.busy_poll;
        let p = self.link_mut(peer)?;
        let before = p.queued_bytes();
        p.send_patiently(frame, patience)?;
        let after = p.queued_bytes();
        self.settings.budget.replies_changed(before, after);
        self.after_send(peer, before == 0)
    }

    /// Bytes queued for `peer` and not yet written to its socket (0 for an unknown peer).
    pub fn queued_bytes(&self, peer: PeerId) -> usize {
        self.peers
            .get(peer)
            .and_then(Option::as_ref)
            .map_or(0, Link::queued_bytes)
    }

    /// Sends `frame` with its values RDMA-written into `dest`, the buffer the peer named in
    /// its request (the zero-copy pull reply). Only RDMA connections can.
    pub fn send_values_to(
        &mut self,
        peer: PeerId,
        frame: &mut FrameParts<'_>,
        dest: crate::RemoteRegion,
    ) -> Result<(), NetError> {
        // The values skip the frame, so they are not covered by its payload checksum.
        frame.finish(false);
        self.link_mut(peer)?.send_values_to(frame, dest)
    }

    /// [`Io::send_values_to`] with the values read by the device straight from `region`, which
    /// holds them all (a parameter segment): no copy on this side.
    ///
    /// # Safety
    /// `region` must stay mapped at its address for as long as the connection lives (it is
    /// registered once and reused).
    pub unsafe fn send_values_from_region_to(
        &mut self,
        peer: PeerId,
        frame: &mut FrameParts<'_>,
        dest: crate::RemoteRegion,
        region: &[u8],
    ) -> Result<(), NetError> {
        frame.finish(false);
        let link = self.link_mut(peer)?;
        // SAFETY: forwarded from the caller.
        unsafe { link.send_values_from_region_to(frame, dest, region) }
    }

    fn link_mut(&mut self, peer: PeerId) -> Result<&mut Link, NetError> {
        self.peers
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or(NetError::UnknownPeer(peer))
    }

    /// Whether the connection to `peer` is RDMA.
    pub fn is_rdma(&self, peer: PeerId) -> bool {
        self.peers
            .get(peer)
            .and_then(Option::as_ref)
            .is_some_and(Link::is_rdma)
    }

    fn after_send(&mut self, peer: PeerId, was_empty: bool) -> Result<(), NetError> {
        let Some(p) = self.peers.get_mut(peer).and_then(Option::as_mut) else {
            return Ok(());
        };
        let queued = p.queued_bytes();
        if queued > self.settings.max_backlog {
            return Err(NetError::Backlog {
                peer,
                queued,
                limit: self.settings.max_backlog,
            });
        }
        if was_empty && queued > 0 {
            p.reregister(
                self.registry,
                Token(peer),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    /// Sends an error frame with `message` (best effort).
    pub fn send_error(
        &mut self,
        peer: PeerId,
        request: Option<&Header>,
        status: crate::Status,
        message: &str,
    ) {
        let mut header = Header::new(Opcode::Error);
        if let Some(req) = request {
            header.request_id = req.request_id;
            header.table = req.table;
            // Which key list a refusal is about (a signature the server does not hold).
            header.key_signature = req.key_signature;
        }
        header.status = (status as u16).into();
        let mut frame = FrameParts::with_extra(header, message.as_bytes());
        if let Err(e) = self.send(peer, &mut frame) {
            tracing::debug!("could not send error to peer {peer}: {e}");
        }
    }

    /// Closes the connection to `peer` after trying to flush what is queued.
    pub fn close(&mut self, peer: PeerId, reason: CloseReason) {
        if let Some(mut p) = self.peers.get_mut(peer).and_then(Option::take) {
            let _ = p.flush();
            // What it never wrote is dropped with it.
            self.settings.budget.replies_changed(p.queued_bytes(), 0);
            let _ = p.deregister(self.registry);
            self.settings.metrics.connection_closed();
            // The handler only hears of connections it was told about.
            if let AuthState::Ready(_) = std::mem::take(&mut self.auth[peer]) {
                self.closed.push((peer, reason));
            }
        }
    }

    /// Who `peer` proved to be in the handshake (`None` for no such connection).
    pub fn identity(&self, peer: PeerId) -> Option<Identity> {
        proved_identity(self.auth, peer)
    }

    /// Opens a connection to `addr`, authenticates it and adds it to the loop.
    pub fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> Result<PeerId, NetError> {
        self.connect_as(addr, timeout, self.settings.credentials.me)
    }

    /// [`Io::connect`] presenting identity `me` (with the loop's cluster key): a node that
    /// learned its node id after its loop started (a server, from its welcome) dials as it.
    pub fn connect_as(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        me: Identity,
    ) -> Result<PeerId, NetError> {
        let creds = auth::Credentials {
            key: self.settings.credentials.key.clone(),
            me,
        };
        let (link, identity) = dial_as(self.settings, &creds, addr, timeout)?;
        add_peer(
            (self.peers, self.auth),
            self.registry,
            &self.settings.metrics,
            link,
            AuthState::Ready(identity),
        )
    }

    /// Adds a connection made and authenticated elsewhere (see [`auth::authenticate`]) to the
    /// running loop, like [`EventLoop::adopt`](crate::EventLoop::adopt) before it runs: a node that dialed a peer again
    /// from its handler (on a tick, with its own backoff) hands the new connection in here;
    /// `identity` is who the peer proved to be.
    pub fn adopt(&mut self, peer: impl Into<Link>, identity: Identity) -> Result<PeerId, NetError> {
        add_peer(
            (self.peers, self.auth),
            self.registry,
            &self.settings.metrics,
            peer.into(),
            AuthState::Ready(identity),
        )
    }

    /// The remote address of `peer`.
    pub fn peer_addr(&self, peer: PeerId) -> Option<SocketAddr> {
        self.peers
            .get(peer)
            .and_then(Option::as_ref)
            .and_then(Link::addr)
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.settings.metrics
    }
}

/// Dials `addr` over TCP and runs the client side of the handshake.
pub(super) fn dial(
    s: &Settings,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(Link, Identity), NetError> {
    dial_as(s, &s.credentials, addr, timeout)
}

fn dial_as(
    s: &Settings,
    creds: &auth::Credentials,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(Link, Identity), NetError> {
    let mut peer = Peer::connect(addr, timeout, s.limits, s.pool.clone(), s.metrics.clone())?;
    let identity = auth::authenticate(&mut peer, creds, s.handshake_timeout)?;
    Ok((peer.into(), identity))
}

pub(super) fn add_peer(
    (peers, auth): (&mut Vec<Option<Link>>, &mut Vec<AuthState>),
    registry: &Registry,
    metrics: &Metrics,
    mut peer: Link,
    state: AuthState,
) -> Result<PeerId, NetError> {
    let id = match peers.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            peers.push(None);
            peers.len() - 1
        }
    };
    if auth.len() < peers.len() {
        auth.resize_with(peers.len(), AuthState::default);
    }
    peer.register(registry, Token(id), Interest::READABLE)?;
    peers[id] = Some(peer);
    auth[id] = state;
    metrics.connection_opened();
    Ok(id)
}

/// The identity connection `peer` proved, once it has.
pub(super) fn proved_identity(auth: &[AuthState], peer: PeerId) -> Option<Identity> {
    match auth.get(peer) {
        Some(AuthState::Ready(id)) => Some(*id),
        _ => None,
    }
}
