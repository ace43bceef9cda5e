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

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, Text, UserId};

use crate::frame::*;
use crate::limits::validate_text;
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

    /// Replaces the token (after a refresh) for the next `Hello`, and reopens
    /// a session closed by an authentication error.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.config.token = token.into();
        if self.state == State::Closed {
            self.state = State::Disconnected;
        }
    }

    /// The transport is up: queues `Hello`. Anything left in the outbox from
    /// a previous connection is dropped (it will be sent again if it must).
    pub fn connected(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.outbox.clear();
        self.heartbeats_out.clear();
        self.filling = None;
        self.hole_since = None;
        self.held.clear();
        self.state = State::Handshaking;
        self.handshake_started = Some(now);
        self.last_received = Some(now);
        self.outbox.push_back(Frame::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            token: self.config.token.clone(),
            device_id: self.config.device_id,
            inbox_cursor: self.cursor,
        }));
    }

    /// The transport is gone. Pending sends are kept for the next connection.
    pub fn disconnected(&mut self) {
        if self.state != State::Closed {
            self.state = State::Disconnected;
        }
        self.outbox.clear();
        self.handshake_started = None;
    }

    /// Ends the session by the user's wish: queues `Close`.
    pub fn close(&mut self) {
        if self.state == State::Ready || self.state == State::Handshaking {
            self.outbox.push_back(Frame::Close(Close {
                code: 0,
                message: String::new(),
            }));
        }
        self.state = State::Closed;
    }

    /// Queues a message and returns its client message id. It is sent now
    /// if the session is ready, otherwise after the next `Welcome`, and
    /// again after every reconnect until it is acked.
    pub fn send(&mut self, target: Target, text: impl Into<Text>) -> Result<u64, SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        let text = text.into();
        validate_text(&text, self.config.max_text_chars).map_err(SessionError::InvalidText)?;
        if self.pending.len() >= self.config.max_pending {
            return Err(SessionError::TooManyPending(self.pending.len()));
        }
        let id = self.next_client_msg_id;
        self.next_client_msg_id += 1;
        let frame = Send {
            client_msg_id: id,
            target,
            text,
        };
        if self.state == State::Ready {
            self.outbox.push_back(Frame::Send(frame.clone()));
        }
        self.pending.insert(
            id,
            PendingSend {
                frame,
                retry_at: None,
                attempts: 1,
            },
        );
        Ok(id)
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Queues a frame that only makes sense on a live session.
    fn queue_live(&mut self, frame: Frame) -> bool {
        if self.state == State::Ready {
            self.outbox.push_back(frame);
            true
        } else {
            false
        }
    }

    /// Asks for a page of history; returns the request id, or `None` when
    /// the session is not ready.
    pub fn history(
        &mut self,
        channel_id: ChannelId,
        anchor: HistoryAnchor,
        limit: u32,
    ) -> Option<u64> {
        let request_id = self.request_id();
        self.queue_live(Frame::History(History {
            request_id,
            channel_id,
            anchor,
            limit,
        }))
        .then_some(request_id)
    }

    /// Asks for presence; returns the request id, or `None` when not ready.
    pub fn presence_query(&mut self, user_ids: Vec<UserId>) -> Option<u64> {
        let request_id = self.request_id();
        self.queue_live(Frame::PresenceQuery(PresenceQuery {
            request_id,
            user_ids,
        }))
        .then_some(request_id)
    }

    /// Subscribes to presence; returns the request id, or `None` when not
    /// ready (subscriptions live as long as the connection).
    pub fn presence_subscribe(&mut self, user_ids: Vec<UserId>) -> Option<u64> {
        let request_id = self.request_id();
        self.queue_live(Frame::PresenceSubscribe(PresenceSubscribe {
            request_id,
            user_ids,
        }))
        .then_some(request_id)
    }

    /// Sends a read receipt; false when not ready.
    pub fn read(&mut self, channel_id: ChannelId, seq: Seq) -> bool {
        self.queue_live(Frame::Read(Read { channel_id, seq }))
    }

    /// Says the user is typing; false when not ready.
    pub fn typing(&mut self, channel_id: ChannelId) -> bool {
        self.queue_live(Frame::Typing(Typing { channel_id }))
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        match self.state {
            State::Handshaking => {
                if let Some(t) = self.handshake_started {
                    earliest(t + 3 * DEFAULT_HEARTBEAT);
                }
            }
            State::Ready => {
                if let Some(t) = self.last_received {
                    earliest(t + 3 * self.heartbeat);
                }
                if let Some(t) = self.last_heartbeat {
                    earliest(t + self.heartbeat);
                }
                for p in self.pending.values() {
                    if let Some(t) = p.retry_at {
                        earliest(t);
                    }
                }
                if let (Some(t), None) = (self.hole_since, self.filling) {
                    earliest(t + FILL_GRACE);
                }
            }
            State::Disconnected | State::Closed => {}
        }
        at
    }

    /// Acts on the clock: heartbeats, the silence deadline, send retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Handshaking => {
                if self
                    .handshake_started
                    .is_some_and(|t| now >= t + 3 * DEFAULT_HEARTBEAT)
                {
                    self.timed_out();
                }
            }
            State::Ready => {
                if self
                    .last_received
                    .is_some_and(|t| now >= t + 3 * self.heartbeat)
                {
                    self.timed_out();
                    return;
                }
                if self
                    .last_heartbeat
                    .is_none_or(|t| now >= t + self.heartbeat)
                {
                    let nonce = self.request_id();
                    self.heartbeats_out.insert(nonce, now);
                    // Only the newest few matter for round-trip times.
                    while self.heartbeats_out.len() > 8 {
                        self.heartbeats_out.pop_first();
                    }
                    self.last_heartbeat = Some(now);
                    self.outbox.push_back(Frame::Heartbeat(Heartbeat { nonce }));
                }
                for p in self.pending.values_mut() {
                    if p.retry_at.is_some_and(|t| now >= t) {
                        p.retry_at = None;
                        p.attempts += 1;
                        self.outbox.push_back(Frame::Send(p.frame.clone()));
                    }
                }
                self.fill_if_needed(now);
            }
            State::Disconnected | State::Closed => {}
        }
    }

    fn timed_out(&mut self) {
        self.disconnected();
        self.events.push_back(Event::TimedOut);
    }

    /// Processes a frame from the server.
    pub fn handle(&mut self, now: Instant, frame: Frame) {
        self.last_received = Some(now);
        match frame {
            Frame::Welcome(w) => self.on_welcome(now, w),
            Frame::SendAck(ack) => {
                if self.pending.remove(&ack.client_msg_id).is_some() {
                    self.events.push_back(Event::Acked(ack.clone()));
                }
                // Our own message takes a place in our inbox too.
                self.deliver_or_hold(ack.inbox_seq, Held::Own);
                self.fill_if_needed(now);
            }
            Frame::Message(m) => {
                let seq = m.inbox_seq;
                self.deliver_or_hold(seq, Held::Message(m));
                self.fill_if_needed(now);
            }
            Frame::SyncBatch(batch) => self.on_sync_batch(now, batch),
            Frame::HistoryBatch(h) => self.events.push_back(Event::History(h)),
            Frame::Presence(p) => self.events.push_back(Event::Presence(p)),
            Frame::Receipt(r) => self.events.push_back(Event::Receipt(r)),
            Frame::TypingEvent(t) => self.events.push_back(Event::Typing(t)),
            Frame::HeartbeatAck(ack) => {
                if let Some(sent) = self.heartbeats_out.remove(&ack.nonce) {
                    self.events
                        .push_back(Event::HeartbeatRtt(now.saturating_duration_since(sent)));
                }
            }
            Frame::Error(e) => self.on_error(now, e),
            Frame::Close(c) => {
                let auth = matches!(
                    c.error_code(),
                    Some(
                        ErrorCode::Unauthenticated
                            | ErrorCode::TokenExpired
                            | ErrorCode::TokenRevoked
                            | ErrorCode::UnsupportedVersion
                    )
                );
                self.disconnected();
                if auth {
                    self.state = State::Closed;
                }
                self.events.push_back(Event::ServerClosed(c));
            }
            // Client frames from a server are a server bug; tell the user.
            other => self.events.push_back(Event::Error(Error {
                code: ErrorCode::UnexpectedFrame,
                message: format!("server sent a client frame: {}", other.frame_type().name()),
                frame_type: other.frame_type().as_u8(),
                request_id: 0,
            })),
        }
    }

    fn on_welcome(&mut self, now: Instant, w: Welcome) {
        if self.state != State::Handshaking {
            return;
        }
        self.state = State::Ready;
        self.handshake_started = None;
        self.heartbeat = Duration::from_millis(u64::from(w.heartbeat_interval_ms.max(100)));
        self.last_heartbeat = Some(now);
        self.config.max_text_chars = w.limits.max_text_chars as usize;
        // Everything not acked goes again, oldest first, with its original
        // id: the server answers a stored one with its original ack.
        for p in self.pending.values_mut() {
            p.retry_at = None;
            self.outbox.push_back(Frame::Send(p.frame.clone()));
        }
        self.events.push_back(Event::Connected(w));
    }

    fn on_error(&mut self, now: Instant, e: Error) {
        if e.frame_type == FrameType::Send.as_u8() {
            if let Some(p) = self.pending.get_mut(&e.request_id) {
                if e.code.is_retryable() {
                    let backoff = reconnect_delay(p.attempts, e.request_id);
                    p.retry_at = Some(now + backoff);
                } else {
                    self.pending.remove(&e.request_id);
                    self.events.push_back(Event::SendFailed {
                        client_msg_id: e.request_id,
                        code: e.code,
                        message: e.message,
                    });
                }
                return;
            }
        }
        if e.frame_type == FrameType::Sync.as_u8() && self.filling == Some(e.request_id) {
            self.filling = None;
        }
        if self.state == State::Handshaking
            && matches!(
                e.code,
                ErrorCode::Unauthenticated
                    | ErrorCode::TokenExpired
                    | ErrorCode::TokenRevoked
                    | ErrorCode::UnsupportedVersion
            )
        {
            self.state = State::Closed;
        }
        self.events.push_back(Event::Error(e));
    }

    fn on_sync_batch(&mut self, now: Instant, batch: SyncBatch) {
        for m in batch.messages {
            let seq = m.inbox_seq;
            self.deliver_or_hold(seq, Held::Message(m));
        }
        if batch.request_id != 0 && self.filling == Some(batch.request_id) {
            self.filling = None;
            if batch.has_more {
                self.request_fill();
                return;
            }
        }
        self.fill_if_needed(now);
    }

    /// Delivers an entry that continues the cursor (and whatever it
    /// unblocks), holds one beyond a hole, and drops one already seen.
    fn deliver_or_hold(&mut self, inbox_seq: InboxSeq, entry: Held) {
        if inbox_seq == InboxSeq::ZERO || inbox_seq <= self.cursor {
            return;
        }
        if inbox_seq > self.cursor.next() {
            self.held.entry(inbox_seq).or_insert(entry);
            while self.held.len() > MAX_HELD {
                self.held.pop_last();
            }
            return;
        }
        self.step(entry);
        while let Some(next) = self.held.remove(&self.cursor.next()) {
            self.step(next);
        }
        if self.held.is_empty() {
            self.hole_since = None;
        }
    }

    fn step(&mut self, entry: Held) {
        self.cursor = self.cursor.next();
        if let Held::Message(m) = entry {
            self.events.push_back(Event::Message(m));
        }
    }

    /// A hole exists when something is held beyond the cursor: once it has
    /// outlived the grace period, ask for the missing entries unless a
    /// request is already out.
    fn fill_if_needed(&mut self, now: Instant) {
        if self.held.is_empty() || self.filling.is_some() || self.state != State::Ready {
            return;
        }
        let since = *self.hole_since.get_or_insert(now);
        if now >= since + FILL_GRACE {
            self.request_fill();
        }
    }

    fn request_fill(&mut self) {
        self.hole_since = None;
        let request_id = self.request_id();
        self.filling = Some(request_id);
        self.outbox.push_back(Frame::Sync(Sync {
            request_id,
            after: self.cursor,
            limit: SYNC_PAGE,
        }));
    }
}

/// How long to wait before reconnect attempt `attempt` (1-based):
/// exponential from 250 ms, capped at 30 s, with jitter taken from `random`
/// so that clients dropped together do not return together. Pass any
/// random number; the function itself has no source of randomness.
pub fn reconnect_delay(attempt: u32, random: u64) -> Duration {
    let base_ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(7));
    let cap_ms = base_ms.min(30_000);
    // Half fixed, half random: never immediately, never all at once.
    let half = cap_ms / 2;
    Duration::from_millis(half + random % (half + 1))
}
