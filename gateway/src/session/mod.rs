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

use confab_protocol::frame::{Frame, FrameType};
use confab_protocol::{Encoding, ErrorCode};
use confab_types::{DeviceId, UserId};

pub use self::open::{open, Hello};
use crate::fanout::{CloseReason, OutFrame, Priority};
use crate::shard::{ConnId, Core, CoreIo};

/// One device's session on its user's core. Cloned (cheaply: counted
/// references and ids) into a request that must wait.
#[derive(Clone)]
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
    /// they carried when the failure is in the body of a known type.
    pub fn bad_frame(&self, code: ErrorCode, message: &str, frame_type: Option<FrameType>) {
        self.core.metrics.frame_in_invalid();
        self.core
            .state()
            .send_decode_error(self.conn, code, message, frame_type);
        self.core.pump();
    }

    /// The stream can no longer be split into frames: the session closes
    /// with `BAD_FRAME` (a bad length prefix, on every transport).
    pub fn broken_stream(&self, code: ErrorCode, message: String) -> CloseReason {
        self.core.metrics.frame_in_invalid();
        self.core.metrics.error(code);
        CloseReason::Error(code, message)
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
    pub async fn handle(&self, frame: Frame) -> Result<(), CloseReason> {
        match self.handle_now(frame) {
            Ok(done) => done,
            // Boxed: this future is part of a connection's task for the
            // connection's whole life, and the waiting handlers' states
            // would otherwise make every connection pay for them.
            Err(frame) => Box::pin(self.handle_waiting(frame)).await,
        }
    }

    /// Handles `frame` at once when nothing it needs must be waited for:
    /// heartbeats, and sends, read marks and typing whose channel the
    /// core's cache knows (nearly all of them). Gives the frame back when
    /// it must wait (a directory lookup, a storage read), for
    /// [`Session::handle_waiting`].
    pub fn handle_now(&self, frame: Frame) -> Result<Result<(), CloseReason>, Frame> {
        self.core.metrics.frame_in(frame.frame_type());
        match frame {
            Frame::Send(s) => send::handle_now(self, s).map_err(Frame::Send)?,
            Frame::Read(r) => read::handle_now(self, r).map_err(Frame::Read)?,
            Frame::Typing(t) => typing::handle_now(self, t).map_err(Frame::Typing)?,
            f @ (Frame::Sync(_)
            | Frame::History(_)
            | Frame::PresenceQuery(_)
            | Frame::PresenceSubscribe(_)) => return Err(f),
            other => return Ok(self.handle_sync(other)),
        }
        Ok(Ok(()))
    }

    /// Handles a frame [`Session::handle_now`] gave back.
    pub async fn handle_waiting(&self, frame: Frame) -> Result<(), CloseReason> {
        match frame {
            Frame::Send(s) => send::handle(self, s).await,
            Frame::Read(r) => read::handle(self, r).await,
            Frame::Typing(t) => typing::handle(self, t).await,
            Frame::Sync(s) => sync::handle(self, s).await,
            Frame::History(h) => history::handle(self, h).await,
            Frame::PresenceQuery(q) => presence::query(self, q).await,
            Frame::PresenceSubscribe(q) => presence::subscribe(self, q).await,
            other => return self.handle_sync(other),
        }
        Ok(())
    }

    /// The requests that never wait.
    fn handle_sync(&self, frame: Frame) -> Result<(), CloseReason> {
        match frame {
            Frame::PresenceUnsubscribe(q) => presence::unsubscribe(self, q),
            Frame::Heartbeat(h) => heartbeat::handle(self, h),
            Frame::Close(_) => return Err(CloseReason::PeerClosed),
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
