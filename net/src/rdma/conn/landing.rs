//! Landing regions: a receiver's buffer advertised ahead of the bulk frame that will fill it,
//! so that a repeated bulk frame (a push of the same keys every step) moves at once instead of
//! paying the rendezvous' round trip (request to send, clear-to-send) before its first byte.
//!
//! Once a bulk frame has come through the rendezvous, the receiver registers a pool buffer as
//! large as the largest bulk payload it has received (up to [`LANDING_MAX`]) and names it in
//! an advert (address, key, length, token). The sender keeps the one advert it holds; a bulk
//! frame whose payload fits it is RDMA-written into it (no immediate: no receive consumed),
//! then its header follows in a `landed` message naming the token. Reliable connections
//! deliver the two in order, so the payload is in place when the header arrives. The receiver
//! checks the header against its limits and the region, deregisters the region (so the peer
//! can no longer write into a buffer the application reads) and hands the frame on, then
//! advertises a fresh region.
//!
//! Frames keep their order: the `landed` message queues behind anything that delivers a frame
//! and waits (for a credit, or a bulk frame for its clear-to-send); the payload may be written
//! early, into a region nothing else uses. A peer that writes garbage into a region only
//! spoils its own frame; one that names a region it was not given, or a payload longer than
//! the region, fails the connection.

use sideway::ibverbs::AccessFlags;

use super::bulk::{BulkOut, MAX_READY_BULK};
use super::ctrl::{Ctrl, KIND_ADVERT, KIND_LANDED};
use super::post::OP_WRITE;
use super::receive::{check_payload_crc, Ready};
use super::{RdmaConn, SMALL_FRAME_MAX};
use crate::rdma::mem::register;
use crate::rdma::RdmaError;
use crate::{Frame, FrameParts, Header, PooledBuf};

/// The largest region a receiver advertises: a connection keeps at most this much memory
/// registered and waiting for a frame. Larger frames go through the rendezvous.
pub const LANDING_MAX: usize = 64 << 20;

/// A region of ours the peer was told about and has not filled yet.
#[derive(Debug)]
pub(super) struct Landing {
    pub(super) token: u64,
    // Region first: deregistered before the buffer can be handed on.
    pub(super) mr: std::sync::Arc<sideway::ibverbs::memory_region::MemoryRegion>,
    pub(super) buf: PooledBuf,
}

/// A region of the peer's we may write one bulk frame into.
#[derive(Clone, Copy, Debug)]
pub(super) struct Advert {
    pub(super) token: u64,
    pub(super) addr: u64,
    pub(super) rkey: u32,
    pub(super) len: u64,
}

/// How each bulk frame we sent travelled: through the rendezvous or into an advertised region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkPaths {
    /// Bulk frames sent after a request to send and a clear-to-send.
    pub rendezvous: u64,
    /// Bulk frames written into a region the peer advertised ahead.
    pub landed: u64,
}

impl RdmaConn {
    /// Sends a bulk frame into the advertised region if it fits and may go now; otherwise
    /// through the rendezvous.
    pub(super) fn send_bulk(
        &mut self,
        frame: &FrameParts<'_>,
        bulk: BulkOut,
    ) -> Result<(), RdmaError> {
        let payload_len = bulk.payload_len();
        let Some(advert) = self.advert.filter(|a| payload_len as u64 <= a.len) else {
            self.bulk_paths.rendezvous += 1;
            self.metrics.bulk_frame_sent(false);
            return self.request_to_send(frame, bulk);
        };
        self.advert = None;
        self.bulk_paths.landed += 1;
        self.metrics.bulk_frame_sent(true);
        let token = self.new_token();
        let sges = bulk.sges();
        self.bulk_out.insert(token, bulk);
        self.wait_sq_room()?;
        self.post_write_sges(OP_WRITE | token, &sges, advert.addr, advert.rkey, None)?;
        let ctrl = Ctrl {
            kind: KIND_LANDED,
            token: advert.token,
            len: payload_len as u64,
            ..Ctrl::default()
        };
        self.send_message(ctrl, &[zerocopy::IntoBytes::as_bytes(&frame.header)])
    }

    /// The peer advertised a region (we hold at most one: it advertises the next only after
    /// we filled this one).
    pub(super) fn take_advert(&mut self, ctrl: &Ctrl) -> Result<(), RdmaError> {
        if self.advert.is_some() {
            return self.protocol("a second landing region before the first was used".into());
        }
        self.advert = Some(Advert {
            token: ctrl.token,
            addr: ctrl.addr,
            rkey: ctrl.rkey,
            len: ctrl.len,
        });
        Ok(())
    }

    /// A bulk payload of `len` bytes arrived: the next region we advertise is at least that
    /// large.
    pub(super) fn learn_bulk_len(&mut self, len: usize) {
        if len > SMALL_FRAME_MAX && len <= LANDING_MAX {
            self.landing_len = self.landing_len.max(len);
        }
    }

    /// Advertises a region for the next bulk frame, once one has been seen, none is out, and
    /// not too many bulk frames wait for the application.
    pub(super) fn advertise(&mut self) -> Result<(), RdmaError> {
        let held = self.bulk_buffers_held();
        if self.landing_len == 0 || self.landing.is_some() || held >= MAX_READY_BULK {
            return Ok(());
        }
        let len = self.landing_len;
        let mut buf = self.pool.take(len);
        let mr = register(
            &self.pd,
            buf.as_bytes_mut().as_mut_ptr() as usize,
            len,
            AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
        )?;
        let token = self.new_token();
        let ctrl = Ctrl {
            kind: KIND_ADVERT,
            rkey: mr.rkey(),
            token,
            addr: mr.get_ptr() as u64,
            len: len as u64,
        };
        self.landing = Some(Landing { token, mr, buf });
        self.send_message(ctrl, &[])
    }

    /// The peer says a frame's payload is in our advertised region and sends its header.
    pub(super) fn landed(&mut self, ctrl: &Ctrl, header: Option<Header>) -> Result<(), RdmaError> {
        let Some(header) = header else {
            return self.protocol("landed frame without a header".into());
        };
        let Some(landing) = self.landing.take_if(|l| l.token == ctrl.token) else {
            return self.protocol(format!("frame landed in unknown region {}", ctrl.token));
        };
        let Landing { mr, mut buf, .. } = landing;
        // No more remote writes into the buffer from here on.
        drop(mr);
        if let Err(e) = header.validate(&self.limits) {
            self.failed = Some(e.to_string());
            return Err(e.into());
        }
        let len = header.payload_len() as usize;
        if len as u64 != ctrl.len || len > buf.len() {
            return self.protocol(format!(
                "frame of {len} payload bytes landed as {} in a {}-byte region",
                ctrl.len,
                buf.len()
            ));
        }
        buf.truncate(len);
        if let Err(e) = check_payload_crc(&header, buf.as_bytes()) {
            self.failed = Some(e.to_string());
            return Err(e.into());
        }
        self.metrics_received(&header);
        self.ready
            .push_back(Ready::Bulk(Frame::new(header, buf, false)));
        self.ready_bulk += 1;
        self.learn_bulk_len(len);
        self.advertise()
    }

    /// How the bulk frames sent on this connection travelled.
    pub fn bulk_paths(&self) -> BulkPaths {
        self.bulk_paths
    }
}
