//! The handshake's messages and the two sides' state machines, apart from any socket so that
//! every step can be tested on its own.
//!
//! ```text
//! client                                   server
//!   Hello     {client id, flags, Nc}   →
//!             ←   Challenge {server id, flags, Ns, HMAC(k, "server" ‖ T)}
//!   Proof     {HMAC(k, "client" ‖ T)}  →
//!             ←   Welcome   {the client id the server bound}
//! T = label ‖ client id ‖ server id ‖ client flags ‖ Nc ‖ Ns
//! ```
//! Each side checks the other's proof over a nonce it chose itself, so a recorded handshake
//! proves nothing on a new connection; the proofs cover both identities, so a proof made for
//! one node or role cannot be used for another. A refusal is an `Error` frame with
//! [`crate::Status::Unauthorized`] and a one-line reason; both sides log it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{ClusterKey, Secret};

/// Bytes of each side's nonce.
const NONCE_LEN: usize = 32;
/// Bytes of an HMAC-SHA256 proof.
const MAC_LEN: usize = 32;
/// Domain label of the transcript (a new handshake version changes it).
const LABEL: &[u8] = b"ferrops-auth-v1";
/// Flag bit: the sender runs without a secret.
const INSECURE: u8 = 1;

/// Who a node is: its role (the engine's wire index of it) and its node id
/// ([`Identity::UNASSIGNED`] before the scheduler has given it one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub role: u8,
    pub node: u32,
}

impl Identity {
    /// The node id of a node the scheduler has not admitted yet.
    pub const UNASSIGNED: u32 = u32::MAX;

    /// A node of `role` with no node id yet.
    pub fn unassigned(role: u8) -> Identity {
        Identity {
            role,
            node: Identity::UNASSIGNED,
        }
    }

    fn bytes(self) -> [u8; 5] {
        let n = self.node.to_le_bytes();
        [self.role, n[0], n[1], n[2], n[3]]
    }
}

/// What a node presents and checks on every connection.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub key: ClusterKey,
    pub me: Identity,
}

/// Why a handshake failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the peer's proof does not match this node's cluster secret (the two hold different secrets)")]
    WrongSecret,
    #[error("this node has a cluster secret but the peer runs --insecure; refusing it")]
    PeerInsecure,
    #[error("this node runs --insecure but the peer requires a cluster secret")]
    SelfInsecure,
    /// The peer's refusal, as it phrased it.
    #[error("{0}")]
    Refused(String),
    #[error("unexpected handshake message: {0}")]
    Unexpected(String),
    #[error("the handshake did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the peer closed the connection during the handshake")]
    Closed,
}

impl AuthError {
    /// The refusal as the peer should read it (sent to it in the `Error` frame).
    pub fn for_peer(&self) -> String {
        match self {
            AuthError::WrongSecret => {
                "refused: this node's proof does not match the peer's cluster secret (the two hold different secrets)".into()
            }
            AuthError::PeerInsecure => {
                "refused: the peer requires a cluster secret and this node runs --insecure".into()
            }
            AuthError::SelfInsecure => {
                "refused: the peer runs --insecure and this node has a cluster secret".into()
            }
            other => format!("refused: {other}"),
        }
    }
}

/// Which step of the handshake a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Hello = 1,
    Challenge = 2,
    Proof = 3,
    Welcome = 4,
}

/// One handshake message: the extra section of an `Auth` frame.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct AuthMessage {
    phase: u8,
    flags: u8,
    role: u8,
    reserved: u8,
    node: U32,
    nonce: [u8; NONCE_LEN],
    mac: [u8; MAC_LEN],
}

/// Bytes of an [`AuthMessage`] on the wire.
pub const AUTH_MESSAGE_LEN: usize = 72;
const _: () = assert!(std::mem::size_of::<AuthMessage>() == AUTH_MESSAGE_LEN);

impl AuthMessage {
    fn new(phase: Phase, key: &ClusterKey, who: Identity) -> AuthMessage {
        AuthMessage {
            phase: phase as u8,
            flags: if key.is_insecure() { INSECURE } else { 0 },
            role: who.role,
            reserved: 0,
            node: who.node.into(),
            nonce: [0; NONCE_LEN],
            mac: [0; MAC_LEN],
        }
    }

