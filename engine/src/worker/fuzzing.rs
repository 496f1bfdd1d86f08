//! The worker's handling of server replies, driven by arbitrary bytes (the body of the
//! `worker_replies` fuzz target, see `crate::fuzzing`).
//!
//! The worker waits on a push to two servers, a pull into a buffer it owns (two servers, four
//! floats each) and a pull into a lent slice; `stream` is what server `server` sends. Whatever
//! it sends, the worker must neither panic nor write outside the buffers, and every
//! sub-request it completes must leave the tickets consistent.

use std::io::Read;

use ferrops_net::fuzzing::{small_limits, MAX_READS};
use ferrops_net::{BufferPool, ClientHandler, FrameReader, Metrics, ReadOutcome};

use super::inbound::{Inbound, Lent, Receiver};
use super::pending::{Kind, PullInto};
use crate::key_list_cache::KeyListCache;

/// Feeds `stream` as server `server`'s bytes to a worker with outstanding requests; `lent_len`
/// (at most 16) floats of a caller's slice wait for the lent pull.
pub fn replies(server: u32, lent_len: usize, stream: &mut impl Read) {
    let mut inbound = Inbound::new(Metrics::new(), std::time::Duration::from_secs(5));
    inbound.key_caches = (0..2).map(|_| KeyListCache::new(1 << 10)).collect();
    let o = &mut inbound.outstanding;
    let push = o.open(Kind::Push);
    o.add_request(push, 0, 0..0, None);
    o.add_request(push, 1, 0..0, None);
    let pull = o.open(Kind::Pull(PullInto::Owned(vec![0.0; 8])));
    o.add_request(pull, 0, 0..4, None);
    o.add_request(pull, 1, 4..8, None);
    let lent_ticket = o.open(Kind::Pull(PullInto::Borrowed));
    let lent_len = lent_len.min(16);
    o.add_request(lent_ticket, server, 0..lent_len, None);
    let mut slice = vec![0.0f32; lent_len];
    let mut lent = Some(Lent {
        ticket: lent_ticket,
        values: &mut slice,
    });
    let mut receiver = Receiver {
        inbound: &mut inbound,
        lent: &mut lent,
    };
    let mut reader = FrameReader::new(small_limits(), BufferPool::new(), Metrics::new());
    for _ in 0..MAX_READS {
        match reader.read_frame(stream, &mut receiver) {
            Ok(ReadOutcome::Frame(frame)) => receiver.server_frame(server, frame),
            Ok(ReadOutcome::WouldBlock) => {}
            Ok(ReadOutcome::Closed) | Err(_) => break,
        }
    }
    let _ = receiver.server_lost(server);
    let o = &inbound.outstanding;
    for ticket in [push, pull, lent_ticket] {
        let parts = o.requests.values().filter(|r| r.ticket == ticket).count();
        let left = o.tickets.get(&ticket).map_or(0, |p| p.parts_left);
        assert_eq!(
            parts, left,
            "ticket {ticket}: requests left and parts left agree"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use ferrops_net::{FrameParts, Header, Opcode, Status};
    use zerocopy::IntoBytes;

    use super::*;

    fn frame(
        opcode: Opcode,
        request: u64,
        status: Status,
        values: &[f32],
        extra: &[u8],
    ) -> Vec<u8> {
        let vals = [values.as_bytes()];
        let mut header = Header::new(opcode);
        header.request_id = request.into();
        header.status = (status as u16).into();
        let mut parts = FrameParts {
            header,
            keys: &[],
            values: &vals,
            extra,
        };
        parts.finish(true);
        let mut bytes = parts.header.as_bytes().to_vec();
        bytes.extend_from_slice(values.as_bytes());
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        bytes.extend_from_slice(extra);
        bytes
    }

    #[test]
    fn well_formed_and_wrong_replies_leave_the_tickets_consistent() {
        let mut stream = Vec::new();
        stream.extend(frame(Opcode::PushAck, 1, Status::Ok, &[], &[]));
        stream.extend(frame(Opcode::PullReply, 3, Status::Ok, &[1.0; 4], &[]));
        // Too many values for the owned pull's second part.
        stream.extend(frame(Opcode::PullReply, 4, Status::Ok, &[1.0; 7], &[]));
        stream.extend(frame(Opcode::Error, 2, Status::KeysUnknown, &[], b"gone"));
        stream.extend(frame(
            Opcode::Error,
            99,
            Status::BadRequest,
            &[],
            b"no such request",
        ));
        for server in 0..3 {
            replies(server, 3, &mut Cursor::new(&stream));
        }
    }
}
