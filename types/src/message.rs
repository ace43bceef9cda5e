//! A message as the log stores it and every reader sees it: the one shape
//! a message has from the moment storage gives it a sequence until it is
//! written to a socket. Its text is shared bytes, so the many places that
//! hold a message (a fan-out to 100 members, a replay page, a history
//! page) never copy it.

use crate::ids::{ChannelId, DeviceId, Seq, UserId};
use crate::text::Text;

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The channel.
    pub channel: ChannelId,
    /// Its place in the channel.
    pub seq: Seq,
    /// Author.
    pub sender: UserId,
    /// Author's device (scopes `client_msg_id`).
    pub device: DeviceId,
    /// The id the author's client chose for it.
    pub client_msg_id: u64,
    /// Server commit time in ms since the epoch.
    pub timestamp_ms: u64,
    /// The text.
    pub text: Text,
}
