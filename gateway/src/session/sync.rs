//! `Sync`: a page of the user's inbox after a cursor, answered with a
//! `SyncBatch` (how a device catches up on a gap, or pages through a long
//! absence).

use confab_protocol::frame::{self, Frame};
use confab_protocol::ErrorCode;

use super::paging::{batch_budget, keep_front};
use super::Session;

pub(super) async fn handle(s: &Session, req: frame::Sync) {
    if req.limit == 0 {
        let why = "limit must be at least 1";
        return s.error(ErrorCode::InvalidArgument, why, &Frame::Sync(req));
    }
    if req.request_id == 0 {
        // 0 marks the replay after `Hello`; an answer carrying it would be
        // taken for part of that replay.
        let why = "request_id 0 is reserved for the replay";
        return s.error(ErrorCode::InvalidArgument, why, &Frame::Sync(req));
    }
    let settings = s.core.settings();
    let limit = (req.limit as usize).min(settings.max_page as usize);
    let (log, user, after) = (s.shared().log.clone(), s.user, req.after);
    let page = tokio::task::spawn_blocking(move || log.inbox(user, after, limit)).await;
    let Ok(Ok(page)) = page else {
        return s.error(
            ErrorCode::Unavailable,
            "storage unavailable",
            &Frame::Sync(req),
        );
    };
    let mut messages: Vec<frame::Message> = page
        .items
        .into_iter()
        .map(|e| frame::Message::stored(e.inbox_seq, e.message))
        .collect();
    let cut = keep_front(&mut messages, batch_budget(settings));
    s.send(&Frame::SyncBatch(frame::SyncBatch {
        request_id: req.request_id,
        has_more: page.has_more || cut,
        messages,
    }));
}
