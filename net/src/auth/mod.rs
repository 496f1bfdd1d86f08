//! Mutual authentication of every connection, before any other frame is accepted.
//!
//! Every node of a job holds the cluster secret ([`ClusterKey`]). When a connection opens,
//! the dialing side and the accepting side prove to each other, by HMAC-SHA256 over fresh
//! nonces from both, that they hold it, and each learns the other's [`Identity`] (role and
//! node id), which is then bound to the connection for its life: the engine refuses frames
//! that claim another sender. The proofs are checked in constant time; a recorded handshake
//! cannot be replayed (the verifier's nonce is new each time). What this protects and what it
//! does not (confidentiality) is in `docs/security.md`.
//!
//! - `key`: the secret, generated or given, never printed;
//! - `handshake`: the messages and both sides' state machines, without sockets;
//! - `drive`: running the dialing side over a [`crate::Link`] (or a plain socket, for tools);
//!   the accepting side is run by [`crate::EventLoop`], which hands a connection to its
//!   handler only once the peer is authenticated.

mod drive;
mod handshake;
mod key;

pub(crate) use drive::{auth_frame, message_of};
pub use drive::{
    authenticate, authenticate_stream, Dialed, DEFAULT_HANDSHAKE_TIMEOUT, HANDSHAKE_LIMITS,
};
pub use handshake::{
    AuthError, AuthMessage, ClientHandshake, Credentials, Identity, ServerHandshake, ServerStep,
    AUTH_MESSAGE_LEN,
};
pub use key::{ClusterKey, Secret, SecretError};
