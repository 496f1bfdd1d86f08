//! Every connection authenticates before any other frame is read, and a frame is bound to the
//! identity its connection proved: findings 1 to 4 of the security review, each from a real
//! socket speaking the wire format by hand.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferrops_engine::config::WorkerConfig;
use ferrops_engine::control::Control;
use ferrops_engine::{Role, TableId, TableSpec, Worker};
use ferrops_net::auth::{ClusterKey, Secret};
use ferrops_net::{pad8, FrameParts, Header, Opcode, Status, HEADER_LEN};
use zerocopy::{FromBytes, IntoBytes};

/// A push of worker node `sender` to table `t`, routed with `w`'s routing table.
fn push(w: &Worker, t: TableId, sender: u32, seq: u64, keys: &[u64], values: &[f32]) -> Vec<u8> {
    let mut h = Header::new(Opcode::Push);
    h.table = t.0.into();
    h.routing_version = w.routing().version.into();
    h.sender = sender.into();
    h.seq = seq.into();
    h.key_count = (keys.len() as u32).into();
    common::frame_bytes(h, keys, values)
}

/// The next frame's header and its extra section as text.
fn read_reply(s: &mut TcpStream) -> (Header, String) {
    let (h, extra) = read_frame(s);
    (h, String::from_utf8_lossy(&extra).into_owned())
}

/// The next frame's header and its extra section.
fn read_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).expect("a reply");
    let h = Header::read_from_bytes(&head).unwrap();
    let mut payload = vec![0u8; h.payload_len() as usize];
    s.read_exact(&mut payload).unwrap();
    let extra_at = pad8(h.keys_len.get() as usize) + pad8(h.values_len.get() as usize);
    (
        h,
        payload[extra_at..extra_at + h.extra_len.get() as usize].to_vec(),
    )
}

/// Whether the server has closed `s` (reads end).
fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok()
}

#[test]
fn anonymous_frames_are_refused_before_anything_is_read_or_applied() {
    common::with_one_worker_table_and_key(1, TableSpec::new("t", 1), |w, t, _| {
        let server = w.routing().ranges[0].addr.clone();
        w.push(t, &[7], &[3.0]).unwrap();
        // An anonymous pull would have returned the weights; an anonymous NaN push poisoned them.
        let mut pull = Header::new(Opcode::Pull);
        pull.table = t.0.into();
        pull.routing_version = w.routing().version.into();
        pull.key_count = 1.into();
        let attempts = [
            common::frame_bytes(pull, &[7], &[]),
            push(w, t, w.info().node_id, 0, &[7], &[f32::NAN]),
        ];
        for bytes in attempts {
            let mut s = TcpStream::connect(&server).unwrap();
            s.write_all(&bytes).unwrap();
            let (h, text) = read_reply(&mut s);
            assert_eq!(
                (h.opcode(), h.status()),
                (Some(Opcode::Error), Status::Unauthorized)
            );
            assert!(text.contains("before the handshake"), "{text}");
            assert!(closed(&mut s));
        }
        assert_eq!(w.pull(t, &[7]).unwrap(), vec![3.0]);
    });
}

#[test]
fn a_node_with_another_secret_is_refused_and_told_why() {
    let job = common::start(1, 1);
    let mut wrong = job.cluster.clone();
    wrong.key = ClusterKey::Secret(Secret::new("not the job's secret").unwrap());
    let err = Worker::connect(&WorkerConfig { cluster: wrong })
        .err()
        .expect("a wrong secret does not join")
        .to_string();
    assert!(err.contains("different secrets"), "{err}");
    let mut insecure = job.cluster.clone();
    insecure.key = ClusterKey::Insecure;
    let err = Worker::connect(&WorkerConfig { cluster: insecure })
        .err()
        .expect("no secret does not join")
        .to_string();
    assert!(err.contains("--insecure"), "{err}");
    // The refused nodes took no slot: the real worker joins and the job ends cleanly.
    job.finish_after_a_round_trip(1);
}

