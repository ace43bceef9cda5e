//! `History`: a page of a channel's messages around an anchor, for
//! members only, answered with a `HistoryBatch`.

use confab_protocol::frame::{self, Frame, HistoryAnchor};
use confab_protocol::ErrorCode;
use confab_types::InboxSeq;

use super::lookup::membership;
use super::paging::{batch_budget, keep_back, keep_front};
use super::Session;

pub(super) async fn handle(s: &Session, req: frame::History) {
    if req.limit == 0 {
        let why = "limit must be at least 1";
        return s.error(ErrorCode::InvalidArgument, why, &Frame::History(req));
    }
    if let Err(code) = membership(s, req.channel_id).await {
        return s.error(code, "not a member of this channel", &Frame::History(req));
    }
    let settings = s.core.settings();
    let anchor = match req.anchor {
        HistoryAnchor::Latest => confab_storage::HistoryAnchor::Latest,
        HistoryAnchor::Before(seq) => confab_storage::HistoryAnchor::Before(seq),
        HistoryAnchor::After(seq) => confab_storage::HistoryAnchor::After(seq),
    };
    let limit = (req.limit as usize).min(settings.max_page as usize);
    let (log, channel) = (s.shared().log.clone(), req.channel_id);
    let page =
        tokio::task::spawn_blocking(move || log.channel_history(channel, anchor, limit)).await;
    let Ok(Ok(page)) = page else {
        return s.error(
            ErrorCode::Unavailable,
            "storage unavailable",
            &Frame::History(req),
        );
    };
    let mut messages: Vec<frame::Message> = page
        .items
        .into_iter()
        .map(|m| frame::Message::stored(InboxSeq::ZERO, m))
        .collect();
    // Cut to one frame's worth, keeping the end nearest the anchor (the
    // newest when paging back), so paging on from the page's edge misses
    // nothing.
    let budget = batch_budget(settings);
    let cut = match anchor {
        confab_storage::HistoryAnchor::After(_) => keep_front(&mut messages, budget),
        _ => keep_back(&mut messages, budget),
    };
    s.send(&Frame::HistoryBatch(frame::HistoryBatch {
        request_id: req.request_id,
        channel_id: channel,
        has_more: page.has_more || cut,
        messages,
    }));
}