    /// Decodes a message from a frame's extra section.
    pub fn parse(bytes: &[u8]) -> Result<AuthMessage, AuthError> {
        AuthMessage::read_from_bytes(bytes).map_err(|_| {
            AuthError::Unexpected(format!(
                "{} bytes, expected {AUTH_MESSAGE_LEN}",
                bytes.len()
            ))
        })
    }

    fn identity(&self) -> Identity {
        Identity {
            role: self.role,
            node: self.node.get(),
        }
    }

    fn insecure(&self) -> bool {
        self.flags & INSECURE != 0
    }

    fn expect(&self, phase: Phase) -> Result<(), AuthError> {
        if self.phase == phase as u8 {
            Ok(())
        } else {
            Err(AuthError::Unexpected(format!(
                "step {} where step {} ({phase:?}) was due",
                self.phase, phase as u8
            )))
        }
    }
}

/// A fresh nonce from the operating system's generator.
fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // The kernel's generator does not fail on Linux once booted; a zero nonce would still
    // only weaken replay protection, never let a wrong secret through.
    if let Err(e) = getrandom::fill(&mut n) {
        tracing::error!("random source failed ({e}); handshake nonce is weak");
    }
    n
}

/// What both proofs cover.
struct Transcript {
    client: Identity,
    server: Identity,
    client_flags: u8,
    client_nonce: [u8; NONCE_LEN],
    server_nonce: [u8; NONCE_LEN],
}

impl Transcript {
    fn mac(&self, secret: &Secret, side: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
        mac.update(LABEL);
        mac.update(side);
        mac.update(&self.client.bytes());
        mac.update(&self.server.bytes());
        mac.update(&[self.client_flags]);
        mac.update(&self.client_nonce);
        mac.update(&self.server_nonce);
        mac
    }

    fn prove(&self, secret: &Secret, side: &[u8]) -> [u8; MAC_LEN] {
        self.mac(secret, side).finalize().into_bytes().into()
    }

    /// Checks `proof` in constant time.
    fn verify(&self, secret: &Secret, side: &[u8], proof: &[u8]) -> Result<(), AuthError> {
        self.mac(secret, side)
            .verify_slice(proof)
            .map_err(|_| AuthError::WrongSecret)
    }
}

/// Checks that both sides agree on whether there is a secret at all.
fn agree_on_security(ours: &ClusterKey, peer_insecure: bool) -> Result<(), AuthError> {
    match (ours.is_insecure(), peer_insecure) {
        (false, true) => Err(AuthError::PeerInsecure),
        (true, false) => Err(AuthError::SelfInsecure),
        _ => Ok(()),
    }
}

/// The side that dialed.
pub struct ClientHandshake {
    creds: Credentials,
    nonce: [u8; NONCE_LEN],
    server: Option<Identity>,
}

impl ClientHandshake {
    /// Starts a handshake; the message is the `Hello` to send.
    pub fn start(creds: &Credentials) -> (ClientHandshake, AuthMessage) {
        let mut hello = AuthMessage::new(Phase::Hello, &creds.key, creds.me);
        hello.nonce = nonce();
        let hs = ClientHandshake {
            creds: creds.clone(),
            nonce: hello.nonce,
            server: None,
        };
        (hs, hello)
    }

    /// Checks the server's `Challenge`; returns the `Proof` to send.
    pub fn on_challenge(&mut self, msg: &AuthMessage) -> Result<AuthMessage, AuthError> {
        msg.expect(Phase::Challenge)?;
        agree_on_security(&self.creds.key, msg.insecure())?;
        let mut proof = AuthMessage::new(Phase::Proof, &self.creds.key, self.creds.me);
        if let ClusterKey::Secret(secret) = &self.creds.key {
            let t = Transcript {
                client: self.creds.me,
                server: msg.identity(),
                client_flags: 0,
                client_nonce: self.nonce,
                server_nonce: msg.nonce,
            };
            t.verify(secret, b"server", &msg.mac)?;
            proof.mac = t.prove(secret, b"client");
        }
        self.server = Some(msg.identity());
        Ok(proof)
    }

