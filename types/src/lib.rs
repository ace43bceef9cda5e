//! The vocabulary every confab crate shares, so that the protocol, the
//! storage log, the directory and the gateway agree on what an id, a
//! sequence or a message is without depending on each other.

mod config;
mod durable_file;
mod ids;
mod message;
mod plain_ws;
mod text;
mod time;

pub use config::InvalidConfig;
pub use durable_file::write_durably;
pub use ids::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
pub use message::StoredMessage;
pub use plain_ws::PlainWs;
pub use text::Text;
pub use time::now_ms;

/// Largest group, its owner included: the directory refuses more members,
/// and the message log fans a message out to at most this many inboxes.
pub const MAX_GROUP_MEMBERS: usize = 100;
