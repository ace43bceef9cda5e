//! `PresenceQuery`, `PresenceSubscribe`, `PresenceUnsubscribe`, and the
//! friends' presence a device gets when it connects. A user may see the
//! presence of themself, their friends and everyone they share a channel
//! with; anyone else reads as offline and never seen.

use std::collections::HashMap;
use std::time::Instant;

use confab_protocol::frame::{self, Frame, PresenceInfo};
use confab_protocol::ErrorCode;
use confab_types::UserId;

use super::Session;
use crate::fanout::{OutFrame, Priority};

/// Who the session's user may see the presence of. Group presence is
/// fetched on demand, never broadcast.
async fn visible_set(s: &Session) -> Vec<UserId> {
    let mut v: Vec<UserId> = s
        .core
        .friends(s.user)
        .await
        .map(|f| f.to_vec())
        .unwrap_or_default();
    if let Ok(co) = s.shared().directory.co_members(s.user).await {
        v.extend(co.iter().copied());
    }
    v.push(s.user);
    v
}

/// Presence of `users` as the session's user may see it.
pub(super) async fn presence_of(s: &Session, users: &[UserId]) -> Vec<PresenceInfo> {
    let allowed = visible_set(s).await;
    let visible: Vec<UserId> = users
        .iter()
        .copied()
        .filter(|u| allowed.contains(u))
        .collect();
    presence_of_visible(s, users, visible).await
}

/// Presence of `users`, of whom the session's user may see `visible`.
async fn presence_of_visible(
    s: &Session,
    users: &[UserId],
    visible: Vec<UserId>,
) -> Vec<PresenceInfo> {
    let online = s.core.online(&visible).await;
    let offline: Vec<UserId> = visible
        .iter()
        .copied()
        .filter(|u| !online.get(u).copied().unwrap_or(false))
        .collect();
    let log = s.shared().log.clone();
    let seen: HashMap<UserId, u64> = tokio::task::spawn_blocking(move || {
        offline
            .into_iter()
            .filter_map(|u| Some((u, log.last_seen(u).ok()??)))
            .collect()
    })
    .await
    .unwrap_or_default();
    users
        .iter()
        .map(|u| PresenceInfo {
            user_id: *u,
            online: online.get(u).copied().unwrap_or(false),
            last_seen_ms: seen.get(u).copied().unwrap_or(0),
        })
        .collect()
}

fn too_many(s: &Session, users: &[UserId], answering: Frame) -> bool {
    let too_many = users.len() > s.core.settings().max_presence_users as usize;
    if too_many {
        s.error(ErrorCode::InvalidArgument, "too many users", &answering);
    }
    too_many
}

pub(super) async fn query(s: &Session, q: frame::PresenceQuery) {
    if too_many(s, &q.user_ids, Frame::PresenceQuery(q.clone())) {
        return;
    }
    let entries = presence_of(s, &q.user_ids).await;
    s.send(&Frame::Presence(frame::Presence {
        request_id: q.request_id,
        entries,
    }));
}

pub(super) async fn subscribe(s: &Session, q: frame::PresenceSubscribe) {
    if too_many(s, &q.user_ids, Frame::PresenceSubscribe(q.clone())) {
        return;
    }
    let entries = presence_of(s, &q.user_ids).await;
    let allowed = visible_set(s).await;
    let targets: Vec<UserId> = q
        .user_ids
        .iter()
        .copied()
        .filter(|u| allowed.contains(u))
        .collect();
    s.core.state().watch(Instant::now(), s.conn, &targets);
    s.send(&Frame::Presence(frame::Presence {
        request_id: q.request_id,
        entries,
    }));
}

pub(super) fn unsubscribe(s: &Session, q: frame::PresenceUnsubscribe) {
    let now = Instant::now();
    let mut state = s.core.state();
    for u in &q.user_ids {
        state.unwatch(now, s.conn, *u);
    }
    drop(state);
    s.core.pump();
}

/// Friends' presence is pushed without asking: watch them, then send
/// their current state (droppable, like every presence push).
pub(super) async fn watch_friends(s: &Session) {
    let Some(friends) = s.core.friends(s.user).await else {
        return;
    };
    s.core.state().watch(Instant::now(), s.conn, &friends);
    s.core.pump();
    if friends.is_empty() {
        return;
    }
    // Friends are visible by definition: no need for the channels the
    // user shares (a directory query per channel) that `presence_of` reads.
    let entries = presence_of_visible(s, &friends, friends.to_vec()).await;
    let frame = Frame::Presence(frame::Presence {
        request_id: 0,
        entries,
    });
    let bytes = s.encoding.encode(&frame).into();
    s.core.state().queue(
        s.conn,
        OutFrame::Encoded(frame.frame_type(), bytes),
        Priority::Droppable,
    );
    s.core.pump();
}
