//! What the driver does with a [`Client`](crate::Client) handle's commands,
//! whether or not a connection is up: calls go to the session or wait for
//! one, and a refused session fails them with the server's reason.

use confab_protocol::frame::{Frame, PresenceUnsubscribe};
use confab_protocol::session::{SessionError, State};

use super::{Command, Driver, Flow};
use crate::error::ClientError;
use crate::requests::Request;

impl Driver {
    pub(super) fn on_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Send {
                target,
                text,
                reply,
            } => {
                match self.session.send(target, text) {
                    Ok(id) => {
                        self.sends.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.session_error(e)));
                    }
                }
                self.shared
                    .set_next_client_msg_id(self.session.next_client_msg_id());
            }
            Command::History {
                channel_id,
                anchor,
                limit,
                reply,
            } => self.request(Request::History {
                channel_id,
                anchor,
                limit,
                reply,
            }),
            Command::PresenceQuery { users, reply } => {
                self.request(Request::Query { users, reply })
            }
            Command::PresenceSubscribe { users, reply } => self.request(Request::Subscribe {
                users,
                reply: Some(reply),
            }),
            Command::PresenceUnsubscribe { users } => {
                if self.requests.unsubscribe(&users) && self.session.state() == State::Ready {
                    self.extra
                        .push(Frame::PresenceUnsubscribe(PresenceUnsubscribe {
                            user_ids: users,
                        }));
                }
            }
            Command::Read { channel_id, seq } => {
                if !self.session.read(channel_id, seq) {
                    let mark = self.reads.entry(channel_id).or_insert(seq);
                    *mark = (*mark).max(seq);
                }
            }
            Command::Typing { channel_id } => {
                self.session.typing(channel_id);
            }
            Command::SetToken(token) => {
                self.session.set_token(token);
                if self.refused.take().is_some() {
                    tracing::info!("new token: reconnecting");
                    self.attempt = 0;
                }
            }
            Command::Reconnect => return Flow::Reconnect,
            Command::Close(done) => {
                self.closers.push(done);
                return Flow::Exit;
            }
        }
        Flow::Continue
    }

    fn request(&mut self, request: Request) {
        if let Some((code, message)) = &self.refused {
            let (code, message) = (*code, message.clone());
            request.fail(ClientError::Refused { code, message });
            return;
        }
        self.requests.submit(request, &mut self.session);
    }

    fn session_error(&self, e: SessionError) -> ClientError {
        match e {
            SessionError::TooManyPending(n) => ClientError::TooManyPending(n),
            SessionError::InvalidText(code) => ClientError::InvalidText(code),
            SessionError::Closed => match &self.refused {
                Some((code, message)) => ClientError::Refused {
                    code: *code,
                    message: message.clone(),
                },
                None => ClientError::Closed,
            },
        }
    }
}
