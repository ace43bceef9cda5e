//! The application's handle on a client: cheap to clone, every call a
//! message to the background task that owns the session, so calls never
//! contend on a lock with the network.

use confab_types::{ChannelId, InboxSeq, Seq, Text, UserId};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use confab_protocol::frame::{HistoryAnchor, HistoryBatch, PresenceInfo, SendAck, Target};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClientConfig;
use crate::driver::{Command, Driver};
use crate::error::ClientError;
use crate::event::{ConnectionState, Events};

/// What the background task publishes for the handles to read without
/// asking it.
#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
    cursor: AtomicU64,
    next_client_msg_id: AtomicU64,
    /// 0 until the first `Welcome`.
    user_id: AtomicU64,
}

impl Shared {
    pub fn set_state(&self, state: ConnectionState) {
        self.state.store(state.as_u8(), Ordering::Release);
    }

    pub fn set_cursor(&self, cursor: InboxSeq) {
        self.cursor.store(cursor.into(), Ordering::Release);
    }

    pub fn set_next_client_msg_id(&self, id: u64) {
        self.next_client_msg_id.store(id, Ordering::Release);
    }

    pub fn set_user_id(&self, id: UserId) {
        self.user_id.store(id.into(), Ordering::Release);
    }
}

/// A connection to a confab server that stays up by itself.
///
/// [`Client::connect`] starts a background task that connects, keeps the
/// session alive with heartbeats, reconnects with backoff when the
/// transport fails, resumes from the inbox cursor, and sends again every
/// send not yet acknowledged (with its original client message id, so the
/// server stores it once). The application sees a single gapless,
/// duplicate-free stream of [`ClientEvent`](crate::ClientEvent)s in
/// [`Events`], and every send resolves exactly once.
///
/// Clones share the same session. The client closes when
/// [`Client::close`] is called or when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Client {
    /// Checks the configuration, then starts the client in the background
    /// and returns at once: the outcome of connecting arrives as events
    /// ([`ClientEvent::Connected`](crate::ClientEvent::Connected), or
    /// [`ClientEvent::Refused`](crate::ClientEvent::Refused) for bad
    /// credentials). Calls made before the session is up wait for it.
    ///
    /// Must be called within a tokio runtime (with timers and IO enabled);
    /// the background task is spawned on it.
    pub fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ClientError::InvalidConfig(
                "Client::connect must be called within a tokio runtime".into(),
            )
        })?;
        let validated = config.validate()?;
        let shared = Arc::new(Shared {
            state: AtomicU8::new(ConnectionState::Connecting.as_u8()),
            cursor: AtomicU64::new(config.inbox_cursor.into()),
            next_client_msg_id: AtomicU64::new(config.first_client_msg_id),
            user_id: AtomicU64::new(0),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let driver = Driver::new(&config, validated, command_rx, event_tx, shared.clone());
        runtime.spawn(driver.run());
        Ok((
            Client { commands, shared },
            Events::new(event_rx, config.inbox_cursor),
        ))
    }

    fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).map_err(|_| ClientError::Closed)
    }

    /// Sends a message. The returned future resolves with the server's
    /// acknowledgement once the message is stored, however many reconnects
    /// that takes, or with the reason it failed for good. The message is
    /// queued when this is called: dropping the future does not cancel it
    /// (its outcome then arrives as a [`ClientEvent::Sent`] or
    /// [`ClientEvent::SendFailed`] event), and sends go out in call order
    /// (a send the server refuses as `RATE_LIMITED` is sent again after a
    /// delay, so sends beyond the rate limit may be stored out of call
    /// order; each channel's sequence says in which order they were).
    /// While the server refuses the session, queued sends wait for
    /// [`Client::set_token`] (new ones fail with [`ClientError::Refused`]);
    /// closing the client fails whatever still waits with
    /// [`ClientError::Closed`].
    ///
    /// [`ClientEvent::Sent`]: crate::ClientEvent::Sent
    /// [`ClientEvent::SendFailed`]: crate::ClientEvent::SendFailed
    pub fn send(&self, target: Target, text: impl Into<Text>) -> SendFuture {
        let (reply, rx) = oneshot::channel();
        let queued = self.command(Command::Send {
            target,
            text: text.into(),
            reply,
        });
        SendFuture {
            rx: queued.ok().map(|()| rx),
        }
    }

    /// A page of a channel's history: up to `limit` messages (capped by
    /// the server's `max_page`) at `anchor`, in ascending sequence order.
    /// Waits for a connection if there is none, and is asked again if the
    /// connection drops before the answer.
    pub async fn history(
        &self,
        channel_id: ChannelId,
        anchor: HistoryAnchor,
        limit: u32,
    ) -> Result<HistoryBatch, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::History {
            channel_id,
            anchor,
            limit,
            reply,
        })?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// The current presence of some users (at most the server's
    /// `max_presence_users`). Users the caller may not see read as offline
    /// and never seen.
    pub async fn presence_query(
        &self,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceInfo>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::PresenceQuery { users, reply })?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Subscribes to presence changes of some users and returns their
    /// current presence. Changes arrive as
    /// [`ClientEvent::Presence`](crate::ClientEvent::Presence); the client
    /// renews the subscription after every reconnect (and reports the
    /// state it finds then as an event too).
    pub async fn presence_subscribe(
        &self,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceInfo>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::PresenceSubscribe { users, reply })?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Drops presence subscriptions.
    pub fn presence_unsubscribe(&self, users: Vec<UserId>) -> Result<(), ClientError> {
        self.command(Command::PresenceUnsubscribe { users })
    }

    /// Marks a channel read up to and including `seq`; the other members
    /// get a receipt. Made while disconnected, the newest mark per channel
    /// is sent once connected.
    pub fn read(&self, channel_id: ChannelId, seq: Seq) -> Result<(), ClientError> {
        self.command(Command::Read { channel_id, seq })
    }

    /// Tells the channel's members that the user is typing. Dropped while
    /// disconnected (it would be stale by the time it arrived).
    pub fn typing(&self, channel_id: ChannelId) -> Result<(), ClientError> {
        self.command(Command::Typing { channel_id })
    }

    /// Replaces the access token (after a refresh through the HTTP API);
    /// it is used from the next connection on. A client the server refused
    /// reconnects with it at once.
    pub fn set_token(&self, token: impl Into<String>) -> Result<(), ClientError> {
        self.command(Command::SetToken(token.into()))
    }

    /// Drops the current connection at once, without a `Close`, as a lost
    /// network would, and reconnects after the usual backoff: unacked
    /// sends go again with their ids and the inbox resumes from the
    /// cursor. For testing resumption (the load generator's churn); a
    /// no-op while not connected.
    pub fn reconnect(&self) -> Result<(), ClientError> {
        self.command(Command::Reconnect)
    }

    /// Where the client stands.
    pub fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// The authenticated user, once a session has been established.
    pub fn user_id(&self) -> Option<UserId> {
        match self.shared.user_id.load(Ordering::Acquire) {
            0 => None,
            id => Some(UserId(id)),
        }
    }

    /// The inbox cursor of everything queued in [`Events`] so far. To
    /// save a cursor to resume from, prefer [`Events::cursor`], which
    /// counts only what the application has taken out.
    pub fn cursor(&self) -> InboxSeq {
        InboxSeq(self.shared.cursor.load(Ordering::Acquire))
    }

    /// The client message id the next send will get. Save it and pass it
    /// back as [`ClientConfig::first_client_msg_id`] on the next run, so
    /// that ids stay unique per device.
    pub fn next_client_msg_id(&self) -> u64 {
        self.shared.next_client_msg_id.load(Ordering::Acquire)
    }

    /// Closes the session (a `Close` frame, then the transport) and stops
    /// the background task. Sends and calls still waiting fail with
    /// [`ClientError::Closed`]. Returns once the task has stopped.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.command(Command::Close(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The outcome of [`Client::send`]: the server's acknowledgement (its
/// channel, sequence and time) or why the send failed for good.
#[derive(Debug)]
#[must_use = "dropping it does not cancel the send, but its outcome then arrives as an event"]
pub struct SendFuture {
    rx: Option<oneshot::Receiver<Result<SendAck, ClientError>>>,
}

impl Future for SendFuture {
    type Output = Result<SendAck, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.rx.as_mut() {
            None => Poll::Ready(Err(ClientError::Closed)),
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(ClientError::Closed))),
        }
    }
}
