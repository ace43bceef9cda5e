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
//!
//! This file holds the task's state and its connection cycle; the work
//! done on a live connection, the handling of the application's commands
//! and the publishing of what the session reports each have a file of
//! their own, so that each concern reads on its own.

mod commands;
mod publish;
mod serve;

use confab_types::{ChannelId, DeviceId, InboxSeq, Seq, UserId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{Frame, HistoryAnchor, HistoryBatch, PresenceInfo, SendAck, Target};
use confab_protocol::session::{reconnect_delay, ClientSession, SessionConfig};
use confab_protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot};

use crate::client::Shared;
use crate::config::{ClientConfig, Validated};
use crate::error::ClientError;
use crate::event::{ClientEvent, ConnectionState, Item};
use crate::requests::{Reply, Requests};
use crate::transport::{self, Connection};

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
    /// Which of the configured servers the next attempt goes to.
    server: usize,
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
            server: 0,
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
        let mut config = self.config.clone();
        let servers = self.config.servers.len();
        if servers > 1 {
            let (url, tls) = self.config.servers[self.server % servers].clone();
            config.url = url;
            config.tls = tls;
        }
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
                    if result.is_err() {
                        self.server = self.server.wrapping_add(1);
                    }
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
