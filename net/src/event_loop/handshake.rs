//! The accepting side of the authentication handshake, run by the loop for every connection
//! it accepts: the handler hears of a peer only once it has authenticated.

use std::net::SocketAddr;
use std::time::Instant;

use super::handle::add_peer;
use super::{AuthState, CloseReason, EventLoop, Handler, PeerId};
use crate::auth::{self, AuthError, ServerHandshake, ServerStep};
use crate::{Frame, Link, NetError};

impl EventLoop {
    /// Adds a freshly accepted connection from `addr`: it may carry nothing but the handshake
    /// (tight limits) and has until the handshake timeout to finish it.
    pub(super) fn add_unauthenticated(
        &mut self,
        mut link: Link,
        addr: SocketAddr,
    ) -> Result<PeerId, NetError> {
        link.replace_limits(auth::HANDSHAKE_LIMITS);
        let state = AuthState::Pending {
            handshake: ServerHandshake::default(),
            addr,
            deadline: Instant::now() + self.settings.handshake_timeout,
        };
        add_peer(
            (&mut self.peers, &mut self.auth),
            self.poll.registry(),
            &self.settings.metrics,
            link,
            state,
        )
    }

    /// Takes the next handshake message of a connection that has not authenticated yet:
    /// answers it, admits the peer (and tells the handler), or refuses and drops it.
    pub(super) fn handshake_step(
        &mut self,
        peer: PeerId,
        frame: &Frame,
        handler: &mut impl Handler,
        closed: &mut Vec<(PeerId, CloseReason)>,
    ) {
        let AuthState::Pending {
            handshake, addr, ..
        } = &mut self.auth[peer]
        else {
            return;
        };
        let addr = *addr;
        let step = auth::message_of(frame)
            .and_then(|msg| handshake.on_message(&self.settings.credentials, &msg));
        let mut io = self.io(closed);
        match step {
            Ok(ServerStep::Reply(msg)) => {
                if let Err(e) = io.send(peer, &mut auth::auth_frame(&msg)) {
                    io.close(peer, CloseReason::Error(e.to_string()));
                }
            }
            Ok(ServerStep::Admit(msg, identity)) => {
                if let Err(e) = io.send(peer, &mut auth::auth_frame(&msg)) {
                    io.close(peer, CloseReason::Error(e.to_string()));
                    return;
                }
                if let Some(link) = io.peers[peer].as_mut() {
                    link.replace_limits(io.settings.limits);
                }
                io.auth[peer] = AuthState::Ready(identity);
                tracing::debug!("peer {peer} ({addr}) authenticated as {identity:?}");
                handler.on_accept(peer, addr, &mut io);
            }
            Err(e) => {
                tracing::warn!("connection from {addr}: authentication failed: {e}");
                io.settings.metrics.auth_failed();
                if !matches!(e, AuthError::Refused(_)) {
                    io.send_error(peer, None, crate::Status::Unauthorized, &e.for_peer());
                }
                io.close(peer, CloseReason::Error(e.to_string()));
            }
        }
    }

    /// Drops connections that did not authenticate in time.
    pub(super) fn expire_handshakes(&mut self, closed: &mut Vec<(PeerId, CloseReason)>) {
        let now = Instant::now();
        for peer in 0..self.auth.len() {
            if let AuthState::Pending { addr, deadline, .. } = &self.auth[peer] {
                if *deadline <= now {
                    let why = format!(
                        "no authentication within {:?}",
                        self.settings.handshake_timeout
                    );
                    tracing::warn!("dropping connection from {addr}: {why}");
                    self.settings.metrics.auth_failed();
                    self.io(closed).close(peer, CloseReason::Error(why));
                }
            }
        }
    }
}
