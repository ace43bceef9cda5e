//! The background task: one per client, the only owner of the sans-IO
//! `ClientSession` and of the transport. It feeds the session the frames
//! that arrive and the clock, writes what the session wants sent, turns
//! session events into application events and call results, and runs the
//! connect / lose / back off / reconnect cycle.
//!
//! Everything that makes delivery exact (cursor, duplicate suppression,
//! hole repair, retransmission of unacknowledged sends) is the session's;
//! this task only guarantees that the session sees every frame and every
//! connection boundary.

use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::binary;
use confab_protocol::frame::{
    Close, Frame, HistoryAnchor, HistoryBatch, PresenceInfo, PresenceUnsubscribe, SendAck, Target,
};
use confab_protocol::session::{
    reconnect_delay, ClientSession, Event, SessionConfig, SessionError, State,
};
use confab_protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot};

use crate::client::Shared;
use crate::config::{ClientConfig, Validated};
use crate::error::ClientError;
use crate::event::{ClientEvent, ConnectionState, Item};
use crate::requests::{Reply, Request, Requests};
use crate::transport::{self, Connection, Incoming};

/// How long a closing client waits for its `Close` frame to be written and
/// the transport to shut down cleanly.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames handled per wake-up before writing and publishing, so that a
/// burst costs one pass but the clock and commands are not starved.
const FRAMES_PER_PASS: usize = 256;

/// What a [`Client`](crate::Client) handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        target: Target,
        text: confab_types::Text,
        reply: Reply<SendAck>,
    },
    History {
        channel_id: ChannelId,
        anchor: HistoryAnchor,
        limit: u32,
        reply: Reply<HistoryBatch>,
    },
    PresenceQuery {
        users: Vec<UserId>,
        reply: Reply<Vec<PresenceInfo>>,
    },
    PresenceSubscribe {
        users: Vec<UserId>,
        reply: Reply<Vec<PresenceInfo>>,
    },
    PresenceUnsubscribe {
        users: Vec<UserId>,
    },
    Read {
        channel_id: ChannelId,
        seq: Seq,
    },
    Typing {
        channel_id: ChannelId,
    },
    SetToken(String),
    Reconnect,
    Close(oneshot::Sender<()>),
}

/// Whether the task goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Drop the connection (if any) and reconnect.
    Reconnect,
    Exit,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Transport lost, server close, silence: reconnect after a delay.
    Lost(String),
    /// The server refused the session: wait for a new token.
    Refused,
    /// The application closed the client.
    Exit,
}

pub(crate) struct Driver {
    config: Validated,
    session: ClientSession,
    device_id: DeviceId,
    /// Messages from this device with a client message id from here on
    /// were sent by this client; their outcome is the send's, not an event.
    first_client_msg_id: u64,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Item>,
    shared: Arc<Shared>,
    /// Sends waiting for their ack, by client message id.
    sends: HashMap<u64, Reply<SendAck>>,
    requests: Requests,
    /// Read marks made while not connected, newest per channel.
    reads: BTreeMap<ChannelId, Seq>,
    /// Frames the session has no call for (presence unsubscribe), sent
    /// with its own on the live connection.
    extra: Vec<Frame>,
    user_id: Option<UserId>,
    /// The cursor as published with the last event.
    published_cursor: InboxSeq,
    /// Reconnect attempts since the last established session.
    attempt: u32,
    /// Why the server refused the session, while it stays refused.
    refused: Option<(ErrorCode, String)>,
    closers: Vec<oneshot::Sender<()>>,
    quic: Option<quinn::Endpoint>,
}

