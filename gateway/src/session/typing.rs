//! `Typing`: relayed to the channel's other members as a `TypingEvent`,
//! at most once per `typing_interval` per user and channel; never stored,
//! and the first frame shed when a connection falls behind.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame};

use super::lookup::membership;
use super::Session;
use crate::shard::TypingNotice;

pub(super) async fn handle(s: &Session, req: frame::Typing) {
    let members = match membership(s, req.channel_id).await {
        Ok(m) => m,
        Err(code) => return s.error(code, "not a member of this channel", &Frame::Typing(req)),
    };
    let now = Instant::now();
    let mut state = s.core.state();
    if state.take_typing_slot(s.user, req.channel_id, now) {
        let notice = Arc::new(TypingNotice {
            channel: req.channel_id,
            user: s.user,
            members,
        });
        state.route_typing(now, notice);
    }
    drop(state);
    s.core.pump();
}
