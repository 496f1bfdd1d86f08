//! Shared-memory connections against a real event loop: frames larger than half the ring
//! cross its end intact, and a peer that corrupts its ring loses its own connection only.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ShmConn, MIN_RING};
use crate::auth::{self, ClusterKey, Credentials, Identity, Secret};
use crate::{
    Budget, Budgets, BufferPool, CloseReason, EventLoop, Frame, FrameLimits, FrameParts, Handler,
    Header, Io, Link, Metrics, NoDirectValues, Opcode, PeerId, ReadOutcome,
};

/// How long a test waits for anything before it fails (a hang guard, not a speed target).
const PATIENCE: Duration = Duration::from_secs(20);

fn credentials(role: u8) -> Credentials {
    Credentials {
        key: ClusterKey::Secret(Secret::new("shm-test").unwrap()),
        me: Identity::unassigned(role),
    }
}

/// Echoes every frame's extra section back; reports every close with its reason.
struct Echo {
    closes: mpsc::Sender<CloseReason>,
    stop: mpsc::Receiver<()>,
}

impl Handler for Echo {
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        let mut reply = FrameParts::with_extra(Header::new(Opcode::Control), frame.extra());
        let _ = io.send(peer, &mut reply);
    }

    fn on_close(&mut self, _peer: PeerId, reason: &CloseReason, _io: &mut Io<'_>) {
        let _ = self.closes.send(reason.clone());
    }

    fn should_stop(&self) -> bool {
        self.stop.try_recv().is_ok()
    }
}

/// An echoing loop listening for shared memory; its TCP address, its closes, and its stopper.
struct Server {
    addr: SocketAddr,
    closes: mpsc::Receiver<CloseReason>,
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn server() -> Server {
    server_with(Budget::default())
}

fn server_with(budget: Budget) -> Server {
    let mut ev = EventLoop::with_budget(
        Some("127.0.0.1:0".parse().unwrap()),
        FrameLimits::default(),
        Metrics::new(),
        credentials(0),
        budget,
    )
    .unwrap();
    ev.set_tick(Duration::from_millis(10));
    let addr = ev.local_addr().unwrap();
    ev.listen_shm(addr).unwrap();
    let (closes_tx, closes) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut echo = Echo {
            closes: closes_tx,
            stop: stop_rx,
        };
        ev.run(&mut echo).unwrap();
    });
    Server {
        addr,
        closes,
        stop,
        thread: Some(thread),
    }
}

/// An authenticated client link with rings of `capacity`.
fn client(addr: SocketAddr, capacity: usize) -> Link {
    let conn = ShmConn::connect(
        addr,
        capacity,
        PATIENCE,
        FrameLimits::default(),
        BufferPool::new(),
        Metrics::new(),
    )
    .unwrap();
    let mut link = Link::from(conn);
    auth::authenticate(&mut link, &credentials(1), PATIENCE).unwrap();
    link
}

/// Reads the next frame, moving queued output along meanwhile.
fn next_frame(link: &mut Link) -> ReadOutcome {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match link.read_frame(&mut NoDirectValues) {
            Ok(ReadOutcome::WouldBlock) => {}
            Ok(other) => return other,
            Err(e) => panic!("read failed: {e}"),
        }
        link.flush().unwrap();
        assert!(Instant::now() < deadline, "no frame within {PATIENCE:?}");
        std::thread::yield_now();
    }
}

fn echo(link: &mut Link, extra: &[u8]) -> Vec<u8> {
    let mut frame = FrameParts::with_extra(Header::new(Opcode::Control), extra);
    frame.finish(true);
    link.send(&frame).unwrap();
    match next_frame(link) {
        ReadOutcome::Frame(f) => f.extra().to_vec(),
        other => panic!("expected the echo, got {other:?}"),
    }
}

/// A distinct pattern per round, so a frame read from the wrong place in the ring shows.
fn pattern(round: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + round * 7) as u8).collect()
}

#[test]
fn frames_larger_than_half_the_ring_wrap_around_it_intact() {
    let server = server();
    let mut link = client(server.addr, MIN_RING);
    // Header and extra of ~3 KB in a 4 KiB ring: every frame after the first crosses the end
    // of the ring, each at a different place; the echo checksum checks every byte.
    for round in 0..40 {
        let len = 2_900 + round * 5;
        let sent = pattern(round, len);
        assert_eq!(echo(&mut link, &sent), sent, "round {round}");
    }
    // Frames several times the ring's size pass too (written while the other side reads).
    let big = pattern(99, 5 * MIN_RING);
    assert_eq!(echo(&mut link, &big), big);
}

