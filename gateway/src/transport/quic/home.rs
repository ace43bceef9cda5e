//! The home core's end of a QUIC session: the session itself runs here,
//! exactly as a WebSocket session does; its frames come from, and go to,
//! the core that holds the QUIC connection, through the mailboxes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{LinkCredit, LinkIn, LinkOut, LinkQueue};
use crate::fanout::CloseReason;
use crate::session::{self, Hello, Session};
use crate::shard::{sleep_until, ConnId, ConnIo, Core};

/// How long a closing session waits for its transport to report the end.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A QUIC connection authenticated on its transport core, on its way to
/// the user's home core.
pub struct QuicHandover {
    /// The link's id (unique on the node).
    pub link: u64,
    /// The core holding the QUIC connection.
    pub transport_core: usize,
    /// In-flight bytes towards the transport.
    pub credit: Arc<LinkCredit>,
    /// Who the session is for.
    pub hello: Hello,
    /// Frames the client pipelined after `Hello`.
    pub early: Vec<LinkIn>,
}

/// The home core's end of a link.
struct HomeLink {
    id: u64,
    transport_core: usize,
    credit: Arc<LinkCredit>,
    inbox: LinkQueue<LinkIn>,
}

thread_local! {
    /// Sessions running on this core whose transport is a QUIC link.
    static HOME: RefCell<HashMap<u64, Rc<HomeLink>>> = RefCell::default();
}

/// Frames from the transport for a session running here (dropped if it
/// has ended).
pub fn deliver_in(link: u64, items: Vec<LinkIn>) {
    let home = HOME.with(|h| h.borrow().get(&link).cloned());
    if let Some(home) = home {
        home.inbox.push_all(items);
    }
}

/// Registers the link (at once, so frames that follow the hand-over in
/// the mailbox find it) and starts the session.
pub fn adopt(core: &Rc<Core>, h: QuicHandover) {
    let home = Rc::new(HomeLink {
        id: h.link,
        transport_core: h.transport_core,
        credit: h.credit,
        inbox: LinkQueue::default(),
    });
    home.inbox.push_all(h.early);
    HOME.with(|m| m.borrow_mut().insert(h.link, home.clone()));
    let (core, hello) = (core.clone(), h.hello);
    tokio::task::spawn_local(async move {
        let started = session::open(&core, hello);
        let (conn, io) = (started.session.conn, started.session.io.clone());
        let writer = tokio::task::spawn_local(write_loop(core.clone(), conn, io, home.clone()));
        let session = started.catch_up().await;
        let ended = read_loop(&session, &home).await;
        session.close(ended.err().unwrap_or(CloseReason::PeerClosed));
        let _ = writer.await;
        session.end();
        HOME.with(|m| m.borrow_mut().remove(&home.id));
    });
}

/// Handles the session's frames from the link until it ends; `Err` is why
/// the session must close.
async fn read_loop(s: &Session, home: &HomeLink) -> Result<(), CloseReason> {
    let mut closing_since: Option<Instant> = None;
    let mut items = Vec::new();
    loop {
        home.inbox.take(&mut items);
        for item in items.drain(..) {
            match item {
                LinkIn::Frame(f) => {
                    s.heard();
                    s.handle(f).await?;
                }
                LinkIn::Bad {
                    code,
                    message,
                    fatal,
                    frame_type,
                } => {
                    s.heard();
                    if fatal {
                        return Err(s.broken_stream(code, message));
                    }
                    s.bad_frame(code, &message, frame_type);
                }
                LinkIn::Closed => return Ok(()),
            }
        }
        if s.is_closing() {
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > CLOSE_LINGER {
                return Ok(());
            }
        }
        // Frames from the link, or the shard's word that the session is
        // closing, or the end of the linger: no timer while it is open.
        let linger_end = closing_since.map(|since| since + CLOSE_LINGER);
        tokio::select! {
            biased;
            () = home.inbox.wait() => {}
            () = s.io.closing.wait(), if linger_end.is_none() => {
                closing_since = Some(Instant::now());
            }
            () = sleep_until(linger_end) => return Ok(()),
        }
    }
}

/// Sends the session's queued frames to the transport core, within the
/// link's credit, until the session closes.
async fn write_loop(core: Rc<Core>, conn: ConnId, io: Rc<ConnIo>, home: Rc<HomeLink>) {
    let mut frames = Vec::new();
    loop {
        let Some(close) = core.state().take_output(conn, &mut frames) else {
            return;
        };
        if frames.is_empty() && close.is_none() {
            io.writer.wait().await;
            continue;
        }
        let bytes: usize = frames.iter().map(|(f, _)| f.len()).sum();
        if bytes > 0 {
            home.credit.acquire(bytes).await;
        }
        let done = close.is_some();
        let out = LinkOut {
            frames: std::mem::take(&mut frames),
            bytes,
            close,
        };
        let link = home.id;
        core.io
            .bus
            .run_on(home.transport_core, move |_| super::deliver_out(link, out));
        if done {
            return;
        }
    }
}
