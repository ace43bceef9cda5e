//! `Read`: the user read a channel up to a sequence. The mark is stored
//! first (it only moves forward), then relayed as a `Receipt` to the other
//! members and to the reader's other devices.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;
use confab_types::UserId;

use super::lookup::{finish_if_known, membership, membership_cached};
use super::Session;
use crate::shard::ReadReceipt;

/// Handles `req` if the cache knows its channel; else gives it back.
pub(super) fn handle_now(s: &Session, req: frame::Read) -> Result<(), frame::Read> {
    let known = membership_cached(s, req.channel_id);
    finish_if_known(known, req, |req, members| finish(s, req, members))
}

/// Handles `req`, asking the directory what the cache does not know.
pub(super) async fn handle(s: &Session, req: frame::Read) {
    let members = membership(s, req.channel_id).await;
    finish(s, req, members);
}

fn finish(s: &Session, req: frame::Read, members: Result<Arc<[UserId]>, ErrorCode>) {
    let members = match members {
        Ok(m) => m,
        Err(code) => return s.error(code, "not a member of this channel", &Frame::Read(req)),
    };
    let (user, channel, seq) = (s.user, req.channel_id, req.seq);
    // Written here on the core's thread, not on a blocking thread: the mark
    // is one unsynced merge (a memtable insert and a WAL append, a few µs),
    // where handing it to another thread and back cost several times that
    // in wake-ups, once per receipt. A RocksDB write stall would hold this
    // core, but it holds the storage writers and so every send as well.
    let stored = s.shared().log.set_read_up_to(channel, user, seq);
    if stored.is_err() {
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
