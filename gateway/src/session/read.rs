//! `Read`: the user read a channel up to a sequence. The mark is stored
//! first (it only moves forward), then relayed as a `Receipt` to the other
//! members and to the reader's other devices.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;

use super::lookup::membership;
use super::Session;
use crate::shard::ReadReceipt;

pub(super) async fn handle(s: &Session, req: frame::Read) {
    let members = match membership(s, req.channel_id).await {
        Ok(m) => m,
        Err(code) => return s.error(code, "not a member of this channel", &Frame::Read(req)),
    };
    let (log, user, channel, seq) = (s.shared().log.clone(), s.user, req.channel_id, req.seq);
    let stored = tokio::task::spawn_blocking(move || log.set_read_up_to(channel, user, seq)).await;
    if !matches!(stored, Ok(Ok(()))) {
        return s.error(
            ErrorCode::Unavailable,
            "storage unavailable",
            &Frame::Read(req),
        );
    }
    let receipt = Arc::new(ReadReceipt {
        channel,
        user,
        seq,
        members,
    });
    s.core.state().route_receipt(Instant::now(), receipt);
    s.core.pump();
}
