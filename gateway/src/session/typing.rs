//! `Typing`: relayed to the channel's other members as a `TypingEvent`,
//! at most once per `typing_interval` per user and channel; never stored,
//! and the first frame shed when a connection falls behind.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;
use confab_types::UserId;

use super::lookup::{finish_if_known, membership, membership_cached};
use super::Session;
use crate::shard::TypingNotice;

/// Handles `req` if the cache knows its channel; else gives it back.
pub(super) fn handle_now(s: &Session, req: frame::Typing) -> Result<(), frame::Typing> {
    let known = membership_cached(s, req.channel_id);
    finish_if_known(known, req, |req, members| finish(s, req, members))
}

/// Handles `req`, asking the directory what the cache does not know.
pub(super) async fn handle(s: &Session, req: frame::Typing) {
    let members = membership(s, req.channel_id).await;
    finish(s, req, members);
}

fn finish(s: &Session, req: frame::Typing, members: Result<Arc<[UserId]>, ErrorCode>) {
    let members = match members {
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