#[test]
fn a_corrupt_ring_closes_that_connection_and_the_server_keeps_serving_others() {
    let server = server();
    let mut good = client(server.addr, MIN_RING);
    assert_eq!(echo(&mut good, b"before"), b"before");

    // A write position far beyond the ring's size.
    let Link::Shm(mut bad) = client(server.addr, MIN_RING) else {
        unreachable!()
    };
    bad.corrupt_outgoing_head(1 << 40);
    let reason = server.closes.recv_timeout(PATIENCE).unwrap();
    let CloseReason::Error(text) = reason else {
        panic!("expected an error close, got {reason:?}")
    };
    assert!(text.contains("ring corrupt"), "{text}");
    assert_eq!(echo(&mut good, b"after head"), b"after head");

    // A frame header that claims a gigantic payload (a corrupt length).
    let Link::Shm(mut bad) = client(server.addr, MIN_RING) else {
        unreachable!()
    };
    let mut header = Header::new(Opcode::Control);
    header.extra_len = u32::MAX.into();
    header.seal();
    bad.write_raw(zerocopy::IntoBytes::as_bytes(&header));
    let reason = server.closes.recv_timeout(PATIENCE).unwrap();
    let CloseReason::Error(text) = reason else {
        panic!("expected an error close, got {reason:?}")
    };
    assert!(text.contains("exceeds the configured limit"), "{text}");
    assert_eq!(echo(&mut good, b"after length"), b"after length");

    // And garbage in place of a frame.
    let Link::Shm(mut bad) = client(server.addr, MIN_RING) else {
        unreachable!()
    };
    bad.write_raw(&[0xAB; 200]);
    let reason = server.closes.recv_timeout(PATIENCE).unwrap();
    assert!(
        matches!(&reason, CloseReason::Error(t) if t.contains("bad magic")),
        "{reason:?}"
    );
    assert_eq!(echo(&mut good, b"still here"), b"still here");
}

#[test]
fn a_client_that_goes_away_is_seen_as_closed() {
    let server = server();
    let link = client(server.addr, MIN_RING);
    drop(link);
    assert_eq!(
        server.closes.recv_timeout(PATIENCE).unwrap(),
        CloseReason::PeerClosed
    );
}

