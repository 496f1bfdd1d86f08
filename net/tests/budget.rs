//! The event loop's budgets, driven by raw TCP clients: replies held back for the whole
//! process, and a large frame past the frame budget refused without the loop stopping.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrops_net::auth::{authenticate_stream, ClusterKey, Credentials, Identity, Secret};
use ferrops_net::{
    Budget, Budgets, EventLoop, Frame, FrameLimits, FrameParts, Handler, Header, Io, Metrics,
    Opcode, PeerId, Status, HEADER_LEN,
};
use zerocopy::{FromBytes, IntoBytes};

const REPLY: usize = 1 << 20;

/// Answers every frame with a reply of [`REPLY`] value bytes.
struct Replier {
    values: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl Handler for Replier {
    fn on_frame(&mut self, peer: PeerId, frame: Frame, io: &mut Io<'_>) {
        let mut header = Header::new(Opcode::PullReply);
        header.request_id = frame.header.request_id;
        let values = [self.values.as_slice()];
        let mut reply = FrameParts {
            header,
            keys: &[],
            values: &values,
            extra: &[],
        };
        io.send(peer, &mut reply).unwrap();
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A loop with `budgets` on its own thread; returns its address, budget and stop flag.
fn serve(budgets: Budgets) -> (std::net::SocketAddr, Budget, Arc<AtomicBool>) {
    serve_counted(budgets, Metrics::new())
}

/// [`serve`], counting into `metrics`.
fn serve_counted(
    budgets: Budgets,
    metrics: Metrics,
) -> (std::net::SocketAddr, Budget, Arc<AtomicBool>) {
    let budget = Budget::new(budgets);
    let mut ev = EventLoop::with_budget(
        Some("127.0.0.1:0".parse().unwrap()),
        FrameLimits::default(),
        metrics,
        credentials(0),
        budget.clone(),
    )
    .unwrap();
    ev.set_tick(Duration::from_millis(10));
    let addr = ev.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handler = Replier {
        values: vec![7u8; REPLY],
        stop: stop.clone(),
    };
    std::thread::spawn(move || ev.run(&mut handler).unwrap());
    (addr, budget, stop)
}

/// What the loop (role 0) and its clients (role 1) authenticate with.
fn credentials(role: u8) -> Credentials {
    Credentials {
        key: ClusterKey::Secret(Secret::new("budget-test").unwrap()),
        me: Identity::unassigned(role),
    }
}

/// A client connection that has passed the handshake.
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    authenticate_stream(&mut s, &credentials(1), Duration::from_secs(10)).unwrap();
    s
}

fn request(id: u64) -> Vec<u8> {
    let mut frame = FrameParts::with_extra(Header::new(Opcode::Pull), &[]);
    frame.header.request_id = id.into();
    frame.finish(true);
    frame.header.as_bytes().to_vec()
}

/// `bytes` once it reads 0, or after 10 s: the loop counts what it wrote (or dropped) just after
/// the write (or the close) returns, so the count may lag the bytes a test has already seen.
fn settled(bytes: impl Fn() -> usize) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    while bytes() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    bytes()
}

fn read_reply(s: &mut TcpStream) -> Header {
    let mut header = [0u8; HEADER_LEN];
    s.read_exact(&mut header).unwrap();
    let h = Header::read_from_bytes(&header).unwrap();
    let mut payload = vec![0u8; h.payload_len() as usize];
    s.read_exact(&mut payload).unwrap();
    h
}

#[test]
fn replies_are_held_back_for_the_whole_process_and_every_one_arrives_once_read() {
    let total = 8 * REPLY;
    let (addr, budget, stop) = serve(Budgets {
        reply_bytes_per_connection: 1 << 30,
        reply_bytes_total: total,
        ..Budgets::default()
    });
    let mut slow: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for s in &mut slow {
        let requests: Vec<u8> = (0..100).flat_map(request).collect();
        s.write_all(&requests).unwrap();
    }
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(budget.queued_reply_bytes());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Over the total, a connection holding replies is not read: the excess is at most one
    // turn's replies per connection (64 frames).
    assert!(peak > 0, "replies were queued");
    assert!(
        peak <= total + 2 * 64 * (REPLY + HEADER_LEN),
        "queued {peak} bytes for a budget of {total}"
    );
    // A connection with nothing queued is still served.
    let mut fresh = connect(addr);
    fresh
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    fresh.write_all(&request(1)).unwrap();
    assert_eq!(read_reply(&mut fresh).request_id.get(), 1);
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        for id in 0..100 {
            assert_eq!(read_reply(s).request_id.get(), id);
        }
    }
    // The loop counts what it wrote just after the write returns.
    assert_eq!(
        settled(|| budget.queued_reply_bytes()),
        0,
        "every queued byte is accounted for"
    );
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_frame_past_the_frame_budget_is_refused_and_the_loop_serves_on() {
    let (addr, budget, stop) = serve(Budgets {
        frame_bytes_total: 4 << 20,
        ..Budgets::default()
    });
    let mut header = Header::new(Opcode::Push);
    header.values_len = (16u32 << 20).into();
    header.seal();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(header.as_bytes()).unwrap();
    // The frame's buffer grows as these arrive, and passes the budget.
    let _ = s.write_all(&vec![0u8; 8 << 20]);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let h = Header::read_from_bytes(&reply[..HEADER_LEN]).unwrap();
    assert_eq!(h.opcode(), Some(Opcode::Error));
    assert_eq!(h.status(), Status::OutOfMemory);
    let text = String::from_utf8_lossy(&reply[HEADER_LEN..]);
    assert!(text.contains("frame_bytes_total"), "{text}");
    // The connection's socket closes just before its reader (and the frame) is dropped.
    assert_eq!(
        settled(|| budget.frame_bytes()),
        0,
        "the refused frame's memory is given back"
    );
    let mut other = connect(addr);
    other.write_all(&request(5)).unwrap();
    assert_eq!(read_reply(&mut other).request_id.get(), 5);
    stop.store(true, Ordering::Relaxed);
}

/// Waits until `done` holds for the loop's counters.
fn wait_for(metrics: &Metrics, what: &str, done: impl Fn(&ferrops_net::MetricsSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&metrics.snapshot()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            metrics.snapshot()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connections_are_counted_opened_closed_refused_and_failing_authentication() {
    let metrics = Metrics::new();
    let budgets = Budgets {
        max_connections: 2,
        ..Budgets::default()
    };
    let (addr, _budget, stop) = serve_counted(budgets, metrics.clone());
    let first = connect(addr);
    wait_for(&metrics, "one open", |m| m.connections_opened == 1);

    let mut stranger = TcpStream::connect(addr).unwrap();
    let wrong = Credentials {
        key: ClusterKey::Secret(Secret::new("not-the-secret").unwrap()),
        me: Identity::unassigned(1),
    };
    assert!(authenticate_stream(&mut stranger, &wrong, Duration::from_secs(10)).is_err());
    wait_for(&metrics, "the wrong secret is counted", |m| {
        m.auth_failures == 1
    });
    wait_for(&metrics, "and its connection closed", |m| {
        m.connections_closed == 1
    });

    let second = connect(addr);
    let mut third = TcpStream::connect(addr).unwrap();
    wait_for(&metrics, "the third is refused", |m| {
        m.connections_refused == 1
    });
    let mut refusal = Vec::new();
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = third.read_to_end(&mut refusal);
    assert!(String::from_utf8_lossy(&refusal).contains("connection limit of 2"));

    drop((first, second));
    wait_for(&metrics, "every connection closed", |m| {
        m.connections_closed == m.connections_opened && m.connections_opened == 3
    });
    stop.store(true, Ordering::Relaxed);
}
