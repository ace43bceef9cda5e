//! A WebSocket session on its user's core: the socket adopted by this
//! core's IO backend, the session opened with the shard, its writer task
//! started, then client frames read and handed to the session's handlers
//! until the connection or the session ends.

use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use confab_protocol::Encoding;
use tokio::time::Sleep;

use super::buffers;
use super::stream::Stream;
use super::writer;
use super::ws::message::decode_frame;
use super::ws::{self, Decoder, Event};
use crate::fanout::CloseReason;
use crate::session::{self, Hello, Session};
use crate::shard::Core;

/// An authenticated connection on its way to its user's core.
pub struct Handover {
    /// The socket.
    pub socket: std::net::TcpStream,
    /// Its TLS session (`wss://`), established on the accepting core.
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Bytes read but not yet decoded (a pipelining client's next frames).
    pub buf: BytesMut,
    /// The WebSocket decoder, with any fragment in progress.
    pub decoder: Decoder,
    /// Who the session is for.
    pub hello: Hello,
}

/// How long a closing session still reads (for the client's close) before
/// it gives up on the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Runs a handed-over connection's session to its end.
pub async fn serve(core: Rc<Core>, h: Handover) {
    let Handover {
        socket,
        tls,
        mut buf,
        mut decoder,
        hello,
    } = h;
    let stream = match Stream::adopt(socket, core.io.io, tls) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "adopting a socket failed");
            return;
        }
    };
    let encoding = hello.encoding;
    let started = session::open(&core, hello);
    let writer = tokio::task::spawn_local(writer::run(
        core.clone(),
        started.session.conn,
        started.session.io.clone(),
        stream.clone(),
        encoding,
    ));
    // Boxed: the catch-up runs once, and its state would otherwise stay
    // part of this task's size for the session's whole life.
    let session = Box::pin(started.catch_up()).await;
    // Boxed, so the read loop's state is stored once: inline, rustc lays
    // the callee's future out beside this one's other states instead of
    // over them, which would double every connection's task.
    let ended = Box::pin(read_loop(
        &session,
        &stream,
        &mut decoder,
        &mut buf,
        encoding,
    ))
    .await;
    // Whatever ended the session, the writer flushes and stops (a close
    // asked for earlier keeps its reason).
    session.close(ended.err().unwrap_or(CloseReason::Normal("closed")));
    let _ = writer.await;
    session.end();
}

/// Waits for the end of the linger, if one is running.
async fn linger_end(linger: &mut Option<Pin<Box<Sleep>>>) {
    match linger {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Reads frames until the connection ends; `Err` is why the session must
/// close.
async fn read_loop(
    s: &Session,
    stream: &Rc<Stream>,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    encoding: Encoding,
) -> Result<(), CloseReason> {
    let max = s.core.settings().max_frame_bytes;
    let mut closing_since: Option<Instant> = None;
    let mut linger: Option<Pin<Box<Sleep>>> = None;
    // Whether `buf` is a view of memory the connection does not own (the
    // core's receive chunk, or what the hand-over read).
    let mut shared = true;
    loop {
        loop {
            let event = match decoder.decode(buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    return Err(CloseReason::BrokenFraming {
                        ws_code: e.close_code(),
                        reason: e.close_reason(),
                    })
                }
            };
            s.heard();
            match event {
                Event::Ping(p) => {
                    let mut pong = Vec::new();
                    ws::encode_pong(&p, &mut pong);
                    s.send_raw(pong.into());
                }
                Event::Pong(_) => {}
                Event::Close(_) => return Err(CloseReason::Normal("client closed")),
                ev => match decode_frame(encoding, ev, max) {
                    Ok(f) => s.handle(f).await?,
                    Err(e) => s.bad_frame(e.code(), &e.to_string()),
                },
            }
        }
        if s.is_closing() {
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > CLOSE_LINGER {
                return Ok(());
            }
        }
        // What is left is an unfinished frame. Only it stays with the
        // connection, in a buffer of its own; bytes that came in the core's
        // shared chunk (or with the hand-over) are copied out, so that an
        // idle connection pins no chunk and owns no buffer at all.
        if buf.is_empty() {
            *buf = BytesMut::new();
        } else if shared {
            *buf = BytesMut::from(&buf[..]);
        }
        shared = false;
        let want = decoder
            .pending_frame_len()
            .saturating_sub(buf.len())
            .clamp(4096, 1 << 20);
        // The read only borrows a buffer once the socket is readable, so
        // waiting for it costs nothing and may be abandoned at any point.
        // Beside it the reader waits only for the shard's word that the
        // session is closing (a missed heartbeat, a slow consumer), and
        // then for the end of the linger: no timer runs while the session
        // is open.
        let read = stream.when_readable(|| {
            if buf.is_empty() {
                // A new frame: read into the core's chunk.
                let got = buffers::read_into_chunk(|chunk| stream.try_read(chunk))?;
                let n = got.len();
                *buf = got;
                shared = true;
                Ok(n)
            } else {
                buf.reserve(want);
                stream.try_read(buf)
            }
        });
        tokio::pin!(read);
        let result = loop {
            // The linger's timer exists only once the session is closing
            // (boxed, so an open session's task has no room for one).
            if linger.is_none() {
                linger = closing_since
                    .map(|since| Box::pin(tokio::time::sleep_until((since + CLOSE_LINGER).into())));
            }
            tokio::select! {
                biased;
                result = &mut read => break result,
                () = s.io.closing.notified(), if linger.is_none() => {
                    closing_since = Some(Instant::now());
                }
                () = linger_end(&mut linger) => return Ok(()),
            }
        };
        match result {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {
                if stream.wants_flush() {
                    s.io.writer.notify_one();
                }
            }
        }
    }
}
