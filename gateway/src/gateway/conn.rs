//! A WebSocket connection's life: accept on whichever core the kernel
//! picked (`SO_REUSEPORT`), handshake and `Hello` there, then hand the
//! socket to the core that owns the user, where the session runs: replay
//! from the device's cursor, live delivery, requests, heartbeats.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use confab_protocol::frame::{self, Frame, PresenceInfo};
use confab_protocol::limits::{negotiate_version, validate_text};
use confab_protocol::{DecodeError, ErrorCode};
use confab_storage::{ChannelId, Cursor, DeviceId, UserId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::bus::owner_core;
use super::core::{
    encode, error_frame, out_frame, push, Attach, ConnId, Core, CoreMsg, NoticeKind, TypingNotice,
};
use super::metrics::Transport;
use super::net::Stream;
use super::outbound::{CloseReason, OutFrame, Outbound, Priority};
use super::{now_ms, stored_to_wire};
use crate::ws::{self, close, Decoder, Encoding, Event, OpCode};

/// An authenticated connection on its way to the core that owns its user.
pub struct Handover {
    /// The socket.
    pub socket: std::net::TcpStream,
    /// Its TLS session (`wss://`), established on the accepting core.
    pub tls: Option<rustls::ServerConnection>,
    /// `ws` or `wss`.
    pub transport: Transport,
    /// Bytes read but not yet decoded (a pipelining client's next frames).
    pub buf: BytesMut,
    /// The WebSocket decoder, with any fragment in progress.
    pub decoder: Decoder,
    /// Binary or JSON.
    pub encoding: Encoding,
    /// The authenticated user.
    pub user: u64,
    /// The device.
    pub device: u64,
    /// The device's inbox cursor from `Hello`.
    pub cursor: u64,
    /// The negotiated protocol version.
    pub version: u16,
    /// The login session of the token (closed when it is revoked).
    pub login: u64,
}

/// Accepts connections on this core's listener until shutdown.
pub async fn accept_loop(core: Rc<Core>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = core.id, error = %e, "listener");
            return;
        }
    };
    let stop = core.shared.stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(accept_one(core.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = stop.notified() => break,
        }
    }
}

/// A stream the handshake runs on: plain TCP, or TLS over it; either can
/// be taken apart for the hand-over to the owning core.
trait HandshakeStream: AsyncRead + AsyncWrite + Unpin {
    fn into_parts(self)
        -> std::io::Result<(std::net::TcpStream, Option<rustls::ServerConnection>)>;
}

impl HandshakeStream for tokio::net::TcpStream {
    fn into_parts(
        self,
    ) -> std::io::Result<(std::net::TcpStream, Option<rustls::ServerConnection>)> {
        Ok((self.into_std()?, None))
    }
}

impl HandshakeStream for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn into_parts(
        self,
    ) -> std::io::Result<(std::net::TcpStream, Option<rustls::ServerConnection>)> {
        // Plaintext rustls decrypted but we have not read stays inside the
        // connection object, and so does anything not yet written: both
        // travel with it.
        let (io, conn) = self.into_inner();
        Ok((io.into_std()?, Some(conn)))
    }
}