#[test]
fn the_dialer_refuses_rings_of_a_bad_size_and_a_missing_listener() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dial = |capacity| {
        ShmConn::connect(
            addr,
            capacity,
            PATIENCE,
            FrameLimits::default(),
            BufferPool::new(),
            Metrics::new(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(dial(MIN_RING + 1).contains("power of two"));
    assert!(dial(MIN_RING).contains(&super::socket_name(addr)));
}

#[test]
fn shared_memory_connections_count_against_the_connection_limit() {
    let server = server_with(Budget::new(Budgets {
        max_connections: 1,
        ..Budgets::default()
    }));
    let mut first = client(server.addr, MIN_RING);
    let second = ShmConn::connect(
        server.addr,
        MIN_RING,
        PATIENCE,
        FrameLimits::default(),
        BufferPool::new(),
        Metrics::new(),
    )
    .unwrap();
    let refused = auth::authenticate(&mut Link::from(second), &credentials(1), PATIENCE);
    assert!(refused.is_err(), "a connection over the limit is refused");
    assert_eq!(echo(&mut first, b"served"), b"served");
}

/// A driver's connection to a scheduler, and the scheduler's end of it.
fn scheduler() -> (crate::Peer, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let driver_end = crate::Peer::connect(
        listener.local_addr().unwrap(),
        PATIENCE,
        FrameLimits::default(),
        BufferPool::new(),
        Metrics::new(),
    )
    .unwrap();
    (driver_end, listener.accept().unwrap().0)
}

/// The servers' replies' extra sections, and how many scheduler frames arrived.
#[derive(Default)]
struct Replies(Vec<Vec<u8>>, usize);

impl crate::FrameSink for Replies {
    fn direct_values(&mut self, _: &Header) -> Option<&mut [u8]> {
        None
    }
}

impl crate::ClientHandler for Replies {
    type Error = crate::NetError;
    fn server_frame(&mut self, _: u32, frame: Frame) {
        self.0.push(frame.extra().to_vec());
    }
    fn server_lost(&mut self, server: u32) -> Result<(), crate::NetError> {
        Err(crate::NetError::UnknownPeer(server as usize))
    }
    fn scheduler_frame(&mut self, _: Frame) {
        self.1 += 1;
    }
    fn scheduler_lost(&mut self) {}
}

#[test]
fn a_driver_without_busy_polling_sleeps_until_the_servers_wakeup() {
    let server = server();
    let link = client(server.addr, MIN_RING);
    let (scheduler, _scheduler_end) = scheduler();
    let (done, replies) = mpsc::channel();
    // The driver waits without a timeout: only the server's wakeup byte can end the wait.
    std::thread::spawn(move || {
        let mut driver = crate::ClientDriver::new(scheduler, Duration::ZERO).unwrap();
        driver.add_server(link).unwrap();
        let mut got = Replies::default();
        // Larger than the ring: the rest of the request waits in the queue for room as well.
        let request = pattern(1, 3 * MIN_RING);
        let mut frame = FrameParts::with_extra(Header::new(Opcode::Control), &request);
        frame.finish(true);
        driver.send_to_server(0, &frame, &mut got).unwrap();
        while got.0.is_empty() {
            driver.progress(None, &mut got).unwrap();
        }
        let _ = done.send(got.0.pop().unwrap() == request);
    });
    assert!(
        replies.recv_timeout(PATIENCE).unwrap(),
        "the echo came back intact"
    );
}

/// A driver whose only server link is in shared memory spins without system calls, but a
/// stream of short waits must still read its scheduler's socket (heartbeats, shutdown).
#[test]
fn a_driver_busy_with_a_shared_memory_server_still_reads_its_scheduler() {
    let server = server();
    let link = client(server.addr, MIN_RING);
    let (scheduler, scheduler_end) = scheduler();
    let mut scheduler_end = crate::Peer::new(
        mio::net::TcpStream::from_std(scheduler_end),
        FrameLimits::default(),
        BufferPool::new(),
        Metrics::new(),
    )
    .unwrap();
    let mut note = FrameParts::with_extra(Header::new(Opcode::Control), b"heartbeat");
    note.finish(true);
    scheduler_end.send(&note).unwrap();
    while scheduler_end.queued_bytes() > 0 {
        scheduler_end.flush().unwrap();
    }
    let mut driver = crate::ClientDriver::new(scheduler, Duration::from_millis(5)).unwrap();
    driver.add_server(link).unwrap();
    let mut got = Replies::default();
    let deadline = Instant::now() + PATIENCE;
    for round in 0..2000 {
        let request = pattern(round, 8);
        let mut frame = FrameParts::with_extra(Header::new(Opcode::Control), &request);
        frame.finish(true);
        driver.send_to_server(0, &frame, &mut got).unwrap();
        while got.0.len() <= round {
            driver.progress(Some(PATIENCE), &mut got).unwrap();
            assert!(Instant::now() < deadline, "no echo within {PATIENCE:?}");
        }
        assert_eq!(got.0[round], request);
    }
    assert_eq!(got.1, 1, "the scheduler's frame was never read");
}

#[test]
fn a_dialer_that_sends_nothing_holds_up_no_one_else() {
    use std::io::Read;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};

    let server = server();
    let name = super::socket_name(server.addr);
    let mut silent =
        UnixStream::connect_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    // Served while the silent dialer still waits for its setup to be read...
    let mut link = client(server.addr, MIN_RING);
    assert_eq!(echo(&mut link, b"served"), b"served");
    // ...not after the listener gave up on it (the setup timeout closes it).
    silent.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = silent.read(&mut byte).unwrap_err();
    assert_eq!(
        pending.kind(),
        std::io::ErrorKind::WouldBlock,
        "the silent dialer is still open while the next one is served"
    );
}

#[test]
fn servers_on_one_port_of_two_addresses_have_listeners_of_their_own() {
    // Names only (no TCP port is bound): a port of this process's own, so that no other
    // test run on the host binds the same names.
    let port = 20_000 + (std::process::id() % 40_000) as u16;
    let first = SocketAddr::from(([127, 0, 0, 1], port));
    let second = SocketAddr::from(([127, 0, 0, 2], port));
    assert_ne!(super::socket_name(first), super::socket_name(second));
    let _a = super::bind(first).unwrap();
    let _b = super::bind(second).unwrap();
    let again = super::bind(first).unwrap_err().to_string();
    assert!(again.contains(&super::socket_name(first)), "{again}");
}
