//! The home core's side of a QUIC session: the session itself runs here
//! (see `conn::run_session`); its frames come from and go to the core that
//! holds the QUIC connection, through the mailboxes (see `link`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::ErrorCode;

use crate::gateway::conn::{handle_frame, run_session, Link, Who};
use crate::gateway::core::{error_frame, ConnId, Core, CoreMsg};
use crate::gateway::link::{LinkCredit, LinkIn, LinkOut, LinkQueue};
use crate::gateway::metrics::Transport;
use crate::gateway::outbound::{CloseReason, Outbound};
use crate::ws::Encoding;

/// A QUIC connection authenticated on its transport core, on its way to
/// the user's home core.
pub struct QuicHandover {
    /// The link's id (unique on the node).
    pub link: u64,
    /// The core holding the QUIC connection.
    pub transport_core: usize,
    /// In-flight bytes towards the transport.
    pub credit: Arc<LinkCredit>,
    /// The authenticated user.
    pub user: u64,
    /// The device.
    pub device: u64,
    /// The device's inbox cursor from `Hello`.
    pub cursor: u64,
    /// The negotiated protocol version.
    pub version: u16,
    /// The token's login session.
    pub login: u64,
    /// Frames the client pipelined after `Hello`.
    pub early: Vec<LinkIn>,
}

/// The home core's end of a link.
pub struct HomeLink {
    /// The link's id.
    pub id: u64,
    /// The core holding the transport.
    pub transport_core: usize,
    /// In-flight bytes towards the transport.
    pub credit: Arc<LinkCredit>,
    /// Frames from the transport.
    pub inbox: LinkQueue<LinkIn>,
}

/// Registers the link (synchronously, so frames that follow the handover
/// in the mailbox find it) and starts the session.
pub fn adopt(core: &Rc<Core>, h: QuicHandover) {
    let home = Rc::new(HomeLink {
        id: h.link,
        transport_core: h.transport_core,
        credit: h.credit.clone(),
        inbox: LinkQueue::default(),
    });
    home.inbox.push_all(h.early);
    core.links.home.borrow_mut().insert(h.link, home.clone());
    let who = Who {
        user: h.user,
        device: h.device,
        cursor: h.cursor,
        version: h.version,
        login: h.login,
        transport: Transport::Quic,
        encoding: Encoding::Binary,
    };
    let core = core.clone();
    tokio::task::spawn_local(async move {
        run_session(core.clone(), who, Link::Remote(home.clone())).await;
        core.links.home.borrow_mut().remove(&home.id);
    });
}

/// Reads the session's frames from the link until it ends; the error is
/// the reason to close with.
pub async fn home_read_loop(
    core: &Rc<Core>,
    conn: ConnId,
    home: &Rc<HomeLink>,
    out: &Rc<Outbound>,
    user: u64,
    device: u64,
) -> Result<(), CloseReason> {
    let settings = core.shared.settings.clone();
    let silence_limit = settings.heartbeat_interval * 3;
    let metrics = &core.shared.metrics[core.id];
    let mut last_heard = Instant::now();
    let mut closing_since: Option<Instant> = None;
    let mut items = Vec::new();
    loop {
        home.inbox.take(&mut items);
        for item in items.drain(..) {
            match item {
                LinkIn::Frame(f) => {
                    last_heard = Instant::now();
                    metrics.frame_in(f.frame_type());
                    handle_frame(core, conn, user, device, f).await?;
                }
                LinkIn::Bad {
                    code,
                    message,
                    fatal,
                } => {
                    last_heard = Instant::now();
                    metrics.frame_in_invalid();
                    metrics.error(code);
                    if fatal {
                        return Err(CloseReason {
                            code: code.code(),
                            message,
                        });
                    }
                    core.send_to(conn, &error_frame(code, message, None));
                }
                LinkIn::Closed => return Ok(()),
            }
        }
        if out.is_closing() {
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return Ok(());
            }
        }
        if tokio::time::timeout(Duration::from_millis(500), home.inbox.wait())
            .await
            .is_err()
            && last_heard.elapsed() > silence_limit
            && !out.is_closing()
        {
            metrics.error(ErrorCode::HeartbeatTimeout);
            return Err(CloseReason {
                code: ErrorCode::HeartbeatTimeout.code(),
                message: "no heartbeat".into(),
            });
        }
    }
}

/// Sends the session's queued frames to the transport core, within the
/// link's credit, until the session closes.
pub async fn home_write_loop(core: Rc<Core>, home: Rc<HomeLink>, out: Rc<Outbound>) {
    let mut frames = Vec::new();
    loop {
        let close = out.take(&mut frames);
        if frames.is_empty() && close.is_none() {
            out.wait().await;
            continue;
        }
        let bytes: usize = frames.iter().map(|(f, _)| f.len()).sum();
        if bytes > 0 {
            home.credit.acquire(bytes).await;
        }
        let done = close.is_some();
        core.shared.bus.send(
            home.transport_core,
            CoreMsg::LinkOut {
                link: home.id,
                out: LinkOut {
                    frames: std::mem::take(&mut frames),
                    bytes,
                    close,
                },
            },
        );
        if done {
            return;
        }
    }
}
