//! The event loop's polling policy over TCP: after a round that handled a frame the loop
//! keeps polling for the busy-poll time instead of sleeping in epoll, so a request that follows
//! soon after is read without a wake-up; with no busy-poll time it sleeps at once.

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use ferrops_net::auth::{authenticate_stream, ClusterKey, Credentials, Identity, Secret};
use ferrops_net::{
    EventLoop, Frame, FrameLimits, FrameParts, Handler, Header, Io, Metrics, Opcode, PeerId,
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
