//! The frames of protocol version 1: one Rust type per frame, shared by the
//! binary and the JSON encodings so both round-trip to the same values.
//!
//! Field order inside each struct is the binary field order; see
//! docs/protocol.md for the byte layout of every frame.

use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, StoredMessage, Text, UserId};
use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// The protocol version this crate speaks best.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

macro_rules! frame_types {
    ($($(#[doc = $doc:expr])* $name:ident = $byte:expr, $text:expr;)*) => {
        /// The type byte that follows a binary frame's length prefix (and the
        /// `type` string of a JSON frame).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FrameType {
            $($(#[doc = $doc])* $name,)*
        }

        impl FrameType {
            /// Every frame type, in byte order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$name,)*];

            /// The type's byte on the wire.
            pub fn as_u8(self) -> u8 {
                match self { $(FrameType::$name => $byte,)* }
            }

            /// The type for a byte, if this version knows it.
            pub fn from_u8(b: u8) -> Option<FrameType> {
                match b { $($byte => Some(FrameType::$name),)* _ => None }
            }

            /// The JSON `type` string (snake_case), also used in messages.
            pub fn name(self) -> &'static str {
                match self { $(FrameType::$name => $text,)* }
            }
        }
    };
}

frame_types! {
    /// Client opens a session.
    Hello = 0x01, "hello";
    /// Client sends a message.
    Send = 0x02, "send";
    /// Client asks for inbox entries after a cursor.
    Sync = 0x03, "sync";
    /// Client asks for a page of a channel's history.
    History = 0x04, "history";
    /// Client marks a channel read up to a sequence.
    Read = 0x05, "read";
    /// Client is typing in a channel.
    Typing = 0x06, "typing";
    /// Client asks for the presence of some users.
    PresenceQuery = 0x07, "presence_query";
    /// Client subscribes to presence changes of some users.
    PresenceSubscribe = 0x08, "presence_subscribe";
    /// Client drops presence subscriptions.
    PresenceUnsubscribe = 0x09, "presence_unsubscribe";
    /// Client keep-alive.
    Heartbeat = 0x0a, "heartbeat";
    /// Either side ends the session.
    Close = 0x0b, "close";
    /// Server accepts a session.
    Welcome = 0x41, "welcome";
    /// Server confirms a stored message.
    SendAck = 0x42, "send_ack";
    /// Server delivers a message.
    Message = 0x43, "message";
    /// Server answers `Sync` (and replays the inbox after `Hello`).
    SyncBatch = 0x44, "sync_batch";
    /// Server answers `History`.
    HistoryBatch = 0x45, "history_batch";
    /// Server reports presence (answer or pushed change).
    Presence = 0x46, "presence";
    /// Server relays a read receipt.
    Receipt = 0x47, "receipt";
    /// Server relays that a member is typing.
    TypingEvent = 0x48, "typing_event";
    /// Server answers `Heartbeat`.
    HeartbeatAck = 0x49, "heartbeat_ack";
    /// Server reports a failed request.
    Error = 0x4a, "error";
}

impl FrameType {
    /// Whether clients send this frame (`Close` goes both ways).
    pub fn is_client_frame(self) -> bool {
        self.as_u8() < 0x40
    }

    /// Whether servers send this frame (`Close` goes both ways).
    pub fn is_server_frame(self) -> bool {
        self.as_u8() >= 0x40 || self == FrameType::Close
    }
}

/// One protocol frame.
///
/// In JSON a frame is an object whose `type` names the variant in snake_case
/// and whose other members are the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Send`].
    Send(Send),
    /// See [`Sync`].
    Sync(Sync),
    /// See [`History`].
    History(History),
    /// See [`Read`].
    Read(Read),
    /// See [`Typing`].
    Typing(Typing),
    /// See [`PresenceQuery`].
    PresenceQuery(PresenceQuery),
    /// See [`PresenceSubscribe`].
    PresenceSubscribe(PresenceSubscribe),
    /// See [`PresenceUnsubscribe`].
    PresenceUnsubscribe(PresenceUnsubscribe),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Close`].
    Close(Close),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`SendAck`].
    SendAck(SendAck),
    /// See [`Message`].
    Message(Message),
    /// See [`SyncBatch`].
    SyncBatch(SyncBatch),
    /// See [`HistoryBatch`].
    HistoryBatch(HistoryBatch),
    /// See [`Presence`].
    Presence(Presence),
    /// See [`Receipt`].
    Receipt(Receipt),
    /// See [`TypingEvent`].
    TypingEvent(TypingEvent),
    /// See [`HeartbeatAck`].
    HeartbeatAck(HeartbeatAck),
    /// See [`Error`].
    Error(Error),
}

impl Frame {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Send(_) => FrameType::Send,
            Frame::Sync(_) => FrameType::Sync,
            Frame::History(_) => FrameType::History,
            Frame::Read(_) => FrameType::Read,
            Frame::Typing(_) => FrameType::Typing,
            Frame::PresenceQuery(_) => FrameType::PresenceQuery,
            Frame::PresenceSubscribe(_) => FrameType::PresenceSubscribe,
            Frame::PresenceUnsubscribe(_) => FrameType::PresenceUnsubscribe,
            Frame::Heartbeat(_) => FrameType::Heartbeat,
            Frame::Close(_) => FrameType::Close,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::SendAck(_) => FrameType::SendAck,
            Frame::Message(_) => FrameType::Message,
            Frame::SyncBatch(_) => FrameType::SyncBatch,
            Frame::HistoryBatch(_) => FrameType::HistoryBatch,
            Frame::Presence(_) => FrameType::Presence,
            Frame::Receipt(_) => FrameType::Receipt,
            Frame::TypingEvent(_) => FrameType::TypingEvent,
            Frame::HeartbeatAck(_) => FrameType::HeartbeatAck,
            Frame::Error(_) => FrameType::Error,
        }
    }

    /// The id an `Error` answering this frame refers to: the client message
    /// id of a `Send`, the request id of a query, 0 for frames without one.
    pub fn request_id(&self) -> u64 {
        match self {
            Frame::Send(f) => f.client_msg_id,
            Frame::Sync(f) => f.request_id,
            Frame::History(f) => f.request_id,
            Frame::PresenceQuery(f) => f.request_id,
            Frame::PresenceSubscribe(f) => f.request_id,
            Frame::Heartbeat(f) => f.nonce,
            _ => 0,
        }
    }
}

/// Opens a session (client → server, first frame on a connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Oldest protocol version the client speaks.
    pub min_version: u16,
    /// Newest protocol version the client speaks.
    pub max_version: u16,
    /// Bearer access token from the HTTP API.
    pub token: String,
    /// The device's id (stable per installation).
    pub device_id: DeviceId,
    /// The last inbox sequence this device has; the server replays what
    /// follows it before live delivery (0 for a new device).
    pub inbox_cursor: InboxSeq,
}

/// Where a `Send` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// An existing channel (group or DM) by id.
    Channel(ChannelId),
    /// A user: the 1:1 channel with them (the server resolves or creates it).
    User(UserId),
}

/// Sends a message (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// Chosen by the client, unique per device; a retried send with the same
    /// id is answered with the original ack and stores nothing new.
    pub client_msg_id: u64,
    /// Where the message goes.
    pub target: Target,
    /// UTF-8 text, 1 to 100,000 characters.
    pub text: Text,
}

/// Asks for inbox entries after a cursor (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Echoed in the answer.
    pub request_id: u64,
    /// Return entries with inbox sequence greater than this.
    pub after: InboxSeq,
    /// At most this many entries (capped by the server's `max_page`).
    pub limit: u32,
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HistoryAnchor {
    /// The newest messages.
    Latest,
    /// The newest messages with a sequence lower than this.
    Before(Seq),
    /// The oldest messages with a sequence greater than this.
    After(Seq),
}

/// Asks for a page of a channel's history (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Echoed in the answer.
    pub request_id: u64,
    /// The channel.
    pub channel_id: ChannelId,
    /// Which page.
    pub anchor: HistoryAnchor,
    /// At most this many messages (capped by the server's `max_page`).
    pub limit: u32,
}

/// Marks a channel read up to a sequence (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Read {
    /// The channel.
    pub channel_id: ChannelId,
    /// Read up to and including this channel sequence.
    pub seq: Seq,
}

/// The user is typing in a channel (client → server; never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    /// The channel.
    pub channel_id: ChannelId,
}

/// Asks for the presence of users (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Echoed in the answer.
    pub request_id: u64,
    /// The users (at most the server's `max_presence_users`).
    pub user_ids: Vec<UserId>,
}

/// Subscribes to presence changes (client → server); answered with the
/// users' current presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSubscribe {
    /// Echoed in the answer.
    pub request_id: u64,
    /// The users (at most the server's `max_presence_users`).
    pub user_ids: Vec<UserId>,
}

/// Drops presence subscriptions (client → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceUnsubscribe {
    /// The users.
    pub user_ids: Vec<UserId>,
}

/// Keep-alive (client → server), answered with `HeartbeatAck`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Echoed in the answer (lets the client measure round trips).
    pub nonce: u64,
}

/// Ends the session (either direction); the sender closes the transport
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Close {
    /// 0 for a normal close, otherwise the [`ErrorCode`] number that ended
    /// the session (`GOING_AWAY` when the server shuts down).
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
}

impl Close {
    /// The error that ended the session, `None` for a normal close.
    pub fn error_code(&self) -> Option<ErrorCode> {
        (self.code != 0).then(|| ErrorCode::from_code(self.code))
    }
}

/// The limits a server enforces, announced in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest frame, in bytes, either side may send.
    pub max_frame_bytes: u32,
    /// Longest message text, in characters (Unicode scalar values).
    pub max_text_chars: u32,
    /// Most members a group may have.
    pub max_group_members: u32,
    /// Most entries in one `SyncBatch`/`HistoryBatch`.
    pub max_page: u32,
    /// Most users in one presence query or subscription.
    pub max_presence_users: u32,
    /// Sustained sends per second allowed per user.
    pub send_rate_per_s: u32,
}

/// Accepts a session (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The negotiated protocol version.
    pub version: u16,
    /// The authenticated user.
    pub user_id: UserId,
    /// This session's id (for logs and support).
    pub session_id: u64,
    /// Send a `Heartbeat` at least this often; a device silent for three
    /// intervals is dropped.
    pub heartbeat_interval_ms: u32,
    /// The server's limits.
    pub limits: Limits,
}

/// Confirms a stored message (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendAck {
    /// The `Send`'s client message id.
    pub client_msg_id: u64,
    /// The channel it was stored in.
    pub channel_id: ChannelId,
    /// Its sequence in that channel.
    pub seq: Seq,
    /// The sender's own inbox sequence for it: the sending device gets this
    /// ack instead of a `Message`, and advances its cursor past it.
    pub inbox_seq: InboxSeq,
    /// Server time of storing, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this answers a retry of an already stored message.
    pub duplicate: bool,
}

/// A message (server → client), live or in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// The receiving user's inbox sequence (the device's new cursor); 0 in
    /// `HistoryBatch`, where messages are read by channel, not by inbox.
    pub inbox_seq: InboxSeq,
    /// The channel.
    pub channel_id: ChannelId,
    /// The message's sequence in the channel (gapless from 1).
    pub seq: Seq,
    /// The sender.
    pub sender_id: UserId,
    /// The sender's device.
    pub sender_device: DeviceId,
    /// The sender's client message id (lets the sender's devices match it).
    pub client_msg_id: u64,
    /// Server time of storing, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The text.
    pub text: Text,
}

impl Message {
    /// A stored message as a recipient whose inbox seq is `inbox_seq` gets
    /// it (0 for a history page): its fields moved, its text shared.
    pub fn stored(inbox_seq: InboxSeq, m: StoredMessage) -> Message {
        Message {
            inbox_seq,
            channel_id: m.channel,
            seq: m.seq,
            sender_id: m.sender,
            sender_device: m.device,
            client_msg_id: m.client_msg_id,
            timestamp_ms: m.timestamp_ms,
            text: m.text,
        }
    }

    /// The stored message this frame carries (its text shared, not
    /// copied); the inverse of [`Message::stored`].
    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            channel: self.channel_id,
            seq: self.seq,
            sender: self.sender_id,
            device: self.sender_device,
            client_msg_id: self.client_msg_id,
            timestamp_ms: self.timestamp_ms,
            text: self.text.clone(),
        }
    }
}

/// Inbox entries (server → client): the answer to `Sync`, and the replay
/// after `Hello` (request id 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBatch {
    /// The `Sync`'s request id; 0 for the replay after `Hello`.
    pub request_id: u64,
    /// More entries follow (the server sends them in further batches for a
    /// replay; for a `Sync`, ask again after the last `inbox_seq`).
    pub has_more: bool,
    /// Entries in inbox order.
    pub messages: Vec<Message>,
}

/// A page of a channel's history (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryBatch {
    /// The `History`'s request id.
    pub request_id: u64,
    /// The channel.
    pub channel_id: ChannelId,
    /// More messages lie beyond this page (older ones for `latest`/`before`,
    /// newer ones for `after`).
    pub has_more: bool,
    /// Messages in ascending sequence order, whatever the anchor.
    pub messages: Vec<Message>,
}

/// One user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceInfo {
    /// The user.
    pub user_id: UserId,
    /// At least one device connected and heartbeating.
    pub online: bool,
    /// When the user was last online, ms since the Unix epoch (0: never, or
    /// not visible to the asker).
    pub last_seen_ms: u64,
}

/// Presence (server → client): an answer, or a pushed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// The answered request's id; 0 for a pushed change.
    pub request_id: u64,
    /// The users' presence.
    pub entries: Vec<PresenceInfo>,
}

/// A member read a channel up to a sequence (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The channel.
    pub channel_id: ChannelId,
    /// Who read.
    pub user_id: UserId,
    /// Read up to and including this sequence.
    pub seq: Seq,
}

/// A member is typing (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingEvent {
    /// The channel.
    pub channel_id: ChannelId,
    /// Who is typing.
    pub user_id: UserId,
}

/// Answers a `Heartbeat` (server → client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatAck {
    /// The heartbeat's nonce.
    pub nonce: u64,
    /// Server time, ms since the Unix epoch.
    pub server_time_ms: u64,
}

/// A request failed (server → client). The connection stays open unless a
/// `Close` follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Error {
    /// What failed.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// Type byte of the frame this answers (0 when it answers none).
    pub frame_type: u8,
    /// That frame's [`Frame::request_id`] (0 when it has none or it could
    /// not be read).
    pub request_id: u64,
}
