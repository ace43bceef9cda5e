//! What the gateway needs from the rest of the node, as traits the
//! `confab` binary implements over the other roles: the directory (who is
//! in a channel, which channel joins two users, who is whose friend),
//! token verification, and the push service. The gateway imports none of
//! those crates.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use confab_protocol::ErrorCode;
use confab_types::{ChannelId, InboxSeq, Seq, UserId};

/// A boxed, sendable future (the directory answers on another runtime).
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a directory lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// Users' friends, by user.
pub type FriendLists = HashMap<UserId, Arc<[UserId]>>;

/// The relational facts the gateway reads. A shard asks only on a cache
/// miss, never per message, and drops entries on [`Invalidation`]s.
pub trait Directory: Send + Sync + 'static {
    /// Members of a channel; `None` if there is no such channel.
    fn channel_members(
        &self,
        channel: ChannelId,
    ) -> BoxFut<Result<Option<Arc<[UserId]>>, DirectoryError>>;
    /// The 1:1 channel of `a` and `b`, created on first use; `None` if `b`
    /// does not exist.
    fn dm_channel(&self, a: UserId, b: UserId)
        -> BoxFut<Result<Option<ChannelId>, DirectoryError>>;
    /// The accepted friends of each of `users`, with an entry for every
    /// one of them. Asked for many users at once: every session that opens
    /// needs its user's friends, and during a reconnect storm thousands
    /// open per second.
    fn friends_of_many(&self, users: Vec<UserId>) -> BoxFut<Result<FriendLists, DirectoryError>>;
    /// Everyone who shares a channel (DM or group) with `user`: whose
    /// presence they may ask for on demand.
    fn co_members(&self, user: UserId) -> BoxFut<Result<Arc<[UserId]>, DirectoryError>>;
}

/// Verifies bearer tokens locally (signature, expiry, revocation list in
/// memory): no round trip per connection.
pub trait Authenticator: Send + Sync + 'static {
    /// The user and login session a token belongs to, or the wire error to
    /// answer with.
    fn verify(&self, token: &str) -> Result<(UserId, u64), ErrorCode>;
}

/// A change that invalidates cached directory facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// A channel's membership changed.
    Channel(ChannelId),
    /// A user's friend list changed.
    Friends(UserId),
    /// Events were missed: drop everything.
    All,
}

/// A stored message that reached a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushJob {
    /// The member to wake.
    pub user: UserId,
    /// The message's channel.
    pub channel: ChannelId,
    /// Its sequence in the channel.
    pub seq: Seq,
    /// Its place in the member's inbox.
    pub inbox_seq: InboxSeq,
    /// Who sent it.
    pub sender: UserId,
    /// When it was stored (ms since the epoch).
    pub timestamp_ms: u64,
}

/// What the delivering shard found for a member of a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No device connected. `durable`: the job is already in the outbox
    /// (written with the message); otherwise the member went offline
    /// between submit and delivery and the service must store it.
    Offline {
        /// Whether the outbox already holds the job.
        durable: bool,
    },
    /// A device is connected, but the outbox holds a job written at submit
    /// time (the member came online in between): settle it unsent.
    OnlineAfterAll,
}

/// Receives presence transitions and push jobs. Called on core threads:
/// implementations must never block.
pub trait PushSink: Send + Sync + 'static {
    /// Whether a job for `user` should be written with a message now: they
    /// have no device connected to any core.
    fn wants_job(&self, user: UserId) -> bool;
    /// `user`'s first device connected to a core (`true`) or its last one
    /// left it (`false`).
    fn presence(&self, user: UserId, online: bool);
    /// A stored message reached `job.user`, who is not its sender.
    fn delivered(&self, job: PushJob, found: Found);
}

/// Push off: no job is written or raised.
pub struct NoPush;

impl PushSink for NoPush {
    fn wants_job(&self, _user: UserId) -> bool {
        false
    }
    fn presence(&self, _user: UserId, _online: bool) {}
    fn delivered(&self, _job: PushJob, _found: Found) {}
}

/// What a shard tells the other nodes of a cluster: typing notices and
/// read receipts made here, and this node's presence changes. Never
/// stored; a lost one is what a lost typing notice is on one node.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    /// A member of a channel types (members' devices elsewhere show it).
    Typing(Arc<crate::shard::TypingNotice>),
    /// A member read a channel up to a sequence.
    Receipt(Arc<crate::shard::ReadReceipt>),
    /// A user's first device connected to this node (`online`), or the
    /// last one left and the grace period passed.
    Presence(confab_protocol::frame::PresenceInfo),
}

/// The cluster, as the gateway sees it (absent on a single node).
pub trait ClusterPort: Send + Sync + 'static {
    /// Tells the other nodes. Must not block (called from a core).
    fn publish(&self, event: ClusterEvent);
    /// Whether `user` has a device on another live node.
    fn online_elsewhere(&self, user: UserId) -> bool;
}