    /// Reads the server's `Welcome`; returns who the server is.
    pub fn on_welcome(&self, msg: &AuthMessage) -> Result<Identity, AuthError> {
        msg.expect(Phase::Welcome)?;
        let server = self
            .server
            .ok_or_else(|| AuthError::Unexpected("welcome before challenge".into()))?;
        if msg.identity() != self.creds.me {
            return Err(AuthError::Unexpected(format!(
                "the server bound {:?}, this node is {:?}",
                msg.identity(),
                self.creds.me
            )));
        }
        Ok(server)
    }
}

/// The side that accepted.
#[derive(Debug)]
pub struct ServerHandshake {
    awaiting: Awaiting,
}

#[derive(Debug)]
enum Awaiting {
    Hello,
    Proof {
        client: Identity,
        client_nonce: [u8; NONCE_LEN],
        server_nonce: [u8; NONCE_LEN],
    },
    Done,
}

/// What the accepting side does next.
#[derive(Debug)]
pub enum ServerStep {
    /// Send this and wait for the next message.
    Reply(AuthMessage),
    /// Send this (the `Welcome`); the peer is `Identity` from now on.
    Admit(AuthMessage, Identity),
}

impl Default for ServerHandshake {
    fn default() -> Self {
        ServerHandshake {
            awaiting: Awaiting::Hello,
        }
    }
}

