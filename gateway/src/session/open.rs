//! A session's start, once `Hello` is verified and the connection is on
//! its user's core: register with the shard, `Welcome`, the friends'
//! presence, then the replay of what the device missed.

use std::rc::Rc;

use confab_protocol::frame::{self, Frame};
use confab_protocol::limits::negotiate_version;
use confab_protocol::{Encoding, ErrorCode, FrameType};
use confab_types::{DeviceId, InboxSeq, UserId};
use tokio::sync::oneshot;

use super::presence::watch_friends;
use super::replay::replay;
use super::Session;
use crate::metrics::Transport;
use crate::shard::{Core, Opening};

/// Who a verified `Hello` says the session is for, and how it speaks.
#[derive(Debug, Clone)]
pub struct Hello {
    /// The authenticated user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The device's inbox cursor.
    pub cursor: InboxSeq,
    /// The negotiated protocol version.
    pub version: u16,
    /// The token's login session.
    pub login: u64,
    /// The transport it came on.
    pub transport: Transport,
    /// Binary or JSON frames.
    pub encoding: Encoding,
}

impl Hello {
    /// Checks a client's `Hello` (a common protocol version, a valid token)
    /// and says who the session is for; the error is the wire code and
    /// reason to refuse it with.
    pub fn verify(
        core: &Core,
        hello: &frame::Hello,
        transport: Transport,
        encoding: Encoding,
    ) -> Result<Hello, (ErrorCode, &'static str)> {
        core.metrics.frame_in(FrameType::Hello);
        let version = negotiate_version(hello.min_version, hello.max_version)
            .map_err(|code| (code, "no common protocol version"))?;
        let (user, login) = core.io.auth.verify(&hello.token).map_err(|code| {
            core.metrics.error(code);
            (code, "authentication failed")
        })?;
        Ok(Hello {
            user,
            device: hello.device_id,
            cursor: hello.inbox_cursor,
            version,
            login,
            transport,
            encoding,
        })
    }
}

/// A started session: registered, welcomed; [`Started::catch_up`] sends
/// the rest of what precedes live delivery.
pub struct Started {
    /// The session.
    pub session: Session,
    replay: oneshot::Receiver<(InboxSeq, InboxSeq)>,
}

/// Registers the session with its user's shard and queues `Welcome`.
pub fn open(core: &Rc<Core>, h: Hello) -> Started {
    let (conn, io, replay) = core.open(Opening {
        user: h.user,
        device: h.device,
        login: h.login,
        cursor: h.cursor,
        transport: h.transport,
        encoding: h.encoding,
    });
    let session = Session {
        core: core.clone(),
        conn,
        user: h.user,
        device: h.device,
        encoding: h.encoding,
        io,
    };
    let settings = core.settings();
    session.send(&Frame::Welcome(frame::Welcome {
        version: h.version,
        user_id: h.user,
        session_id: ((core.id as u64) << 48) | (conn.as_u64() & 0xFFFF_FFFF_FFFF),
        heartbeat_interval_ms: settings.heartbeat_interval.as_millis() as u32,
        limits: settings.limits(),
    }));
    Started { session, replay }
}

impl Started {
    /// Friends' presence, then the replay; the session is live after it.
    pub async fn catch_up(self) -> Session {
        let Started {
            session,
            replay: range,
        } = self;
        watch_friends(&session).await;
        // The range comes once the user's place in the stream is known (a
        // storage read for a user's first device).
        if let Ok((from, to)) = range.await {
            replay(&session, from, to).await;
        }
        session
    }
}
