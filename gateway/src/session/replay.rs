//! What a device missed: after `Welcome`, the stored inbox entries after
//! its cursor, up to where the user's live stream stood when the device
//! attached, as `SyncBatch` frames with request id 0 (the last with
//! `has_more` false). Entries released live meanwhile wait in the
//! connection's buffer and follow the replay: no gap, no duplicate.

use std::collections::VecDeque;
use std::time::Duration;

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;
use confab_types::InboxSeq;

use super::paging::{batch_budget, fitting};
use super::Session;
use crate::fanout::CloseReason;
use crate::shard::Input;

/// Replays `(from, to]`, then tells the shard the connection is live.
pub(super) async fn replay(s: &Session, from: InboxSeq, to: InboxSeq) {
    if send_pages(s, from, to).await.is_ok() {
        s.core.handle(Input::ReplayDone {
            conn: s.conn,
            upto: to,
        });
    }
}

async fn send_pages(s: &Session, from: InboxSeq, to: InboxSeq) -> Result<(), ()> {
    let settings = s.core.settings();
    let page_size = settings.max_page as usize;
    let budget = batch_budget(settings);
    let room = settings.outbound_limit_bytes - budget;
    let mut after = from;
    let mut pending: VecDeque<frame::Message> = VecDeque::new();
    let mut exhausted = after >= to;
    loop {
        if pending.is_empty() && !exhausted {
            let (log, user) = (s.shared().log.clone(), s.user);
            let page = tokio::task::spawn_blocking(move || log.inbox(user, after, page_size)).await;
            let Ok(Ok(page)) = page else {
                s.close(CloseReason::error(
                    ErrorCode::Unavailable,
                    "storage unavailable",
                ));
                return Err(());
            };
            pending.extend(
                page.items
                    .into_iter()
                    .filter(|e| e.inbox_seq <= to)
                    .map(|e| frame::Message::stored(e.inbox_seq, e.message)),
            );
            let last = pending.back().map_or(after, |m| m.inbox_seq);
            exhausted = last >= to || pending.is_empty();
            after = last;
        }
        // Do not outrun the socket: a long replay waits for the queue.
        while s.core.state().queued_bytes(s.conn) > room && !s.is_closing() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if s.is_closing() {
            return Err(());
        }
        let n = fitting(pending.make_contiguous(), budget);
        let messages: Vec<frame::Message> = pending.drain(..n).collect();
        let done = exhausted && pending.is_empty();
        s.send(&Frame::SyncBatch(frame::SyncBatch {
            request_id: 0,
            has_more: !done,
            messages,
        }));
        if done {
            return Ok(());
        }
    }
}