impl ServerHandshake {
    /// Takes the client's next message; an error means refuse and close.
    pub fn on_message(
        &mut self,
        creds: &Credentials,
        msg: &AuthMessage,
    ) -> Result<ServerStep, AuthError> {
        match std::mem::replace(&mut self.awaiting, Awaiting::Done) {
            Awaiting::Hello => {
                msg.expect(Phase::Hello)?;
                agree_on_security(&creds.key, msg.insecure())?;
                let mut challenge = AuthMessage::new(Phase::Challenge, &creds.key, creds.me);
                challenge.nonce = nonce();
                if let ClusterKey::Secret(secret) = &creds.key {
                    let t = Transcript {
                        client: msg.identity(),
                        server: creds.me,
                        client_flags: msg.flags,
                        client_nonce: msg.nonce,
                        server_nonce: challenge.nonce,
                    };
                    challenge.mac = t.prove(secret, b"server");
                }
                self.awaiting = Awaiting::Proof {
                    client: msg.identity(),
                    client_nonce: msg.nonce,
                    server_nonce: challenge.nonce,
                };
                Ok(ServerStep::Reply(challenge))
            }
            Awaiting::Proof {
                client,
                client_nonce,
                server_nonce,
            } => {
                msg.expect(Phase::Proof)?;
                if let ClusterKey::Secret(secret) = &creds.key {
                    let t = Transcript {
                        client,
                        server: creds.me,
                        client_flags: 0,
                        client_nonce,
                        server_nonce,
                    };
                    t.verify(secret, b"client", &msg.mac)?;
                }
                let welcome = AuthMessage::new(Phase::Welcome, &creds.key, client);
                Ok(ServerStep::Admit(welcome, client))
            }
            Awaiting::Done => Err(AuthError::Unexpected("handshake already finished".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(secret: Option<&str>, role: u8, node: u32) -> Credentials {
        Credentials {
            key: secret.map_or(ClusterKey::Insecure, |s| {
                ClusterKey::Secret(Secret::new(s).unwrap())
            }),
            me: Identity { role, node },
        }
    }

    /// A server side of `server` that has answered `hello`, and its challenge.
    fn challenged(server: &Credentials, hello: &AuthMessage) -> (ServerHandshake, AuthMessage) {
        let mut s = ServerHandshake::default();
        let ServerStep::Reply(challenge) = s.on_message(server, hello).unwrap() else {
            panic!("a hello is answered by a challenge")
        };
        (s, challenge)
    }

    /// Runs a whole handshake in memory; the client's or the server's error, whichever came.
    fn run(client: &Credentials, server: &Credentials) -> Result<(Identity, Identity), AuthError> {
        let (mut c, hello) = ClientHandshake::start(client);
        let mut s = ServerHandshake::default();
        let ServerStep::Reply(challenge) = s.on_message(server, &hello)? else {
            panic!("a hello is answered by a challenge")
        };
        let proof = c.on_challenge(&challenge)?;
        let ServerStep::Admit(welcome, bound) = s.on_message(server, &proof)? else {
            panic!("a proof is answered by a welcome")
        };
        Ok((bound, c.on_welcome(&welcome)?))
    }

    /// Fails unless `step` failed because the peers' secrets differ (or a MAC was forged).
    fn refused_for_wrong_secret<T: std::fmt::Debug>(step: Result<T, AuthError>) {
        assert_eq!(step.unwrap_err(), AuthError::WrongSecret);
    }

    #[test]
    fn same_secret_admits_and_binds_both_identities() {
        let (bound, server) = run(&creds(Some("k"), 1, 7), &creds(Some("k"), 0, 2)).unwrap();
        assert_eq!(bound, Identity { role: 1, node: 7 });
        assert_eq!(server, Identity { role: 0, node: 2 });
    }

    #[test]
    fn a_wrong_secret_is_caught_by_the_client_first() {
        // The server proves itself first, so a node with the wrong secret never sends a proof.
        let (mut c, hello) = ClientHandshake::start(&creds(Some("wrong"), 1, 7));
        let (_, challenge) = challenged(&creds(Some("k"), 0, 2), &hello);
        refused_for_wrong_secret(c.on_challenge(&challenge));
    }

    #[test]
    fn a_forged_client_proof_is_refused_by_the_server() {
        let server = creds(Some("k"), 0, 2);
        let (_, hello) = ClientHandshake::start(&creds(Some("k"), 1, 7));
        let (mut s, _) = challenged(&server, &hello);
        let mut proof = AuthMessage::new(Phase::Proof, &server.key, Identity::unassigned(1));
        proof.mac = [0xAA; MAC_LEN];
        refused_for_wrong_secret(s.on_message(&server, &proof));
    }

    #[test]
    fn a_recorded_proof_does_not_open_a_new_connection() {
        // Record a good handshake, then replay the client's messages to a fresh server side:
        // the server's new nonce makes the old proof worthless.
        let (client, server) = (creds(Some("k"), 1, 7), creds(Some("k"), 0, 2));
        let (mut c, hello) = ClientHandshake::start(&client);
        let (_, challenge) = challenged(&server, &hello);
        let recorded_proof = c.on_challenge(&challenge).unwrap();
        let (mut replayed, _) = challenged(&server, &hello);
        refused_for_wrong_secret(replayed.on_message(&server, &recorded_proof));
    }

    #[test]
    fn a_proof_for_one_identity_does_not_serve_another() {
        // A man in the middle rewrites the hello's node id: the server's proof then covers
        // the rewritten identity, which the real client does not accept.
        let (client, server) = (creds(Some("k"), 1, 7), creds(Some("k"), 0, 2));
        let (mut c, mut hello) = ClientHandshake::start(&client);
        hello.node = 3.into();
        let (_, challenge) = challenged(&server, &hello);
        refused_for_wrong_secret(c.on_challenge(&challenge));
    }

    #[test]
    fn secret_and_insecure_nodes_refuse_each_other_both_ways() {
        assert_eq!(
            run(&creds(None, 1, 7), &creds(Some("k"), 0, 2)),
            Err(AuthError::PeerInsecure)
        );
        assert_eq!(
            run(&creds(Some("k"), 1, 7), &creds(None, 0, 2)),
            Err(AuthError::SelfInsecure)
        );
        assert!(run(&creds(None, 1, 7), &creds(None, 0, 2)).is_ok());
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let server = creds(Some("k"), 0, 2);
        let (c, hello) = ClientHandshake::start(&creds(Some("k"), 1, 7));
        let (mut s, challenge) = challenged(&server, &hello);
        // A second hello where the proof is due.
        assert!(matches!(
            s.on_message(&server, &hello),
            Err(AuthError::Unexpected(_))
        ));
        assert!(matches!(
            c.on_welcome(&challenge),
            Err(AuthError::Unexpected(_))
        ));
    }
}
