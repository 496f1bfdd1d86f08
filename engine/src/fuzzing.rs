//! The bodies of the fuzz targets that test this crate (`fuzz/fuzz_targets`, see
//! docs/fuzzing.md). Public so that the targets and this crate's tests, which replay the
//! committed corpora, run the very same code; not API.

use ferrops_net::fuzzing::{split, stream_of, Chunked};

use crate::control::Control;

/// Target `control`: arbitrary bytes decode to an error or to a message whose encoding decodes
/// to the same message.
pub fn control(data: &[u8]) {
    if let Ok(msg) = Control::decode(data) {
        let again = Control::decode(&msg.encode()).expect("an encoded message decodes");
        // Compared as text: a message may hold a NaN threshold, unequal to itself.
        assert_eq!(format!("{again:?}"), format!("{msg:?}"));
    }
}

/// Target `worker_replies`: a server's arbitrary byte stream, read in arbitrary pieces, against
/// a worker waiting on a push, an owned pull and a pull into a lent slice (see
/// `worker::fuzzing`).
pub fn worker_replies(data: &[u8]) {
    let Some((mode, sizes, stream)) = split(data) else {
        return;
    };
    let Some((&lent, stream)) = stream.split_first() else {
        return;
    };
    let stream = stream_of(mode, stream);
    let server = u32::from((mode >> 1) & 3) % 3;
    let mut src = Chunked::new(sizes, &stream);
    crate::worker::fuzzing::replies(server, usize::from(lent), &mut src);
}

#[cfg(test)]
mod tests {
    use super::*;

    ferrops_net::corpus_replay_test!("control" => control, "worker_replies" => worker_replies);
}
