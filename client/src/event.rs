//! What the background task tells the application, and the receiver it
//! reads it from.
//!
//! The receiver also tracks the inbox cursor *as the application has seen
//! it*: the session's own cursor runs ahead by whatever sits unread in the
//! queue, and saving that one would skip those messages after a crash.

use confab_types::InboxSeq;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use confab_protocol::frame::{
    Error, Message, PresenceInfo, Receipt, SendAck, TypingEvent, Welcome,
};
use confab_protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::error::ClientError;

/// Something that happened on the client's session.
///
/// Messages arrive exactly once and in inbox order, across reconnects: the
/// client resumes from its cursor, drops what it has already delivered and
/// fills holes before delivering what follows them. Messages this client
/// sent itself are never delivered here; their outcome is the
/// [`SendFuture`](crate::SendFuture) of the send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A session is established (after every reconnect too). Sends held
    /// while disconnected go out now.
    Connected(Welcome),
    /// A message for this user, in inbox order, each exactly once. Save
    /// [`Events::cursor`] once it is processed to resume after it.
    Message(Message),
    /// A member read a channel up to a sequence.
    Receipt(Receipt),
    /// Presence of users this client subscribed to: a change, or their
    /// current state after a reconnect renewed the subscription.
    Presence(Vec<PresenceInfo>),
    /// A member is typing in a channel.
    Typing(TypingEvent),
    /// The connection is down, or a connection attempt failed. The client
    /// reconnects by itself (a [`ClientEvent::Reconnecting`] follows)
    /// unless the server refused the session.
    Disconnected {
        /// What happened, for logs.
        reason: String,
    },
    /// The client waits `delay` before connection attempt `attempt`
    /// (counted from 1 since the last established session).
    Reconnecting {
        /// The attempt about to be made.
        attempt: u32,
        /// How long the client waits first.
        delay: Duration,
    },
    /// The server refused the credentials or the protocol version. The
    /// client stops reconnecting until
    /// [`Client::set_token`](crate::Client::set_token) gives it a new token.
    Refused {
        /// `UNAUTHENTICATED`, `TOKEN_EXPIRED`, `TOKEN_REVOKED` or
        /// `UNSUPPORTED_VERSION`.
        code: ErrorCode,
        /// The server's detail.
        message: String,
    },
    /// A send whose [`SendFuture`](crate::SendFuture) was dropped was
    /// stored. (While the future lives, the ack goes to it instead.)
    Sent(SendAck),
    /// A send whose [`SendFuture`](crate::SendFuture) was dropped failed
    /// for good.
    SendFailed {
        /// The send's client message id.
        client_msg_id: u64,
        /// Why.
        error: ClientError,
    },
    /// The server reported an error not tied to a call that waits for an
    /// answer (for example a refused read receipt or typing notice).
    ServerError(Error),
    /// A heartbeat's round trip.
    Rtt(Duration),
    /// The client is closed; this is the last event.
    Closed,
}

/// Where a client stands, from [`Client::state`](crate::Client::state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting, or waiting for the server's `Welcome`.
    Connecting,
    /// A session is established.
    Connected,
    /// The connection is down; the client waits before reconnecting.
    Disconnected,
    /// The server refused the session; the client waits for a new token.
    Refused,
    /// The client is closed.
    Closed,
}

impl ConnectionState {
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            ConnectionState::Connecting => 0,
            ConnectionState::Connected => 1,
            ConnectionState::Disconnected => 2,
            ConnectionState::Refused => 3,
            ConnectionState::Closed => 4,
        }
    }

    pub(crate) fn from_u8(v: u8) -> ConnectionState {
        match v {
            0 => ConnectionState::Connecting,
            1 => ConnectionState::Connected,
            2 => ConnectionState::Disconnected,
            3 => ConnectionState::Refused,
            _ => ConnectionState::Closed,
        }
    }
}

/// One entry of the event queue: an event (or none, when only the cursor
/// moved, for example past an acknowledged send of our own) and the inbox
/// cursor that covers everything up to and including it.
#[derive(Debug)]
pub(crate) struct Item {
    pub event: Option<ClientEvent>,
    pub cursor: InboxSeq,
}

/// The client's events, in order. Read them with [`Events::recv`] or as a
/// [`Stream`](futures_util::Stream).
///
/// The queue is unbounded so that the background task never waits for
/// the application (which could deadlock an application that awaits a
/// send while it is not reading events); an application that stops
/// reading for good should drop this receiver, after which events are
/// discarded.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Item>,
    cursor: InboxSeq,
}

impl Events {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Item>, cursor: InboxSeq) -> Events {
        Events { rx, cursor }
    }

    /// The next event; `None` once the client is closed and every event
    /// has been read.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        while let Ok(item) = self.rx.try_recv() {
            self.cursor = self.cursor.max(item.cursor);
            if item.event.is_some() {
                return item.event;
            }
        }
        None
    }

    /// The inbox cursor covering every message returned so far: save it
    /// (with [`Client::next_client_msg_id`](crate::Client::next_client_msg_id))
    /// after processing them, and pass it back as
    /// [`ClientConfig::inbox_cursor`](crate::ClientConfig::inbox_cursor) to
    /// resume without a gap or a repeat.
    pub fn cursor(&self) -> InboxSeq {
        self.cursor
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    self.cursor = self.cursor.max(item.cursor);
                    if let Some(event) = item.event {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_util::Stream for Events {
    type Item = ClientEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.get_mut().poll_event(cx)
    }
}
