//! Running a handshake over a connection: the dialing side waits for each answer (a connection
//! is authenticated once, so a short wait loop costs nothing per frame); the accepting side is
//! driven by the event loop, one message at a time (`crate::event_loop`).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, IntoBytes};

use super::handshake::{AuthMessage, ClientHandshake, AUTH_MESSAGE_LEN};
use super::{AuthError, Credentials, Identity};
use crate::{
    pad8, Frame, FrameLimits, FrameParts, Header, Link, NetError, NoDirectValues, Opcode, Peer,
    ReadOutcome, Status, HEADER_LEN,
};

/// What a peer may send before it has authenticated: handshake messages and short refusals,
/// no keys and no values, so that an anonymous peer cannot make this node allocate.
pub const HANDSHAKE_LIMITS: FrameLimits = FrameLimits {
    max_keys_bytes: 0,
    max_values_bytes: 0,
    max_extra_bytes: 1024,
};

/// How long a node waits for each side of a handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An `Auth` frame carrying `msg`, finished.
pub(crate) fn auth_frame(msg: &AuthMessage) -> FrameParts<'_> {
    let mut frame = FrameParts::with_extra(Header::new(Opcode::Auth), msg.as_bytes());
    frame.finish(true);
    frame
}

/// The handshake message a frame carries, or the refusal it is.
pub(crate) fn message_of(frame: &Frame) -> Result<AuthMessage, AuthError> {
    match frame.opcode() {
        Opcode::Auth => AuthMessage::parse(frame.extra()),
        Opcode::Error => Err(refusal(frame.header.status(), frame.extra())),
        op => Err(AuthError::Unexpected(format!(
            "a {op:?} frame before the handshake finished"
        ))),
    }
}

fn refusal(status: Status, text: &[u8]) -> AuthError {
    let text = String::from_utf8_lossy(text);
    match status {
        Status::Unauthorized => AuthError::Refused(text.into_owned()),
        other => AuthError::Refused(format!("{other:?}: {text}")),
    }
}

