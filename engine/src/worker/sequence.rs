//! Push sequence numbers. A worker numbers its pushes with one counter; a push keeps its number
//! through every resend (after a failover, or after a server missed its key list), so a server
//! that applied it drops it. A number is *open* from the push's start until the worker will
//! never send it again: a blocking push's return; an asynchronous push's acknowledgement by
//! every server, or else its `wait` (with replication; without, its sending). Every push
//! states how far back the oldest open number is (`Header::open_span`), and servers forget the
//! numbers below it (`server/dedupe.rs`): a failed ticket never waited keeps its number open,
//! and the servers remember every push of this worker since.

use std::collections::BTreeSet;

use super::Worker;

/// The push numbers of one worker: the last one given and those still open.
#[derive(Debug, Default)]
pub(crate) struct PushNumbers {
    last: u64,
    open: BTreeSet<u64>,
}

impl PushNumbers {
    /// A new number, open until `finish`.
    pub fn open(&mut self) -> u64 {
        self.last += 1;
        self.open.insert(self.last);
        self.last
    }

    /// Number `seq` will never be sent again.
    pub fn finish(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// What push `seq` states as its `open_span`: `seq` − the oldest open number + 1; 0 (no
    /// floor stated) if that does not fit.
    pub fn open_span(&self, seq: u64) -> u32 {
        let oldest = self.open.first().map_or(seq, |&o| o.min(seq));
        u32::try_from(seq - oldest + 1).unwrap_or(0)
    }
}

impl Worker {
    /// Opens a new push number.
    pub(super) fn open_seq(&self) -> u64 {
        self.lock().io.inbound.outstanding.seqs.open()
    }

    /// Closes push number `seq`: it is never sent again.
    pub(super) fn finish_seq(&self, seq: u64) {
        self.lock().io.inbound.outstanding.seqs.finish(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::PushNumbers;

    #[test]
    fn the_span_reaches_back_to_the_oldest_open_number() {
        let mut n = PushNumbers::default();
        let (a, b, c) = (n.open(), n.open(), n.open());
        assert_eq!(n.open_span(c), 3);
        n.finish(a);
        assert_eq!(n.open_span(c), 2);
        n.finish(b);
        n.finish(c);
        let d = n.open();
        assert_eq!((d, n.open_span(d)), (4, 1));
        // A resend of a number older than every open one states only itself.
        assert_eq!(n.open_span(b), 1);
    }
}
