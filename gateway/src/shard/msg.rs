//! What goes into a shard and what comes out of it.
//!
//! [`ShardMsg`] is what shards send each other (and themselves) through
//! the mailboxes; [`Input`] is everything the driver feeds a shard from
//! outside (mailbox messages, storage completions, results of reads it
//! asked for); [`Output`] is what a shard asks its driver to do.

use std::sync::Arc;

use confab_protocol::frame::PresenceInfo;
use confab_storage::writer::Completion;
use confab_storage::InboxEntry;
use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use smallvec::SmallVec;

use super::conns::ConnId;
use crate::fanout::Delivery;
use crate::ports::{Found, Invalidation, PushJob};

/// Inbox entries of a delivery for the users of one shard.
pub type Entries = SmallVec<[(UserId, InboxSeq); 4]>;

/// A member of a channel is typing; never stored, droppable.
#[derive(Debug)]
pub struct TypingNotice {
    /// The channel.
    pub channel: ChannelId,
    /// Who types.
    pub user: UserId,
    /// The channel's members (the typist's devices get nothing).
    pub members: Arc<[UserId]>,
}

/// A member read a channel up to a sequence (stored before it is relayed);
/// it reaches the other members and the reader's other devices.
#[derive(Debug)]
pub struct ReadReceipt {
    /// The channel.
    pub channel: ChannelId,
    /// Who read.
    pub user: UserId,
    /// Read up to and including this sequence.
    pub seq: Seq,
    /// The channel's members.
    pub members: Arc<[UserId]>,
}

/// What shards send each other.
#[derive(Debug)]
pub enum ShardMsg {
    /// A stored message, with the inbox entries of this shard's users only.
    Deliver {
        /// The message, shared by every shard that holds a recipient.
        delivery: Arc<Delivery>,
        /// `(recipient, their inbox seq)` for recipients owned here.
        entries: Entries,
    },
    /// A typing notice for local members.
    Typing(Arc<TypingNotice>),
    /// A read receipt for local members.
    Receipt(Arc<ReadReceipt>),
    /// Shard `core` starts (or stops) watching `target`'s presence.
    Watch {
        /// The watched user (owned here).
        target: UserId,
        /// The watching shard.
        core: usize,
        /// Start or stop.
        add: bool,
    },
    /// A watched user's presence changed.
    PresenceChanged(PresenceInfo),
    /// Which of `users` (owned here) are online; answer shard `from`.
    PresenceAsk {
        /// The users.
        users: Vec<UserId>,
        /// The asking shard.
        from: usize,
        /// The asker's id for the question.
        ask: u64,
    },
    /// The answer to a `PresenceAsk`.
    PresenceAnswer {
        /// The asker's id for the question.
        ask: u64,
        /// Each user asked about, online or not.
        online: Vec<(UserId, bool)>,
    },
    /// Cached directory facts went stale.
    Invalidate(Invalidation),
    /// A login session was revoked: close its connections.
    Revoked {
        /// The user (owned here).
        user: UserId,
        /// The login session.
        session: u64,
    },
}

/// What the driver feeds a shard.
#[derive(Debug)]
pub enum Input {
    /// A message from a shard (this one included).
    Msg(ShardMsg),
    /// A storage completion of a send submitted here.
    Stored(Completion),
    /// The answer to [`Output::ReadLastInboxSeq`]; `None` if storage failed.
    LastInboxSeq {
        /// The user.
        user: UserId,
        /// The read's id, from the output.
        read: u64,
        /// Their last stored inbox seq.
        last: Option<InboxSeq>,
    },
    /// The answer to [`Output::ReadGap`]; `None` if storage failed.
    GapRead {
        /// The user.
        user: UserId,
        /// The entries read.
        entries: Option<Vec<InboxEntry>>,
    },
    /// A connection's replay sent everything up to `upto`: go live.
    ReplayDone {
        /// The connection.
        conn: ConnId,
        /// The last inbox seq replayed (or covered by the cursor).
        upto: InboxSeq,
    },
    /// A connection's transport is gone: forget it.
    Closed(ConnId),
    /// Close every connection with `GOING_AWAY`.
    Shutdown,
}

/// What the push service is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEvent {
    /// A user's first device connected here (`true`) or last one left.
    Presence(UserId, bool),
    /// A stored message reached a member who is not its sender.
    Delivered(PushJob, Found),
}

/// What a shard asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send a message to a shard (never this one: local work is done in
    /// place).
    ToCore(usize, ShardMsg),
    /// A connection has frames (or a close) for its writer.
    Wake(ConnId),
    /// A connection started closing: its reader stops waiting for the
    /// client once the close linger has passed. Said once per connection,
    /// so that no reader needs a timer to notice.
    Closing(ConnId),
    /// Read a user's last stored inbox seq, answer with
    /// [`Input::LastInboxSeq`].
    ReadLastInboxSeq {
        /// The user.
        user: UserId,
        /// Given back with the answer.
        read: u64,
    },
    /// Read `limit` inbox entries of `user` after `after`, answer with
    /// [`Input::GapRead`].
    ReadGap {
        /// The user.
        user: UserId,
        /// Read after this entry.
        after: InboxSeq,
        /// How many.
        limit: usize,
    },
    /// Replay stored entries `(from, to]` to a connection, then answer with
    /// [`Input::ReplayDone`].
    Replay {
        /// The connection.
        conn: ConnId,
        /// Replay after this entry.
        from: InboxSeq,
        /// Replay up to this entry.
        to: InboxSeq,
    },
    /// Persist a device's delivery cursor.
    SaveCursor {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
        /// The highest entry queued to it.
        delivered: InboxSeq,
    },
    /// Persist when a user was last seen.
    SaveLastSeen {
        /// The user.
        user: UserId,
        /// Wall-clock ms.
        at_ms: u64,
    },
    /// Tell the push service.
    Push(PushEvent),
    /// A presence question this shard asked was answered.
    PresenceAnswered {
        /// The question's id.
        ask: u64,
        /// The answer.
        online: Vec<(UserId, bool)>,
    },
}