impl Driver {
    pub fn new(
        config: &ClientConfig,
        validated: Validated,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Item>,
        shared: Arc<Shared>,
    ) -> Driver {
        let mut session_config = SessionConfig::new(config.token.clone(), config.device_id);
        session_config.inbox_cursor = config.inbox_cursor;
        session_config.first_client_msg_id = config.first_client_msg_id;
        session_config.max_pending = config.max_pending_sends;
        Driver {
            config: validated,
            session: ClientSession::new(session_config),
            device_id: config.device_id,
            first_client_msg_id: config.first_client_msg_id,
            commands,
            events,
            shared,
            sends: HashMap::new(),
            requests: Requests::default(),
            reads: BTreeMap::new(),
            extra: Vec::new(),
            user_id: None,
            published_cursor: config.inbox_cursor,
            attempt: 0,
            refused: None,
            closers: Vec::new(),
            quic: None,
        }
    }

    pub async fn run(mut self) {
        tracing::debug!(url = %self.config.url, "client started");
        loop {
            if self.refused.is_some() {
                self.shared.set_state(ConnectionState::Refused);
                if self.pause(None).await == Flow::Exit {
                    break;
                }
                continue;
            }
            self.shared.set_state(ConnectionState::Connecting);
            let conn = match self.open().await {
                Ok(Some(conn)) => conn,
                Ok(None) => break,
                Err(reason) => {
                    tracing::debug!(%reason, "connection attempt failed");
                    if self.lost(reason).await == Flow::Exit {
                        break;
                    }
                    continue;
                }
            };
            let end = self.serve(conn).await;
            self.session.disconnected();
            self.requests.on_disconnect();
            self.extra.clear();
            match end {
                End::Exit => break,
                End::Refused => {}
                End::Lost(reason) => {
                    tracing::info!(%reason, "connection lost");
                    if self.lost(reason).await == Flow::Exit {
                        break;
                    }
                }
            }
        }
        self.finish();
    }

    /// Reports a lost or failed connection and waits out the backoff.
    async fn lost(&mut self, reason: String) -> Flow {
        self.shared.set_state(ConnectionState::Disconnected);
        self.emit(ClientEvent::Disconnected { reason });
        self.attempt = self.attempt.saturating_add(1);
        let delay = reconnect_delay(self.attempt, rand::random());
        self.emit(ClientEvent::Reconnecting {
            attempt: self.attempt,
            delay,
        });
        self.pause(Some(Instant::now() + delay)).await
    }