#[test]
fn a_frame_claiming_another_workers_identity_is_refused_and_its_connection_dropped() {
    let (_, reports) =
        common::with_one_worker_table_and_key(1, TableSpec::new("t", 1), |w, t, key| {
            let server = w.routing().ranges[0].addr.clone();
            let victim = w.info().node_id;
            // Finding 2: a push under the victim's name with a huge sequence number would have made
            // every later push of the victim look like a resend. Finding 3: a clock under its name
            // would have released sequential pulls early.
            let mut clock = Header::new(Opcode::Clock);
            clock.sender = victim.into();
            clock.clock = u32::MAX.into();
            for bytes in [
                push(w, t, victim, 1 << 63, &[], &[]),
                common::frame_bytes(clock, &[], &[]),
            ] {
                let mut s = common::authenticated_stream(&server, key, 900);
                s.write_all(&bytes).unwrap();
                let (h, text) = read_reply(&mut s);
                assert_eq!(h.status(), Status::Unauthorized, "{text}");
                assert!(text.contains("authenticated as worker node 900"), "{text}");
                assert!(closed(&mut s));
            }
            for i in 1..=3 {
                w.push(t, &[5], &[1.0]).unwrap();
                assert_eq!(
                    w.pull(t, &[5]).unwrap(),
                    vec![i as f32],
                    "every real push applies"
                );
            }
        });
    assert_eq!(reports[0].duplicate_pushes, 0);
}

#[test]
fn a_peer_with_the_secret_cannot_jump_its_own_sequence_number_out_of_the_window() {
    common::with_one_worker_table_and_key(1, TableSpec::new("t", 1), |w, t, key| {
        let server = w.routing().ranges[0].addr.clone();
        let mut s = common::authenticated_stream(&server, key, 900);
        s.write_all(&push(w, t, 900, 1 << 63, &[9], &[5.0]))
            .unwrap();
        let (h, text) = read_reply(&mut s);
        assert_eq!(h.status(), Status::BadRequest, "{text}");
        assert!(text.contains("jumps"), "{text}");
        // Refused, not applied, and the next honest number still counts.
        s.write_all(&push(w, t, 900, 1, &[9], &[2.0])).unwrap();
        let (h, _) = read_reply(&mut s);
        assert_eq!(
            (h.opcode(), h.status()),
            (Some(Opcode::PushAck), Status::Ok)
        );
        assert_eq!(w.pull(t, &[9]).unwrap(), vec![2.0]);
    });
}

#[test]
fn a_connection_that_never_authenticates_is_dropped_after_the_handshake_timeout() {
    let job = common::start_configured(
        1,
        1,
        |c| c.handshake_timeout = Duration::from_millis(300),
        |_, _| {},
    );
    let mut idle = TcpStream::connect(job.cluster.scheduler).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest)
        .expect("the scheduler closes a silent connection");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
    job.run_workers(1, |w| w.finish().unwrap());
    job.join();
}

#[test]
fn the_scheduler_takes_a_registration_only_in_the_role_the_connection_proved() {
    // Finding 5: a worker (with the secret) registering as a server would have received half
    // the pushes and chosen what workers read.
    let job = common::start(1, 1);
    let mut s = TcpStream::connect(job.cluster.scheduler).unwrap();
    let creds = job.cluster.credentials(Role::Worker, None);
    ferrops_net::auth::authenticate_stream(&mut s, &creds, Duration::from_secs(10)).unwrap();
    let (header, extra) = Control::Register {
        role: Role::Server,
        addr: Some("127.0.0.1:9".into()),
        rdma_addr: None,
        rank: None,
    }
    .frame();
    let mut frame = FrameParts::with_extra(header, &extra);
    frame.finish(true);
    let mut bytes = frame.header.as_bytes().to_vec();
    bytes.extend_from_slice(&extra);
    bytes.resize(HEADER_LEN + pad8(extra.len()), 0);
    s.write_all(&bytes).unwrap();
    let (h, extra) = read_frame(&mut s);
    assert_eq!(h.opcode(), Some(Opcode::Control));
    match Control::decode(&extra).unwrap() {
        Control::Refused { reason } => assert!(
            reason.contains("authenticated as worker, it cannot register as a server"),
            "{reason}"
        ),
        other => panic!("registered as a server: {other:?}"),
    }
    drop(s);
    // The job's real server and worker still form the job.
    job.finish_after_a_round_trip(3);
}
