//! Frames from the server: each one is turned into state changes, frames
//! to send and events for the user, so that [`ClientSession::handle`] is
//! the only way the server's word enters the session.

use std::time::{Duration, Instant};

use super::{reconnect_delay, ClientSession, Event, Held, State};
use crate::frame::{Error, Frame, FrameType, SyncBatch, Welcome};
use crate::ErrorCode;

impl ClientSession {
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
}
