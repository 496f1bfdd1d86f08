//! A server that receives frames breaking the wire format answers with a clear error, drops
//! that connection, and keeps serving everybody else.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use ferrops_engine::TableSpec;
use ferrops_net::auth::ClusterKey;
use ferrops_net::{FrameParts, Header, Opcode, Status, HEADER_LEN};
use zerocopy::{FromBytes, IntoBytes};

/// A valid push frame's bytes (header + 2 keys + 2 values).
fn valid_push() -> Vec<u8> {
    common::frame_bytes(Header::new(Opcode::Push), &[1, 2], &[1.0, 2.0])
}

fn reseal(bytes: &mut [u8], edit: impl FnOnce(&mut Header)) {
    let mut h = Header::read_from_bytes(&bytes[..HEADER_LEN]).unwrap();
    edit(&mut h);
    h.seal();
    bytes[..HEADER_LEN].copy_from_slice(h.as_bytes());
}

/// Sends `bytes` (then half-closes if `close`), and returns the error frame the server answers
/// with: its status and message. Also checks that the server then closes the connection.
fn send_and_read_error(
    server: &str,
    key: &ClusterKey,
    bytes: &[u8],
    close: bool,
) -> (Status, String) {
    // A peer with the secret (frames of anonymous peers never reach the parser's later checks).
    let mut s = common::authenticated_stream(server, key, 900);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    if close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .expect("the server closes the connection after the error");
    assert!(
        reply.len() >= HEADER_LEN,
        "an error frame comes back, got {} bytes",
        reply.len()
    );
    let h = Header::read_from_bytes(&reply[..HEADER_LEN]).unwrap();
    assert_eq!(h.opcode(), Some(Opcode::Error));
    let text = String::from_utf8_lossy(&reply[HEADER_LEN..HEADER_LEN + h.extra_len.get() as usize]);
    (h.status(), text.into_owned())
}

#[test]
fn each_malformed_frame_gets_a_clear_error_and_the_server_keeps_serving() {
    common::with_one_worker_table_and_key(1, TableSpec::new("t", 1), |w, t, key| {
        let server = w.routing().ranges[0].addr.clone();
        let mut cases: Vec<(&str, Vec<u8>, bool, &str)> = Vec::new();

        let mut magic = valid_push();
        magic[0] ^= 0xff;
        cases.push(("wrong magic", magic, false, "bad magic"));

        let mut version = valid_push();
        reseal(&mut version, |h| h.version = 99.into());
        cases.push((
            "wrong version",
            version,
            false,
            "unsupported protocol version 99",
        ));

        let mut header_crc = valid_push();
        header_crc[40] ^= 1; // key_count, without resealing
        cases.push((
            "wrong header checksum",
            header_crc,
            false,
            "header checksum mismatch",
        ));

        let mut payload_crc = valid_push();
        *payload_crc.last_mut().unwrap() ^= 0x40;
        cases.push((
            "wrong payload checksum",
            payload_crc,
            false,
            "payload checksum mismatch",
        ));

        let mut oversized = valid_push();
        reseal(&mut oversized, |h| h.values_len = u32::MAX.into());
        cases.push((
            "oversized",
            oversized,
            false,
            "exceeds the configured limit",
        ));

        let mut opcode = valid_push();
        reseal(&mut opcode, |h| h.opcode = 200);
        cases.push(("unknown opcode", opcode, false, "unknown opcode 200"));

        let truncated = valid_push()[..HEADER_LEN + 5].to_vec();
        cases.push(("truncated", truncated, true, "truncated"));

        for (name, bytes, close, expected) in cases {
            let (status, text) = send_and_read_error(&server, key, &bytes, close);
            assert_eq!(status, Status::BadFrame, "{name}: {text}");
            assert!(
                text.contains(expected),
                "{name}: message `{text}` lacks `{expected}`"
            );
            // The real worker is unaffected.
            w.push(t, &[7], &[1.0]).unwrap();
        }
        assert_eq!(w.pull(t, &[7]).unwrap(), vec![7.0]);
    });
}

#[test]
fn a_signature_the_server_does_not_hold_is_refused_not_guessed() {
    common::with_one_worker_table_and_key(1, TableSpec::new("t", 1), |w, t, key| {
        let server = w.routing().ranges[0].addr.clone();
        let values = [1.0f32; 3];
        let vals = [values.as_bytes()];
        let mut header = Header::new(Opcode::Push);
        header.table = t.0.into();
        header.sender = 900.into();
        header.key_count = 3.into();
        header.key_signature = 0x1234.into();
        header.flags = ferrops_net::flags::KEYS_BY_SIGNATURE;
        let mut frame = FrameParts {
            header,
            keys: &[],
            values: &vals,
            extra: &[],
        };
        frame.finish(true);
        let mut bytes = frame.header.as_bytes().to_vec();
        bytes.extend_from_slice(values.as_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let mut s = common::authenticated_stream(&server, key, 900);
        s.write_all(&bytes).unwrap();
        let mut reply = [0u8; HEADER_LEN];
        s.read_exact(&mut reply).unwrap();
        let h = Header::read_from_bytes(&reply[..]).unwrap();
        assert_eq!(
            (h.opcode(), h.status()),
            (Some(Opcode::Error), Status::KeysUnknown)
        );
        w.push(t, &[5], &[2.0]).unwrap();
        assert_eq!(w.pull(t, &[5]).unwrap(), vec![2.0]);
    });
}
