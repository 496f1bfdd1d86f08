//! Sending a [`Control`] message from an event loop, for the roles that run one (server and
//! scheduler): the message travels in the extra section of an `Opcode::Control` frame.

use ferrops_net::{CloseReason, EventLoop, FrameParts, Io, PeerId};

use super::Control;
use crate::EngineError;

/// Sends a control message outside a handler (before the loop runs, e.g. to register).
pub(crate) fn send_control(
    ev: &mut EventLoop,
    peer: PeerId,
    msg: &Control,
) -> Result<(), EngineError> {
    let (header, extra) = msg.frame();
    ev.send(peer, &mut FrameParts::with_extra(header, &extra))?;
    Ok(())
}

/// Sends a control message from inside a handler; a failure closes that peer.
pub(crate) fn reply_control(io: &mut Io<'_>, peer: PeerId, msg: &Control) {
    let (header, extra) = msg.frame();
    if let Err(e) = io.send(peer, &mut FrameParts::with_extra(header, &extra)) {
        io.close(peer, CloseReason::Error(e.to_string()));
    }
}
