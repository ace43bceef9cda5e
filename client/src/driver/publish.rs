//! How the driver turns what the session reports into application events
//! and call results, and decides from it whether a connection must end.
//! The published cursor lives here: an event and the cursor it carries
//! always move together.

use confab_protocol::session::{Event, State};
use confab_protocol::ErrorCode;
use confab_types::InboxSeq;

use super::{Driver, End};
use crate::error::ClientError;
use crate::event::{ClientEvent, ConnectionState, Item};

impl Driver {
    /// Turns what the session has to say into events and call results;
    /// returns why the connection must end, if it must.
    pub(super) fn publish(&mut self) -> Option<End> {
        let mut end = None;
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Connected(welcome) => {
                    tracing::info!(
                        user_id = welcome.user_id.0,
                        session_id = welcome.session_id,
                        "session established"
                    );
                    self.attempt = 0;
                    self.user_id = Some(welcome.user_id);
                    self.shared.set_user_id(welcome.user_id);
                    self.shared.set_state(ConnectionState::Connected);
                    self.requests
                        .on_ready(&mut self.session, welcome.limits.max_presence_users);
                    for (channel_id, seq) in std::mem::take(&mut self.reads) {
                        self.session.read(channel_id, seq);
                    }
                    self.emit(ClientEvent::Connected(welcome));
                }
                Event::Acked(ack) => match self.sends.remove(&ack.client_msg_id) {
                    Some(reply) => {
                        if let Err(Ok(ack)) = reply.send(Ok(ack)) {
                            self.emit(ClientEvent::Sent(ack));
                        }
                    }
                    None => tracing::warn!(id = ack.client_msg_id, "ack for an unknown send"),
                },
                Event::SendFailed {
                    client_msg_id,
                    code,
                    message,
                } => {
                    let error = ClientError::Server { code, message };
                    self.send_failed(client_msg_id, error);
                }
                Event::Message(m) => {
                    let cursor = m.inbox_seq;
                    let own = self.user_id == Some(m.sender_id)
                        && m.sender_device == self.device_id
                        && m.client_msg_id >= self.first_client_msg_id;
                    // Our own send, replayed because its ack was lost with a
                    // connection: its future reports it (the retry's
                    // duplicate ack resolves it), so it is not an event.
                    let event = (!own).then_some(ClientEvent::Message(m));
                    self.emit_at(event, cursor);
                }
                Event::History(batch) => self.requests.on_history(batch),
                Event::Presence(p) => {
                    let entries = if p.request_id == 0 {
                        Some(p.entries)
                    } else {
                        self.requests.on_presence(p)
                    };
                    if let Some(entries) = entries {
                        self.emit(ClientEvent::Presence(entries));
                    }
                }
                Event::Receipt(r) => self.emit(ClientEvent::Receipt(r)),
                Event::Typing(t) => self.emit(ClientEvent::Typing(t)),
                Event::HeartbeatRtt(rtt) => self.emit(ClientEvent::Rtt(rtt)),
                Event::Error(e) => {
                    if self.requests.on_error(&e) {
                        continue;
                    }
                    if self.session.state() == State::Closed && self.closers.is_empty() {
                        // Refused during the handshake; the `Close` that
                        // follows adds nothing.
                        self.refuse(e.code, e.message);
                        end = end.or(Some(End::Refused));
                    } else {
                        tracing::debug!(code = %e.code, message = %e.message, "server error");
                        self.emit(ClientEvent::ServerError(e));
                    }
                }
                Event::ServerClosed(close) => {
                    let code = close.error_code();
                    if self.session.state() == State::Closed && self.closers.is_empty() {
                        if self.refused.is_none() {
                            let code = code.unwrap_or(ErrorCode::Unauthenticated);
                            self.refuse(code, close.message);
                        }
                        end = end.or(Some(End::Refused));
                    } else {
                        let reason = match code {
                            Some(code) => {
                                format!("the server closed the session: {code} {}", close.message)
                            }
                            None => format!("the server closed the session {}", close.message),
                        };
                        end = end.or(Some(End::Lost(reason)));
                    }
                }
                Event::TimedOut => {
                    end = end.or(Some(End::Lost(
                        "the server went silent (no Welcome or no frame in three heartbeat intervals)"
                            .into(),
                    )));
                }
            }
        }
        let cursor = self.session.cursor();
        if cursor > self.published_cursor {
            // Only our own acks moved it: no event, but the application's
            // cursor may move past them.
            self.emit_at(None, cursor);
        }
        self.shared.set_cursor(cursor);
        end
    }

    fn refuse(&mut self, code: ErrorCode, message: String) {
        tracing::warn!(%code, %message, "the server refused the session; waiting for a new token");
        self.refused = Some((code, message.clone()));
        let error = ClientError::Refused {
            code,
            message: message.clone(),
        };
        self.requests.fail_all(&error);
        self.emit(ClientEvent::Refused { code, message });
    }

    pub(super) fn send_failed(&mut self, client_msg_id: u64, error: ClientError) {
        if let Some(reply) = self.sends.remove(&client_msg_id) {
            if let Err(Err(error)) = reply.send(Err(error)) {
                self.emit(ClientEvent::SendFailed {
                    client_msg_id,
                    error,
                });
            }
        }
    }

    pub(super) fn emit(&mut self, event: ClientEvent) {
        self.emit_at(Some(event), self.published_cursor);
    }

    fn emit_at(&mut self, event: Option<ClientEvent>, cursor: InboxSeq) {
        self.published_cursor = self.published_cursor.max(cursor);
        // A dropped receiver means nobody listens; the session goes on.
        let _ = self.events.send(Item {
            event,
            cursor: self.published_cursor,
        });
    }
}
