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
    match s.core.members(channel).await? {
        Some(m) if m.contains(&s.user) => Ok(m),
        _ => Err(ErrorCode::ForbiddenChannel),
    }
}
