//! The polling policy over TCP: after a round that handled a frame the servers' event loop
//! keeps polling for the busy-poll time instead of sleeping in epoll, and a worker's wait
//! polls its links for it before sleeping, so a request or reply that follows soon after is
//! read without a wake-up; with no busy-poll time both sleep at once.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ferrops_net::auth::{authenticate_stream, ClusterKey, Credentials, Identity, Secret};
use ferrops_net::{
    BufferPool, ClientDriver, ClientHandler, EventLoop, Frame, FrameLimits, FrameParts, FrameSink,
    Handler, Header, Io, Metrics, NetError, Opcode, Peer, PeerId,
};
use zerocopy::IntoBytes;

/// Reports, for every frame, how often the loop's thread had gone to sleep by then; stops
/// after `frames` frames.
struct SleepCounter {
    seen: mpsc::Sender<u64>,
    left: usize,
}

impl Handler for SleepCounter {
    fn on_frame(&mut self, _peer: PeerId, _frame: Frame, _io: &mut Io<'_>) {
        self.seen.send(sleeps_so_far()).unwrap();
        self.left -= 1;
    }

    fn should_stop(&self) -> bool {
        self.left == 0
    }
}

/// How often the calling thread has gone to sleep so far (`voluntary_ctxt_switches`).
fn sleeps_so_far() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/thread-self/status")
}

fn credentials(role: u8) -> Credentials {
    Credentials {
        key: ClusterKey::Secret(Secret::new("busy-poll-test").unwrap()),
        me: Identity::unassigned(role),
    }
}

fn request() -> Vec<u8> {
    let mut frame = FrameParts::with_extra(Header::new(Opcode::Pull), &[]);
    frame.finish(true);
    frame.header.as_bytes().to_vec()
}

/// Sends two frames 20 ms apart to a loop polling for `busy_poll`; returns how often the loop
/// slept between handling the first and the second.
fn sleeps_between_two_requests(busy_poll: Duration) -> u64 {
    let mut ev = EventLoop::new(
        Some("127.0.0.1:0".parse().unwrap()),
        FrameLimits::default(),
        Metrics::new(),
        credentials(0),
    )
    .unwrap();
    ev.set_busy_poll(busy_poll);
    let addr = ev.local_addr().unwrap();
    let (seen, counts) = mpsc::channel();
    let loop_thread = std::thread::spawn(move || {
        let mut handler = SleepCounter { seen, left: 2 };
        ev.run(&mut handler).unwrap();
    });
    let mut client = TcpStream::connect(addr).unwrap();
    authenticate_stream(&mut client, &credentials(1), Duration::from_secs(10)).unwrap();
    client.write_all(&request()).unwrap();
    let first = counts.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    client.write_all(&request()).unwrap();
    let second = counts.recv_timeout(Duration::from_secs(10)).unwrap();
    loop_thread.join().unwrap();
    second - first
}

#[test]
fn the_loop_polls_tcp_after_a_request_instead_of_sleeping_and_sleeps_without_busy_poll() {
    assert_eq!(
        sleeps_between_two_requests(Duration::from_secs(5)),
        0,
        "a request within the busy-poll time is read without the loop sleeping"
    );
    assert!(
        sleeps_between_two_requests(Duration::ZERO) >= 1,
        "without busy polling the loop sleeps in epoll between requests"
    );
}

/// Counts the servers' frames.
struct Count(usize);

impl FrameSink for Count {
    fn direct_values(&mut self, _header: &Header) -> Option<&mut [u8]> {
        None
    }
}

impl ClientHandler for Count {
    type Error = NetError;
    fn server_frame(&mut self, _server: u32, _frame: Frame) {
        self.0 += 1;
    }
    fn server_lost(&mut self, server: u32) -> Result<(), NetError> {
        Err(NetError::UnknownPeer(server as usize))
    }
    fn scheduler_frame(&mut self, _frame: Frame) {}
    fn scheduler_lost(&mut self) {}
}

fn peer(stream: TcpStream) -> Peer {
    stream.set_nonblocking(true).unwrap();
    let stream = mio::net::TcpStream::from_std(stream);
    let limits = FrameLimits::default();
    Peer::new(stream, limits, BufferPool::new(), Metrics::new()).unwrap()
}

/// Both ends of a loopback connection.
fn connected() -> (Peer, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (far, _) = listener.accept().unwrap();
    (peer(near), peer(far))
}

/// Waits for one frame a server sends 20 ms from now; returns how often the waiting
/// thread slept meanwhile, how many frames it got and how long the wait took.
fn wait_for_a_late_reply(busy_poll: Duration) -> (u64, usize, Duration) {
    let (scheduler, _scheduler_end) = connected();
    let (server, mut server_end) = connected();
    let mut driver = ClientDriver::new(scheduler, busy_poll).unwrap();
    driver.add_server(server.into()).unwrap();
    let replier = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        let mut ack = FrameParts::header_only(Header::new(Opcode::PushAck));
        ack.finish(true);
        server_end.send(&ack).unwrap();
        while !server_end.flush().unwrap() {}
        server_end
    });
    let mut got = Count(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = sleeps_so_far();
    let started = Instant::now();
    while got.0 == 0 && Instant::now() < deadline {
        driver
            .progress(Some(Duration::from_secs(10)), &mut got)
            .unwrap();
    }
    let (slept, took) = (sleeps_so_far() - before, started.elapsed());
    let _server_end = replier.join().unwrap();
    (slept, got.0, took)
}

#[test]
fn a_wait_polls_tcp_without_sleeping_for_the_busy_poll_time_and_sleeps_without_one() {
    let spin = Duration::from_secs(5);
    let (slept, got, took) = wait_for_a_late_reply(spin);
    assert_eq!(got, 1);
    assert_eq!(
        slept, 0,
        "a reply within the busy-poll time must be found without sleeping"
    );
    assert!(
        took < spin,
        "the reply was found by the polling, not after it ({took:?})"
    );
    let (slept, got, _) = wait_for_a_late_reply(Duration::ZERO);
    assert_eq!(got, 1);
    assert!(slept >= 1, "without busy polling the wait sleeps in epoll");
}
