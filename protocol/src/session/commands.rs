//! The calls a session's user makes: the transport coming and going,
//! sends, and the requests that only make sense on a live session. They
//! queue frames for [`ClientSession::poll_transmit`] and never do IO.

use std::time::Instant;

use confab_types::{ChannelId, Seq, Text, UserId};

use super::{ClientSession, Event, PendingSend, SessionError, State};
use crate::frame::{
    Close, Frame, Hello, History, HistoryAnchor, PresenceQuery, PresenceSubscribe, Read, Send,
    Target, Typing, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::limits::validate_text;

impl ClientSession {
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

    pub(super) fn request_id(&mut self) -> u64 {
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
}
