//! The client side of a session as a sans-IO state machine, in the style of
//! quinn-proto's `Connection`: the caller owns the transport and the clock,
//! feeds it frames with [`ClientSession::handle`] and timeouts with
//! [`ClientSession::handle_timeout`], and drains what to send with
//! [`ClientSession::poll_transmit`] and what happened with
//! [`ClientSession::poll_event`].
//!
//! It is where "no gap, no duplicate" is kept on the client: it tracks the
//! inbox cursor, holds sends until they are acked and sends them again (same
//! client message id, so the server deduplicates) after a reconnect, drops
//! messages it has already seen, and fills a hole in the inbox with a `Sync`
//! before delivering what follows it.
//!
//! This file holds the types and the session's state; the methods that
//! drive it live beside it, one file per concern: `commands` (the user's
//! calls), `timers` (the clock), `inbound` (frames from the server) and
//! `inbox` (ordering and filling holes).

mod commands;
mod inbound;
mod inbox;
mod timers;

pub use timers::reconnect_delay;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use confab_types::{DeviceId, InboxSeq};

use crate::frame::{
    Close, Error, Frame, HistoryBatch, Message, Presence, Receipt, Send, SendAck, TypingEvent,
    Welcome,
};
use crate::ErrorCode;

/// Heartbeat interval assumed until the server's `Welcome` names one, and
/// the handshake's deadline (three of them).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Out-of-order messages held while a hole is being filled; beyond this the
/// newest are dropped and fetched again by the sync.
const MAX_HELD: usize = 4096;
/// Inbox entries asked for per `Sync` page when filling a hole.
const SYNC_PAGE: u32 = 256;
/// How long a hole may stay open before a `Sync` is sent for it. Entries
/// routed through different server cores (our own ack, a friend's message)
/// can overtake each other by a little; only a hole that outlives this is
/// a real loss to repair.
const FILL_GRACE: Duration = Duration::from_millis(250);

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Bearer access token.
    pub token: String,
    /// This device's id.
    pub device_id: DeviceId,
    /// The inbox cursor saved from the last run (0 for a new device).
    pub inbox_cursor: InboxSeq,
    /// Most unacknowledged sends held at once.
    pub max_pending: usize,
    /// First client message id to use; persist [`ClientSession::next_client_msg_id`]
    /// across runs so that ids stay unique per device.
    pub first_client_msg_id: u64,
    /// Longest text accepted by [`ClientSession::send`], in characters.
    pub max_text_chars: usize,
}

impl SessionConfig {
    /// A configuration with default limits.
    pub fn new(token: impl Into<String>, device_id: DeviceId) -> SessionConfig {
        SessionConfig {
            token: token.into(),
            device_id,
            inbox_cursor: InboxSeq::ZERO,
            max_pending: 1024,
            first_client_msg_id: 1,
            max_text_chars: crate::limits::MAX_TEXT_CHARS,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No transport; sends are held until the next connection.
    Disconnected,
    /// `Hello` sent, waiting for `Welcome`.
    Handshaking,
    /// Welcome received; frames flow.
    Ready,
    /// The server refused the credentials or the session was closed by the
    /// user; reconnecting will not help without a new token.
    Closed,
}

/// What the session tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted the session.
    Connected(Welcome),
    /// A send was stored.
    Acked(SendAck),
    /// A send was refused for good (the text was too long, the channel is
    /// forbidden, ...); it will not be retried.
    SendFailed {
        /// The send's client message id.
        client_msg_id: u64,
        /// Why.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// A message, in inbox order, each exactly once.
    Message(Message),
    /// A page of history that was asked for.
    History(HistoryBatch),
    /// Presence: an answer or a pushed change.
    Presence(Presence),
    /// A read receipt.
    Receipt(Receipt),
    /// Someone is typing.
    Typing(TypingEvent),
    /// A round trip measured by a heartbeat.
    HeartbeatRtt(Duration),
    /// An error not tied to a pending send.
    Error(Error),
    /// The server closed the session; reconnect unless [`State::Closed`].
    ServerClosed(Close),
    /// The server went silent (no frame for three heartbeat intervals, or no
    /// `Welcome` in time): drop the transport and reconnect.
    TimedOut,
}

/// Why a local call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Too many sends await their ack.
    #[error("{0} sends are already waiting for their ack")]
    TooManyPending(usize),
    /// The text breaks the protocol's rules.
    #[error("invalid text: {0}")]
    InvalidText(ErrorCode),
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

#[derive(Debug)]
struct PendingSend {
    frame: Send,
    /// When a retryable failure may be sent again; `None` when it waits for
    /// a connection or an ack.
    retry_at: Option<Instant>,
    attempts: u32,
}

/// An inbox entry that arrived ahead of a hole.
#[derive(Debug)]
enum Held {
    Message(Message),
    /// One of our own sends, acked: nothing to deliver, just a step.
    Own,
}

/// The client session state machine.
#[derive(Debug)]
pub struct ClientSession {
    config: SessionConfig,
    state: State,
    cursor: InboxSeq,
    next_client_msg_id: u64,
    next_request_id: u64,
    pending: BTreeMap<u64, PendingSend>,
    held: BTreeMap<InboxSeq, Held>,
    /// Request id of the `Sync` filling a hole, if one is out.
    filling: Option<u64>,
    /// When the current hole was first seen.
    hole_since: Option<Instant>,
    outbox: VecDeque<Frame>,
    events: VecDeque<Event>,
    heartbeat: Duration,
    last_received: Option<Instant>,
    last_heartbeat: Option<Instant>,
    heartbeats_out: BTreeMap<u64, Instant>,
    handshake_started: Option<Instant>,
}

impl ClientSession {
    /// A disconnected session.
    pub fn new(config: SessionConfig) -> ClientSession {
        ClientSession {
            cursor: config.inbox_cursor,
            next_client_msg_id: config.first_client_msg_id.max(1),
            config,
            state: State::Disconnected,
            next_request_id: 1,
            pending: BTreeMap::new(),
            held: BTreeMap::new(),
            filling: None,
            hole_since: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            last_received: None,
            last_heartbeat: None,
            heartbeats_out: BTreeMap::new(),
            handshake_started: None,
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The last inbox sequence delivered with nothing missing before it;
    /// save it to resume from after a restart.
    pub fn cursor(&self) -> InboxSeq {
        self.cursor
    }

    /// The client message id the next send will get.
    pub fn next_client_msg_id(&self) -> u64 {
        self.next_client_msg_id
    }

    /// Sends not yet acknowledged.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
}
