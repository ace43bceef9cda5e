//! `Heartbeat`: answered at once with the server's clock. Any frame keeps
//! a session alive; heartbeats exist for clients with nothing else to say.

use confab_protocol::frame::{self, Frame};

use super::Session;

pub(super) fn handle(s: &Session, h: frame::Heartbeat) {
    s.send(&Frame::HeartbeatAck(frame::HeartbeatAck {
        nonce: h.nonce,
        server_time_ms: confab_types::now_ms(),
    }));
}