    /// Handles commands until `until`, or, with `None`, until a new token
    /// lifts a refusal.
    async fn pause(&mut self, until: Option<Instant>) -> Flow {
        loop {
            let deadline = async move {
                match until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return Flow::Exit };
                    if self.on_command(command) == Flow::Exit {
                        return Flow::Exit;
                    }
                    if until.is_none() && self.refused.is_none() {
                        return Flow::Continue;
                    }
                }
                () = deadline => return Flow::Continue,
            }
        }
    }

    /// One connection attempt, during which commands are still served.
    /// `Ok(None)`: the application closed the client meanwhile.
    async fn open(&mut self) -> Result<Option<Connection>, String> {
        let config = self.config.clone();
        let mut endpoint = self.quic.take();
        let attempt = async move {
            let result = transport::connect(&config, &mut endpoint).await;
            (result, endpoint)
        };
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                (result, endpoint) = &mut attempt => {
                    self.quic = endpoint;
                    return result.map(Some);
                }
                command = self.commands.recv() => {
                    let exit = match command {
                        Some(command) => self.on_command(command) == Flow::Exit,
                        None => true,
                    };
                    if exit {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Runs the session on a connection until it ends.
    async fn serve(&mut self, mut conn: Connection) -> End {
        self.session.connected(Instant::now());
        loop {
            // Publishing can queue frames too (calls held until `Welcome`),
            // so it comes first: nothing may wait for the next wake-up.
            if let Some(end) = self.publish() {
                return end;
            }
            self.flush(&conn);
            let timeout = self.session.poll_timeout();
            let tick = async move {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                incoming = conn.incoming.recv() => {
                    let mut next = incoming;
                    for pass in 0..FRAMES_PER_PASS {
                        // Taken only when this pass will handle it: a frame
                        // taken after the last pass would be dropped.
                        if pass > 0 {
                            match conn.incoming.try_recv() {
                                Ok(more) => next = Some(more),
                                Err(_) => break,
                            }
                        }
                        match next.take() {
                            Some(Incoming::Frame(frame)) => {
                                tracing::trace!(frame = frame.frame_type().name(), "received");
                                self.session.handle(Instant::now(), frame);
                                // A `Close` ended the session: nothing after
                                // it belongs to this connection.
                                if matches!(self.session.state(), State::Disconnected | State::Closed) {
                                    break;
                                }
                            }
                            Some(Incoming::Broken(why)) => {
                                tracing::warn!(%why, "the server's stream cannot be framed");
                                conn.send(binary::encode_to_vec(&Frame::Close(Close {
                                    code: ErrorCode::BadFrame.code(),
                                    message: why.clone(),
                                })));
                                conn.shutdown(CLOSE_GRACE).await;
                                return self.publish().unwrap_or(End::Lost(why));
                            }
                            Some(Incoming::Lost { reason, close }) => {
                                // The server's `Close`, if only the transport
                                // carried it: the session decides what it means.
                                if let Some(close) = close {
                                    self.session.handle(Instant::now(), Frame::Close(close));
                                }
                                // What arrived before the loss is delivered now,
                                // not after the backoff.
                                return self.publish().unwrap_or(End::Lost(reason));
                            }
                            None => {
                                let reason = "the connection's tasks ended".to_owned();
                                return self.publish().unwrap_or(End::Lost(reason));
                            }
                        }
                    }
                }
                command = self.commands.recv() => {
                    let flow = match command {
                        Some(command) => self.on_command(command),
                        None => Flow::Exit,
                    };
                    match flow {
                        Flow::Continue => {}
                        // Dropping `conn` tears the transport down unannounced.
                        Flow::Reconnect => {
                            return End::Lost("the application dropped the connection".into())
                        }
                        Flow::Exit => {
                            self.session.close();
                            self.flush(&conn);
                            conn.shutdown(CLOSE_GRACE).await;
                            return End::Exit;
                        }
                    }
                }
                () = tick => self.session.handle_timeout(Instant::now()),
            }
        }
    }

    /// Writes what the session (and this task) wants sent.
    fn flush(&mut self, conn: &Connection) {
        while let Some(frame) = self.session.poll_transmit() {
            tracing::trace!(frame = frame.frame_type().name(), "sending");
            conn.send(binary::encode_to_vec(&frame));
        }
        for frame in self.extra.drain(..) {
            conn.send(binary::encode_to_vec(&frame));
        }
    }

    fn on_command(&mut self, command: Command) -> Flow {
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

    /// Turns what the session has to say into events and call results;
    /// returns why the connection must end, if it must.
    fn publish(&mut self) -> Option<End> {
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

    fn send_failed(&mut self, client_msg_id: u64, error: ClientError) {
        if let Some(reply) = self.sends.remove(&client_msg_id) {
            if let Err(Err(error)) = reply.send(Err(error)) {
                self.emit(ClientEvent::SendFailed {
                    client_msg_id,
                    error,
                });
            }
        }
    }

    fn emit(&mut self, event: ClientEvent) {
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

    /// The client is closed: everything still waiting fails.
    fn finish(&mut self) {
        tracing::debug!("client closed");
        // Whatever the session still holds is delivered before `Closed`.
        let _ = self.publish();
        let ids: Vec<u64> = self.sends.keys().copied().collect();
        for id in ids {
            self.send_failed(id, ClientError::Closed);
        }
        self.requests.fail_all(&ClientError::Closed);
        self.shared.set_state(ConnectionState::Closed);
        self.emit(ClientEvent::Closed);
        for done in self.closers.drain(..) {
            let _ = done.send(());
        }
        if let Some(ep) = self.quic.take() {
            ep.close(0u32.into(), b"");
        }
    }
}