/// A connection the dialing side can run the handshake over.
pub trait Dialed {
    fn send_frame(&mut self, frame: &FrameParts<'_>) -> Result<(), NetError>;
    fn flush_out(&mut self) -> Result<bool, NetError>;
    fn next_frame(&mut self) -> Result<ReadOutcome, NetError>;
    fn set_limits(&mut self, limits: FrameLimits) -> FrameLimits;
    fn remote(&self) -> Option<std::net::SocketAddr>;
}

/// `Dialed` for connection types whose own methods already have these meanings.
macro_rules! dialed_by_forwarding {
    ($($conn:ty),*) => {$(
        impl Dialed for $conn {
            fn send_frame(&mut self, frame: &FrameParts<'_>) -> Result<(), NetError> {
                self.send(frame)
            }
            fn flush_out(&mut self) -> Result<bool, NetError> {
                self.flush()
            }
            fn next_frame(&mut self) -> Result<ReadOutcome, NetError> {
                self.read_frame(&mut NoDirectValues)
            }
            fn set_limits(&mut self, limits: FrameLimits) -> FrameLimits {
                self.replace_limits(limits)
            }
            fn remote(&self) -> Option<std::net::SocketAddr> {
                self.addr()
            }
        }
    )*};
}

dialed_by_forwarding!(Link, Peer);

/// Authenticates a connection this node dialed: runs the client side of the handshake and
/// returns the identity the peer proved. Frames other than the handshake's are refused until
/// it is done. The connection keeps its limits.
pub fn authenticate(
    conn: &mut impl Dialed,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Identity, NetError> {
    let addr = conn.remote().map_or_else(|| "?".into(), |a| a.to_string());
    let limits = conn.set_limits(HANDSHAKE_LIMITS);
    let result = run_client(conn, creds, Instant::now() + timeout, timeout);
    conn.set_limits(limits);
    result.map_err(|source| NetError::Auth { addr, source })
}

fn run_client(
    link: &mut impl Dialed,
    creds: &Credentials,
    deadline: Instant,
    timeout: Duration,
) -> Result<Identity, AuthError> {
    let (mut hs, hello) = ClientHandshake::start(creds);
    send(link, &hello)?;
    let challenge = receive(link, deadline, timeout)?;
    let proof = match hs.on_challenge(&challenge) {
        Ok(p) => p,
        Err(e) => {
            refuse(link, &e);
            return Err(e);
        }
    };
    send(link, &proof)?;
    let welcome = receive(link, deadline, timeout)?;
    hs.on_welcome(&welcome)
}

fn send(link: &mut impl Dialed, msg: &AuthMessage) -> Result<(), AuthError> {
    link.send_frame(&auth_frame(msg))
        .map_err(|_| AuthError::Closed)?;
    link.flush_out().map_err(|_| AuthError::Closed)?;
    Ok(())
}

/// Tells the peer why it is refused (best effort: the connection is dropped next).
fn refuse(link: &mut impl Dialed, e: &AuthError) {
    let mut header = Header::new(Opcode::Error);
    header.status = (Status::Unauthorized as u16).into();
    let text = e.for_peer();
    let mut frame = FrameParts::with_extra(header, text.as_bytes());
    frame.finish(true);
    if link.send_frame(&frame).is_ok() {
        let until = Instant::now() + Duration::from_millis(200);
        while !matches!(link.flush_out(), Ok(true) | Err(_)) && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Waits for the next handshake message, keeping queued output moving.
fn receive(
    link: &mut impl Dialed,
    deadline: Instant,
    timeout: Duration,
) -> Result<AuthMessage, AuthError> {
    let mut pause = Duration::from_micros(20);
    loop {
        let _ = link.flush_out();
        match link.next_frame() {
            Ok(ReadOutcome::Frame(frame)) => return message_of(&frame),
            Ok(ReadOutcome::Closed) => return Err(AuthError::Closed),
            Ok(ReadOutcome::WouldBlock) => {}
            Err(NetError::Wire(e)) => return Err(AuthError::Unexpected(e.to_string())),
            Err(_) => return Err(AuthError::Closed),
        }
        if Instant::now() >= deadline {
            return Err(AuthError::Timeout(timeout));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// [`authenticate`] over a plain blocking socket: for tools and tests that speak the wire
/// format by hand (an attacker in a test, a status probe).
pub fn authenticate_stream(
    stream: &mut std::net::TcpStream,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Identity, AuthError> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|_| AuthError::Closed)?;
    let write = |s: &mut std::net::TcpStream, msg: &AuthMessage| {
        let frame = auth_frame(msg);
        let mut bytes = frame.header.as_bytes().to_vec();
        bytes.extend_from_slice(msg.as_bytes());
        bytes.resize(HEADER_LEN + pad8(AUTH_MESSAGE_LEN), 0);
        s.write_all(&bytes).map_err(|_| AuthError::Closed)
    };
    let (mut hs, hello) = ClientHandshake::start(creds);
    write(stream, &hello)?;
    let proof = hs.on_challenge(&read_message(stream)?)?;
    write(stream, &proof)?;
    hs.on_welcome(&read_message(stream)?)
}

fn read_message(stream: &mut std::net::TcpStream) -> Result<AuthMessage, AuthError> {
    let mut head = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut head)
        .map_err(|_| AuthError::Closed)?;
    let header = Header::read_from_bytes(&head).map_err(|_| AuthError::Closed)?;
    let len = header.payload_len();
    if len > HANDSHAKE_LIMITS.max_extra_bytes + 8 {
        return Err(AuthError::Unexpected(format!(
            "a {len}-byte handshake frame"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    stream
        .read_exact(&mut payload)
        .map_err(|_| AuthError::Closed)?;
    let extra = &payload[..(header.extra_len.get() as usize).min(payload.len())];
    match header.opcode() {
        Some(Opcode::Auth) => AuthMessage::parse(extra),
        Some(Opcode::Error) => Err(refusal(header.status(), extra)),
        _ => Err(AuthError::Unexpected("not a handshake frame".into())),
    }
}
