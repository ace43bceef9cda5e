//! A session: one authenticated device, on the core that owns its user.
//! Each request frame has its handler in a file of its own (mini-redis's
//! `cmd/` is the model); they read the directory and the log as they
//! need, and change the shard's state only through [`Core`].

mod heartbeat;
mod history;
mod lookup;
mod open;
mod paging;
mod presence;
mod read;
mod replay;
mod send;
mod sync;
mod typing;

use std::rc::Rc;
use std::time::Instant;

use confab_protocol::frame::Frame;
use confab_protocol::{Encoding, ErrorCode};
use confab_types::{DeviceId, UserId};

pub use self::open::{open, Hello};
use crate::fanout::{CloseReason, OutFrame, Priority};
use crate::shard::{ConnId, Core, CoreIo};

/// One device's session on its user's core.
pub struct Session {
    /// The core.
    pub core: Rc<Core>,
    /// The connection in the core's shard.
    pub conn: ConnId,
    /// The authenticated user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Its frames' encoding.
    pub encoding: Encoding,
    /// Its IO handles on the core.
    pub io: Rc<crate::shard::ConnIo>,
}

impl Session {
    /// What every core shares.
    pub fn shared(&self) -> &CoreIo {
        &self.core.io
    }

    /// Queues a frame to this device.
    pub fn send(&self, frame: &Frame) {
        self.core.state().send(self.conn, frame);
        self.core.pump();
    }

    /// Queues transport bytes (a WebSocket pong).
    pub fn send_raw(&self, bytes: bytes::Bytes) {
        self.core
            .state()
            .queue(self.conn, OutFrame::Raw(bytes), Priority::Required);
        self.core.pump();
    }

    /// Answers `answering` with an `Error`.
    pub fn error(&self, code: ErrorCode, message: &str, answering: &Frame) {
        self.core
            .state()
            .send_error(self.conn, code, message, Some(answering));
        self.core.pump();
    }

    /// Answers bytes that were not a valid frame; `frame_type` is the type
    /// byte they carried, when one was read.
    pub fn bad_frame(&self, code: ErrorCode, message: &str) {
        self.core.metrics.frame_in_invalid();
        self.core.state().send_error(self.conn, code, message, None);
        self.core.pump();
    }

    /// Closes the session after what is queued.
    pub fn close(&self, reason: CloseReason) {
        self.core.state().close(self.conn, reason);
        self.core.pump();
    }

    /// Whether the session is closing.
    pub fn is_closing(&self) -> bool {
        self.core.state().is_closing(self.conn)
    }

    /// The client was heard from.
    pub fn heard(&self) {
        self.core.state().heard(self.conn, Instant::now());
    }

    /// Handles one request frame. `Err`: the session ends, with this
    /// reason.
    ///
    /// The requests a session makes now and then (sync, history, presence
    /// queries and subscriptions) run boxed: this future is part of every
    /// connection's task for the connection's whole life, idle or not, and
    /// their larger states would otherwise make every connection pay for
    /// them. The frequent ones (send, read, typing) stay inline.
    pub async fn handle(&self, frame: Frame) -> Result<(), CloseReason> {
        self.core.metrics.frame_in(frame.frame_type());
        match frame {
            Frame::Send(s) => send::handle(self, s).await,
            Frame::Sync(s) => Box::pin(sync::handle(self, s)).await,
            Frame::History(h) => Box::pin(history::handle(self, h)).await,
            Frame::Read(r) => read::handle(self, r).await,
            Frame::Typing(t) => typing::handle(self, t).await,
            Frame::PresenceQuery(q) => Box::pin(presence::query(self, q)).await,
            Frame::PresenceSubscribe(q) => Box::pin(presence::subscribe(self, q)).await,
            Frame::PresenceUnsubscribe(q) => presence::unsubscribe(self, q),
            Frame::Heartbeat(h) => heartbeat::handle(self, h),
            Frame::Close(_) => return Err(CloseReason::Normal("client closed")),
            f @ Frame::Hello(_) => {
                self.error(ErrorCode::UnexpectedFrame, "already in a session", &f)
            }
            other => self.error(
                ErrorCode::UnexpectedFrame,
                "a server frame cannot be sent to the server",
                &other,
            ),
        }
        Ok(())
    }

    /// Ends the session: the core forgets the connection (persisting its
    /// cursor, starting the offline grace period if it was the last).
    pub fn end(self) {
        self.core.closed(self.conn);
    }
}