/// Tells a TLS client hello (record type 22) from plain HTTP on the one
/// WebSocket port, and applies the plain-text policy.
async fn accept_one(core: Rc<Core>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let settings = &core.shared.settings;
    let mut first = [0u8; 1];
    match tokio::time::timeout(settings.handshake_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == 0x16 {
        let Some(config) = settings.tls.clone() else {
            // No TLS configured: nothing sensible can be answered to a
            // client hello; the client sees the connection close.
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => handshake(core, tls, Transport::Wss).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    } else if settings.plain_ws.allows(peer.ip()) {
        handshake(core, stream, Transport::Ws).await
    } else {
        let mut stream = stream;
        let body = "plain ws:// is served to loopback clients only; connect with wss://\n";
        let response = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        linger(&mut stream).await;
    }
}

/// Writes an `Error` and a close to a connection that never became a
/// session.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    encoding: Encoding,
    code: ErrorCode,
    why: &str,
) {
    let mut out = Vec::new();
    wrap(
        &mut out,
        encoding,
        &encode(encoding, &error_frame(code, why, None)),
    );
    wrap(
        &mut out,
        encoding,
        &encode(
            encoding,
            &Frame::Close(frame::Close {
                code: code.code(),
                message: why.into(),
            }),
        ),
    );
    ws::encode_close(close::app_close_code(code.code()), why, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    linger(stream).await;
}

/// Shuts the write side and reads until the client closes (or a second
/// passes): dropping a socket with unread bytes makes the kernel send a
/// reset that can destroy our close frame before the client reads it.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn wrap(out: &mut Vec<u8>, encoding: Encoding, frame: &[u8]) {
    let op = match encoding {
        Encoding::Binary => OpCode::Binary,
        Encoding::Json => OpCode::Text,
    };
    ws::write_header(out, op, frame.len());
    out.extend_from_slice(frame);
}

fn decode_frame(encoding: Encoding, event: &Event, max: usize) -> Result<Frame, DecodeError> {
    match (encoding, event) {
        (Encoding::Binary, Event::Binary(b)) => confab_protocol::binary::decode_exact(b, max),
        (Encoding::Json, Event::Text(t)) => confab_protocol::json::decode(t, max),
        (Encoding::Binary, _) => Err(DecodeError::Json(
            "a text message on the binary subprotocol confab.v1".into(),
        )),
        _ => Err(DecodeError::Json(
            "a binary message on the JSON subprotocol confab.v1.json".into(),
        )),
    }
}

async fn handshake<S: HandshakeStream>(core: Rc<Core>, mut stream: S, transport: Transport) {
    let settings = &core.shared.settings;
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let mut buf = BytesMut::with_capacity(1024);
    let upgrade = loop {
        match ws::parse_upgrade(&buf, &settings.ws_path, 8192) {
            Ok(Some(u)) => break u,
            Ok(None) => {}
            Err(e) => {
                let _ = stream.write_all(&e.response()).await;
                return;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    if stream.write_all(&upgrade.response).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    buf.advance(upgrade.consumed);
    let encoding = upgrade.encoding;
    let max = settings.max_frame_bytes;
    let mut decoder = Decoder::new(max + 64);
    let hello = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Event::Ping(p))) => {
                let mut out = Vec::new();
                ws::encode_pong(&p, &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                continue;
            }
            Ok(Some(Event::Pong(_))) => continue,
            Ok(Some(Event::Close(_))) => {
                let mut out = Vec::new();
                ws::encode_close(close::NORMAL, "", &mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
            Ok(Some(ev)) => match decode_frame(encoding, &ev, max) {
                Ok(Frame::Hello(h)) => break h,
                Ok(_) => {
                    return refuse(
                        &mut stream,
                        encoding,
                        ErrorCode::UnexpectedFrame,
                        "the first frame must be Hello",
                    )
                    .await
                }
                Err(e) => return refuse(&mut stream, encoding, e.code(), &e.to_string()).await,
            },
            Ok(None) => {}
            Err(e) => {
                let mut out = Vec::new();
                ws::encode_close(e.close_code(), e.close_reason(), &mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    };
    core.shared.metrics[core.id].frame_in(confab_protocol::FrameType::Hello);
    let version = match negotiate_version(hello.min_version, hello.max_version) {
        Ok(v) => v,
        Err(code) => {
            return refuse(&mut stream, encoding, code, "no common protocol version").await
        }
    };
    let (user, login) = match core.shared.auth.verify(&hello.token) {
        Ok(u) => u,
        Err(code) => {
            core.shared.metrics[core.id].error(code);
            return refuse(&mut stream, encoding, code, "authentication failed").await;
        }
    };
    let (socket, tls) = match stream.into_parts() {
        Ok(parts) => parts,
        Err(_) => return,
    };
    let handover = Handover {
        socket,
        tls,
        transport,
        buf,
        decoder,
        encoding,
        user,
        device: hello.device_id,
        cursor: hello.inbox_cursor,
        version,
        login,
    };
    let owner = owner_core(user, core.shared.bus.cores());
    if owner == core.id {
        session(core, handover).await;
    } else {
        core.shared
            .bus
            .send(owner, CoreMsg::Adopt(Box::new(handover)));
    }
}

/// Runs an authenticated session on the core that owns its user.
pub async fn session(core: Rc<Core>, h: Handover) {
    let Handover {
        socket,
        tls,
        transport,
        buf,
        decoder,
        encoding,
        user,
        device,
        cursor,
        version,
        login,
    } = h;
    let stream = match Stream::adopt(socket, core.shared.io, tls) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "adopting a socket failed");
            return;
        }
    };
    let who = Who {
        user,
        device,
        cursor,
        version,
        login,
        transport,
        encoding,
    };
    run_session(
        core,
        who,
        Link::Ws {
            stream,
            decoder,
            buf,
        },
    )
    .await;
}

/// Who a session is for and how it speaks.
pub struct Who {
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
    /// The transport it arrived on.
    pub transport: Transport,
    /// Binary or JSON frames.
    pub encoding: Encoding,
}

/// Where a session's frames come from and go to.
pub enum Link {
    /// A WebSocket on this core.
    Ws {
        /// The socket (TLS or not).
        stream: Rc<Stream>,
        /// The WebSocket decoder, with any fragment in progress.
        decoder: Decoder,
        /// Bytes read but not yet decoded.
        buf: BytesMut,
    },
    /// A transport on another core (QUIC), reached through the mailboxes.
    Remote(Rc<super::quic::HomeLink>),
}

/// Runs an authenticated session on the core that owns its user, whatever
/// its transport: `Welcome`, replay from the cursor, live delivery and
/// requests until the transport or the session ends.
pub async fn run_session(core: Rc<Core>, who: Who, link: Link) {
    let Who {
        user,
        device,
        cursor,
        version,
        login,
        transport,
        encoding,
    } = who;
    let settings = core.shared.settings.clone();
    let out = Outbound::new(
        settings.outbound_limit_bytes,
        Some(core.shared.metrics[core.id].clone()),
    );
    let (conn, mut attach) = core.attach(user, device, login, transport, encoding, out.clone());
    let session_id = ((core.id as u64) << 48) | conn;
    let welcome = Frame::Welcome(frame::Welcome {
        version,
        user_id: user,
        session_id,
        heartbeat_interval_ms: settings.heartbeat_interval.as_millis() as u32,
        limits: settings.limits(),
    });
    push(
        &out,
        out_frame(encoding, &welcome),
        Priority::Required,
        &core.shared.metrics[core.id],
    );
    let writer = match &link {
        Link::Ws { stream, .. } => {
            tokio::task::spawn_local(write_loop(stream.clone(), out.clone(), encoding))
        }
        Link::Remote(home) => tokio::task::spawn_local(super::quic::home_write_loop(
            core.clone(),
            home.clone(),
            out.clone(),
        )),
    };

    // Where the live stream stands for this user; replay up to it.
    let target = loop {
        match attach {
            Attach::Ready(t) => break t,
            Attach::Init => {
                let log = core.shared.log.clone();
                let last =
                    tokio::task::spawn_blocking(move || log.last_inbox_seq(UserId(user))).await;
                match last {
                    Ok(Ok(last)) => {
                        core.user_ready(user, last);
                        break last;
                    }
                    _ => {
                        out.close(CloseReason {
                            code: ErrorCode::Unavailable.code(),
                            message: "storage unavailable".into(),
                        });
                        break 0;
                    }
                }
            }
            Attach::Wait(notify) => {
                let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
                attach = core.attach_retry(user);
            }
        }
    };
    if !out.is_closing() {
        // Friends' presence is pushed without asking: watch them before the
        // replay ends, so a change right after it is not missed, and send
        // their current state first.
        if let Some(friends) = friends(&core, user).await {
            core.watch(conn, &friends);
            if !friends.is_empty() {
                let entries = presence_of(&core, user, &friends).await;
                let current = Frame::Presence(frame::Presence {
                    request_id: 0,
                    entries,
                });
                push(
                    &out,
                    out_frame(encoding, &current),
                    Priority::Droppable,
                    &core.shared.metrics[core.id],
                );
            }
        }
        replay(&core, &out, encoding, user, cursor.min(target), target).await;
        core.go_live(conn, target);
    }

    let result = match link {
        Link::Ws {
            stream,
            mut decoder,
            mut buf,
        } => {
            read_loop(
                &core,
                conn,
                &stream,
                &out,
                &mut decoder,
                &mut buf,
                user,
                device,
                encoding,
            )
            .await
        }
        Link::Remote(home) => {
            super::quic::home_read_loop(&core, conn, &home, &out, user, device).await
        }
    };
    // Whatever ended the session, the writer flushes and stops (a close
    // requested earlier keeps its reason).
    out.close(result.err().unwrap_or(CloseReason {
        code: 0,
        message: "closed".into(),
    }));
    let _ = writer.await;
    if let Some((user, device, delivered)) = core.detach(conn) {
        if delivered > 0 {
            let log = core.shared.log.clone();
            let _ = tokio::task::spawn_blocking(move || {
                log.set_cursor(
                    UserId(user),
                    DeviceId(device),
                    Cursor { delivered, read: 0 },
                )
            })
            .await;
        }
    }
}

/// Sends the stored inbox entries in `(from, to]` as `SyncBatch`es with
/// request id 0, the last one with `has_more` false.
async fn replay(
    core: &Rc<Core>,
    out: &Rc<Outbound>,
    encoding: Encoding,
    user: u64,
    from: u64,
    to: u64,
) {
    let settings = &core.shared.settings;
    let page_size = settings.max_page as usize;
    let budget = batch_budget(settings);
    let mut after = from;
    let mut pending: std::collections::VecDeque<frame::Message> = Default::default();
    let mut exhausted = after >= to;
    loop {
        if pending.is_empty() && !exhausted {
            let log = core.shared.log.clone();
            let page =
                tokio::task::spawn_blocking(move || log.inbox(UserId(user), after, page_size))
                    .await;
            let Ok(Ok(page)) = page else {
                out.close(CloseReason {
                    code: ErrorCode::Unavailable.code(),
                    message: "storage unavailable".into(),
                });
                return;
            };
            pending.extend(
                page.items
                    .into_iter()
                    .filter(|e| e.inbox_seq <= to)
                    .map(|e| stored_to_wire(e.inbox_seq, e.message)),
            );
            let last = pending.back().map_or(after, |m| m.inbox_seq);
            exhausted = last >= to || pending.is_empty();
            after = last;
        }
        // Do not outrun the socket: a long replay waits for the queue.
        while out.queued_bytes() > settings.outbound_limit_bytes - budget && !out.is_closing() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if out.is_closing() {
            return;
        }
        pending.make_contiguous();
        let n = fitting(pending.as_slices().0, budget);
        let messages: Vec<frame::Message> = pending.drain(..n).collect();
        let done = exhausted && pending.is_empty();
        let batch = Frame::SyncBatch(frame::SyncBatch {
            request_id: 0,
            has_more: !done,
            messages,
        });
        push(
            out,
            out_frame(encoding, &batch),
            Priority::Required,
            &core.shared.metrics[core.id],
        );
        if done {
            return;
        }
    }
}

/// Bytes a message may take in a batch frame: its text (JSON escaping can
/// double it, hence the factor) plus the fixed fields.
fn wire_size(m: &frame::Message) -> usize {
    m.text.len() * 2 + 96
}

/// The most message bytes one batch frame may carry: within the peer's
/// frame limit and within half the outbound queue, so one page never makes
/// a healthy connection a slow consumer.
fn batch_budget(settings: &super::Settings) -> usize {
    (settings.max_frame_bytes - 256).min(settings.outbound_limit_bytes / 2)
}

/// How many of `messages`, from the front, fit in `budget` (at least one).
fn fitting(messages: &[frame::Message], budget: usize) -> usize {
    let mut used = 0;
    for (i, m) in messages.iter().enumerate() {
        used += wire_size(m);
        if used > budget && i > 0 {
            return i;
        }
    }
    messages.len()
}

async fn friends(core: &Rc<Core>, user: u64) -> Option<Rc<[u64]>> {
    if let Some(f) = core.cached_friends(user) {
        return Some(f);
    }
    let list = core.shared.directory.friends(user).await.ok()?;
    Some(core.cache_friends(user, &list))
}

async fn members(core: &Rc<Core>, channel: u64) -> Result<Option<Rc<[u64]>>, ErrorCode> {
    if let Some(m) = core.cached_members(channel) {
        return Ok(Some(m));
    }
    match core.shared.directory.channel_members(channel).await {
        Ok(Some(list)) => Ok(Some(core.cache_members(channel, &list))),
        Ok(None) => Ok(None),
        Err(_) => Err(ErrorCode::Unavailable),
    }
}

/// The members of `channel` if `user` is one of them, else the error.
async fn membership(core: &Rc<Core>, user: u64, channel: u64) -> Result<Rc<[u64]>, ErrorCode> {
    match members(core, channel).await? {
        Some(m) if m.contains(&user) => Ok(m),
        _ => Err(ErrorCode::ForbiddenChannel),
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    core: &Rc<Core>,
    conn: ConnId,
    stream: &Rc<Stream>,
    out: &Rc<Outbound>,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    user: u64,
    device: u64,
    encoding: Encoding,
) -> Result<(), CloseReason> {
    let settings = core.shared.settings.clone();
    let silence_limit = settings.heartbeat_interval * 3;
    let mut last_heard = Instant::now();
    let mut closing_since: Option<Instant> = None;
    let metrics = &core.shared.metrics[core.id];
    loop {
        loop {
            let event = match decoder.decode(buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    out.close(CloseReason {
                        code: u16::MAX,
                        message: String::new(),
                    });
                    raw_close(out, e.close_code(), e.close_reason());
                    return Ok(());
                }
            };
            last_heard = Instant::now();
            match event {
                Event::Ping(p) => raw_pong(out, &p),
                Event::Pong(_) => {}
                Event::Close(_) => {
                    out.close(CloseReason {
                        code: 0,
                        message: "client closed".into(),
                    });
                    return Ok(());
                }
                ev => match decode_frame(encoding, &ev, settings.max_frame_bytes) {
                    Ok(f) => {
                        metrics.frame_in(f.frame_type());
                        handle_frame(core, conn, user, device, f).await?
                    }
                    Err(e) => {
                        metrics.frame_in_invalid();
                        metrics.error(e.code());
                        core.send_to(conn, &error_frame(e.code(), e.to_string(), None));
                    }
                },
            }
        }
        if out.is_closing() {
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return Ok(());
            }
        }
        // Large messages grow the buffer; give the memory back once it is
        // drained so idle connections stay small.
        if buf.is_empty() && buf.capacity() > 64 * 1024 {
            *buf = BytesMut::with_capacity(4096);
        }
        let want = decoder
            .pending_frame_len()
            .saturating_sub(buf.len())
            .clamp(4096, 1 << 20);
        // The read is never abandoned while the connection lives: with
        // io_uring the buffer (and whatever part of a frame it already
        // holds) is lent to the kernel until the read completes, so a read
        // dropped by a timeout loses those bytes and every frame after
        // them is garbage. The timer only checks liveness meanwhile.
        let read = stream.read(buf, want);
        tokio::pin!(read);
        let result = loop {
            match tokio::time::timeout(Duration::from_millis(500), &mut read).await {
                Ok(result) => break result,
                Err(_) => {
                    if out.is_closing() {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            return Ok(());
                        }
                    } else if last_heard.elapsed() > silence_limit {
                        metrics.error(ErrorCode::HeartbeatTimeout);
                        return Err(CloseReason {
                            code: ErrorCode::HeartbeatTimeout.code(),
                            message: "no heartbeat".into(),
                        });
                    }
                }
            }
        };
        match result {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {
                if stream.wants_flush() {
                    out.nudge();
                }
            }
        }
    }
}

fn raw_pong(out: &Outbound, payload: &[u8]) {
    let mut v = Vec::new();
    ws::encode_pong(payload, &mut v);
    out.push(OutFrame::Raw(v), Priority::Required);
}

fn raw_close(out: &Outbound, code: u16, reason: &str) {
    let mut v = Vec::new();
    ws::encode_close(code, reason, &mut v);
    out.push_raw_close(v);
}

pub(super) async fn handle_frame(
    core: &Rc<Core>,
    conn: ConnId,
    user: u64,
    device: u64,
    f: Frame,
) -> Result<(), CloseReason> {
    let settings = &core.shared.settings;
    let answer_err = |code: ErrorCode, msg: &str, f: &Frame| {
        core.shared.metrics[core.id].error(code);
        core.send_to(conn, &error_frame(code, msg, Some(f)));
    };
    match &f {
        Frame::Send(s) => {
            if let Err(code) = validate_text(&s.text, settings.max_text_chars) {
                answer_err(code, "text is empty or too long", &f);
                return Ok(());
            }
            if !core.take_send_token(user) {
                answer_err(ErrorCode::RateLimited, "too many sends", &f);
                return Ok(());
            }
            let channel = match s.target {
                frame::Target::Channel(c) => c,
                frame::Target::User(other) if other == user => {
                    answer_err(ErrorCode::InvalidArgument, "cannot message yourself", &f);
                    return Ok(());
                }
                frame::Target::User(other) => match core.cached_dm(user, other) {
                    Some(c) => c,
                    None => match core.shared.directory.dm_channel(user, other).await {
                        Ok(Some(c)) => {
                            core.cache_dm(user, other, c);
                            c
                        }
                        Ok(None) => {
                            answer_err(ErrorCode::NotFound, "no such user", &f);
                            return Ok(());
                        }
                        Err(_) => {
                            answer_err(ErrorCode::Unavailable, "directory unavailable", &f);
                            return Ok(());
                        }
                    },
                },
            };
            let members = match membership(core, user, channel).await {
                Ok(m) => m,
                Err(code) => {
                    answer_err(code, "not a member of this channel", &f);
                    return Ok(());
                }
            };
            let Frame::Send(s) = f else { unreachable!() };
            let client_msg_id = s.client_msg_id;
            if let Err(code) =
                core.submit(conn, user, device, channel, &members, client_msg_id, s.text)
            {
                core.shared.metrics[core.id].error(code);
                // The send's id, so the client retries (or fails) that send;
                // with 0 it would wait for an ack that never comes.
                core.send_to(
                    conn,
                    &Frame::Error(frame::Error {
                        code,
                        message: "storage is busy, retry".into(),
                        frame_type: confab_protocol::FrameType::Send.as_u8(),
                        request_id: client_msg_id,
                    }),
                );
            }
        }
        Frame::Sync(s) => {
            let log = core.shared.log.clone();
            let (after, limit) = (
                s.after,
                (s.limit as usize).clamp(1, settings.max_page as usize),
            );
            match tokio::task::spawn_blocking(move || log.inbox(UserId(user), after, limit)).await {
                Ok(Ok(page)) => {
                    let mut messages: Vec<frame::Message> = page
                        .items
                        .into_iter()
                        .map(|e| stored_to_wire(e.inbox_seq, e.message))
                        .collect();
                    // A page of long messages is cut to one frame's worth;
                    // the client asks again from where it ends.
                    let n = fitting(&messages, batch_budget(settings));
                    let cut = n < messages.len();
                    messages.truncate(n);
                    core.send_to(
                        conn,
                        &Frame::SyncBatch(frame::SyncBatch {
                            request_id: s.request_id,
                            has_more: page.has_more || cut,
                            messages,
                        }),
                    )
                }
                _ => answer_err(ErrorCode::Unavailable, "storage unavailable", &f),
            }
        }
        Frame::History(h) => {
            if let Err(code) = membership(core, user, h.channel_id).await {
                answer_err(code, "not a member of this channel", &f);
                return Ok(());
            }
            let anchor = match h.anchor {
                frame::HistoryAnchor::Latest => confab_storage::HistoryAnchor::Latest,
                frame::HistoryAnchor::Before(s) => confab_storage::HistoryAnchor::Before(s),
                frame::HistoryAnchor::After(s) => confab_storage::HistoryAnchor::After(s),
            };
            let log = core.shared.log.clone();
            let (channel, limit) = (
                h.channel_id,
                (h.limit as usize).clamp(1, settings.max_page as usize),
            );
            match tokio::task::spawn_blocking(move || {
                log.channel_history(ChannelId(channel), anchor, limit)
            })
            .await
            {
                Ok(Ok(page)) => {
                    let mut messages: Vec<frame::Message> = page
                        .items
                        .into_iter()
                        .map(|m| stored_to_wire(0, m))
                        .collect();
                    // Cut to one frame's worth, keeping the end nearest the
                    // anchor (the newest when paging back), so paging on
                    // from the page's edge misses nothing.
                    let budget = batch_budget(settings);
                    let cut = match anchor {
                        confab_storage::HistoryAnchor::After(_) => {
                            let n = fitting(&messages, budget);
                            let cut = n < messages.len();
                            messages.truncate(n);
                            cut
                        }
                        _ => {
                            messages.reverse();
                            let n = fitting(&messages, budget);
                            let cut = n < messages.len();
                            messages.truncate(n);
                            messages.reverse();
                            cut
                        }
                    };
                    core.send_to(
                        conn,
                        &Frame::HistoryBatch(frame::HistoryBatch {
                            request_id: h.request_id,
                            channel_id: channel,
                            has_more: page.has_more || cut,
                            messages,
                        }),
                    )
                }
                _ => answer_err(ErrorCode::Unavailable, "storage unavailable", &f),
            }
        }
        Frame::Read(r) => match membership(core, user, r.channel_id).await {
            Ok(members) => {
                // Stored first (the mark only moves forward), then relayed
                // to the other members and the reader's other devices.
                let log = core.shared.log.clone();
                let (channel, seq) = (ChannelId(r.channel_id), r.seq);
                let stored = tokio::task::spawn_blocking(move || {
                    log.set_read_up_to(channel, UserId(user), seq)
                })
                .await;
                if !matches!(stored, Ok(Ok(()))) {
                    answer_err(ErrorCode::Unavailable, "storage unavailable", &f);
                    return Ok(());
                }
                core.route_notice(Arc::new(TypingNotice {
                    channel: r.channel_id,
                    user,
                    members: members.iter().copied().collect(),
                    kind: NoticeKind::Receipt(r.seq),
                }));
            }
            Err(code) => answer_err(code, "not a member of this channel", &f),
        },
        Frame::Typing(t) => match membership(core, user, t.channel_id).await {
            Ok(members) => {
                if core.take_typing_slot(user, t.channel_id) {
                    core.route_notice(Arc::new(TypingNotice {
                        channel: t.channel_id,
                        user,
                        members: members.iter().copied().collect(),
                        kind: NoticeKind::Typing,
                    }));
                }
            }
            Err(code) => answer_err(code, "not a member of this channel", &f),
        },
        Frame::PresenceQuery(q) => {
            if q.user_ids.len() > settings.max_presence_users as usize {
                answer_err(ErrorCode::InvalidArgument, "too many users", &f);
                return Ok(());
            }
            let entries = presence_of(core, user, &q.user_ids).await;
            core.send_to(
                conn,
                &Frame::Presence(frame::Presence {
                    request_id: q.request_id,
                    entries,
                }),
            );
        }
        Frame::PresenceSubscribe(q) => {
            if q.user_ids.len() > settings.max_presence_users as usize {
                answer_err(ErrorCode::InvalidArgument, "too many users", &f);
                return Ok(());
            }
            let entries = presence_of(core, user, &q.user_ids).await;
            let allowed = visible_set(core, user).await;
            let targets: Vec<u64> = q
                .user_ids
                .iter()
                .copied()
                .filter(|u| allowed.contains(u))
                .collect();
            core.watch(conn, &targets);
            core.send_to(
                conn,
                &Frame::Presence(frame::Presence {
                    request_id: q.request_id,
                    entries,
                }),
            );
        }
        Frame::PresenceUnsubscribe(q) => {
            for u in &q.user_ids {
                core.unwatch(conn, *u);
            }
        }
        Frame::Heartbeat(h) => core.send_to(
            conn,
            &Frame::HeartbeatAck(frame::HeartbeatAck {
                nonce: h.nonce,
                server_time_ms: now_ms(),
            }),
        ),
        Frame::Close(_) => {
            return Err(CloseReason {
                code: 0,
                message: "client closed".into(),
            });
        }
        Frame::Hello(_) => answer_err(ErrorCode::UnexpectedFrame, "already in a session", &f),
        other => answer_err(
            ErrorCode::UnexpectedFrame,
            "a server frame cannot be sent to the server",
            other,
        ),
    }
    Ok(())
}

/// Who `user` may see the presence of: themself, their friends and
/// everyone they share a channel with (group presence is fetched on
/// demand, never broadcast).
async fn visible_set(core: &Rc<Core>, user: u64) -> Vec<u64> {
    let mut v: Vec<u64> = friends(core, user)
        .await
        .map(|f| f.to_vec())
        .unwrap_or_default();
    if let Ok(co) = core.shared.directory.co_members(user).await {
        v.extend(co.iter().copied());
    }
    v.push(user);
    v
}

/// Presence of `users` as `user` may see it: users outside their circle
/// read as offline and never seen.
async fn presence_of(core: &Rc<Core>, user: u64, users: &[u64]) -> Vec<PresenceInfo> {
    let allowed = visible_set(core, user).await;
    let visible: Vec<u64> = users
        .iter()
        .copied()
        .filter(|u| allowed.contains(u))
        .collect();
    let online = core.online(&visible).await;
    let offline: Vec<u64> = visible
        .iter()
        .copied()
        .filter(|u| !online.get(u).copied().unwrap_or(false))
        .collect();
    let log = core.shared.log.clone();
    let seen: std::collections::HashMap<u64, u64> = tokio::task::spawn_blocking(move || {
        offline
            .into_iter()
            .filter_map(|u| Some((u, log.last_seen(UserId(u)).ok()??)))
            .collect()
    })
    .await
    .unwrap_or_default();
    users
        .iter()
        .map(|u| PresenceInfo {
            user_id: *u,
            online: online.get(u).copied().unwrap_or(false),
            last_seen_ms: seen.get(u).copied().unwrap_or(0),
        })
        .collect()
}

/// Takes queued frames and writes them in one go, wrapped as WebSocket
/// messages; on a close request writes our `Close` frame and the
/// WebSocket close, then shuts the write side.
async fn write_loop(stream: Rc<Stream>, out: Rc<Outbound>, encoding: Encoding) {
    let mut frames = Vec::new();
    let mut wire: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let close = out.take(&mut frames);
        if frames.is_empty() && close.is_none() && !stream.wants_flush() {
            out.wait().await;
            continue;
        }
        wire.clear();
        for (f, _) in frames.drain(..) {
            match f {
                OutFrame::Owned(_, v) => wrap(&mut wire, encoding, &v),
                OutFrame::Shared { header, body, .. } => {
                    let op = match encoding {
                        Encoding::Binary => OpCode::Binary,
                        Encoding::Json => OpCode::Text,
                    };
                    ws::write_header(&mut wire, op, header.as_bytes().len() + body.len());
                    wire.extend_from_slice(header.as_bytes());
                    wire.extend_from_slice(&body);
                }
                OutFrame::Raw(v) => wire.extend_from_slice(&v),
            }
        }
        if let Some(reason) = &close {
            match out.take_raw_close() {
                Some(raw) => wire.extend_from_slice(&raw),
                None => {
                    if reason.code != 0 {
                        let code = ErrorCode::from_code(reason.code);
                        wrap(
                            &mut wire,
                            encoding,
                            &encode(encoding, &error_frame(code, reason.message.clone(), None)),
                        );
                    }
                    wrap(
                        &mut wire,
                        encoding,
                        &encode(
                            encoding,
                            &Frame::Close(frame::Close {
                                code: reason.code,
                                message: reason.message.clone(),
                            }),
                        ),
                    );
                    let ws_code = match reason.code {
                        0 => close::NORMAL,
                        c if c == ErrorCode::GoingAway.code() => close::GOING_AWAY,
                        c => close::app_close_code(c),
                    };
                    ws::encode_close(ws_code, &reason.message, &mut wire);
                }
            }
        }
        let (res, back) = stream.write_all(std::mem::take(&mut wire)).await;
        wire = back;
        if wire.capacity() > 256 * 1024 {
            wire = Vec::with_capacity(4096);
        }
        if res.is_err() || close.is_some() {
            stream.close_write().await;
            return;
        }
    }
}
