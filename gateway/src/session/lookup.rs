//! Who may do what in a channel, from the core's directory cache.

use std::sync::Arc;

use confab_protocol::ErrorCode;
use confab_types::{ChannelId, UserId};

use super::Session;

/// The members of `channel` if the session's user is one of them, else
/// the error to answer with.
pub(super) async fn membership(
    s: &Session,
    channel: ChannelId,
) -> Result<Arc<[UserId]>, ErrorCode> {
    if let Some(known) = membership_cached(s, channel) {
        return known;
    }
    member_of(s, s.core.members(channel).await?)
}

/// [`membership`] from the cache alone: `None` when the cache does not
/// know the channel and the directory must be asked.
pub(super) fn membership_cached(
    s: &Session,
    channel: ChannelId,
) -> Option<Result<Arc<[UserId]>, ErrorCode>> {
    let members = s.core.state().cache().members(channel)?;
    Some(member_of(s, Some(members)))
}

/// Finishes `req` with what the cache `known`, or gives `req` back when
/// the cache knew nothing (it must wait for the directory). The
/// synchronous half of every request that needs a channel's members.
pub(super) fn finish_if_known<R, K>(
    known: Option<K>,
    req: R,
    finish: impl FnOnce(R, K),
) -> Result<(), R> {
    match known {
        Some(k) => {
            finish(req, k);
            Ok(())
        }
        None => Err(req),
    }
}

fn member_of(s: &Session, members: Option<Arc<[UserId]>>) -> Result<Arc<[UserId]>, ErrorCode> {
    match members {
        Some(m) if m.contains(&s.user) => Ok(m),
        _ => Err(ErrorCode::ForbiddenChannel),
    }
}
