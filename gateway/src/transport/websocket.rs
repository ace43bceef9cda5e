//! A WebSocket session on its user's core, as one small state machine
//! polled by one task: the socket adopted by this core's IO backend, the
//! session opened with the shard, then, until the connection or the
//! session ends, client frames read and handled and the connection's
//! queued frames written.
//!
//! Written by hand rather than as an `async fn` because nearly every
//! connection is idle nearly all the time, and what an idle connection
//! costs is what its task holds. An `async fn` keeps room for every state
//! it can be in (a read, a handler's lookups, a timer) for the whole life
//! of the connection, and a second task for writing would hold as much
//! again. This struct holds the socket, the decoder and a few flags; what is rare (a
//! request that waits for the directory or storage, a write in flight,
//! the linger of a closing session) is boxed only while it lasts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use confab_protocol::ErrorCode;
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
    pub tls: Option<Box<super::records::Records>>,
    /// Bytes read but not yet decoded (a pipelining client's next frames).
    pub buf: BytesMut,
    /// The WebSocket decoder, with any fragment in progress.
    pub decoder: Decoder,
    /// Who the session is for.
    pub hello: Hello,
    /// The connection's place in the node's admission budget.
    pub permit: confab_admission::Permit,
}

/// How long a closing session still reads (for the client's close) and
/// writes (its last frames) before it gives up on the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Passes through the session's steps per poll before it yields to the
/// core's other tasks (a client that never stops sending is served in
/// turns, not for ever).
const STEPS_PER_POLL: usize = 64;

/// A request the session waits for before it reads on (frames are
/// handled in order), or the catch-up after `Welcome`.
type Job = Pin<Box<dyn Future<Output = Result<(), CloseReason>>>>;

/// A vectored write in flight; `true` when it ended our side (it carried
/// the close, or the socket failed).
type Write = Pin<Box<dyn Future<Output = bool>>>;

/// Starts a handed-over connection's session on this core.
pub fn spawn(core: Rc<Core>, h: Handover) {
    let Handover {
        socket,
        tls,
        buf,
        decoder,
        hello,
        permit,
    } = h;
    let stream = match Stream::adopt(socket, core.io.io, tls) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "adopting a socket failed");
            return;
        }
    };
    let started = session::open(&core, hello);
    let s = started.session.clone();
    // Friends' presence and the replay come first: frames the client sent
    // meanwhile wait, and the replay is written as it is queued.
    let catch_up: Job = Box::pin(async move {
        started.catch_up().await;
        Ok(())
    });
    tokio::task::spawn_local(WsSession {
        s,
        stream,
        decoder,
        buf,
        shared: true,
        job: Some(catch_up),
        write: None,
        linger: None,
        reading: true,
        writing: true,
        _permit: permit,
    });
}

/// A session's state between polls.
struct WsSession {
    s: Session,
    stream: Rc<Stream>,
    decoder: Decoder,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// Whether `buf` is a view of memory the connection does not own (the
    /// core's receive chunk, or what the hand-over read).
    shared: bool,
    job: Option<Job>,
    write: Option<Write>,
    /// Runs once the session is closing.
    linger: Option<Pin<Box<Sleep>>>,
    /// The client's side is open: frames are still read.
    reading: bool,
    /// Ours is: the shard's frames are still written.
    writing: bool,
    /// Released with the session.
    _permit: confab_admission::Permit,
}

impl Future for WsSession {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..STEPS_PER_POLL {
            let mut progress = this.poll_job(cx);
            if this.job.is_none() && this.reading {
                progress |= this.poll_read(cx);
            }
            progress |= this.poll_write(cx);
            if this.poll_end(cx) {
                this.job = None;
                this.write = None;
                this.s.core.closed(this.s.conn);
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl WsSession {
    /// The client's side is done with: the session closes with `reason`
    /// (unless it already is closing) after what is queued.
    fn stop_reading(&mut self, reason: CloseReason) {
        self.reading = false;
        self.s.close(reason);
    }

    /// Drives the request (or catch-up) being waited for.
    fn poll_job(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(job) = &mut self.job else {
            return false;
        };
        let Poll::Ready(result) = job.as_mut().poll(cx) else {
            return false;
        };
        self.job = None;
        if let Err(reason) = result {
            self.stop_reading(reason);
        }
        true
    }

    /// Handles the frames read so far, then reads more; `false` when
    /// neither changed anything (the task then waits for readability).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.handle_buffered() {
            return true;
        }
        match self.poll_fill(cx) {
            Poll::Pending => false,
            Poll::Ready(Ok(0) | Err(_)) => {
                self.stop_reading(CloseReason::PeerClosed);
                true
            }
            Poll::Ready(Ok(_)) => {
                if self.stream.wants_flush() {
                    self.s.io.writer.raise();
                }
                true
            }
        }
    }

    /// Handles every whole frame in `buf`; `true` when one ended reading
    /// or must be waited for.
    fn handle_buffered(&mut self) -> bool {
        let max = self.s.core.settings().max_frame_bytes;
        loop {
            let event = match self.decoder.decode(&mut self.buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => return false,
                Err(e) => {
                    self.stop_reading(CloseReason::BrokenFraming {
                        ws_code: e.close_code(),
                        reason: e.close_reason(),
                    });
                    return true;
                }
            };
            self.s.heard();
            match event {
                Event::Ping(p) => {
                    let mut pong = Vec::new();
                    ws::encode_pong(&p, &mut pong);
                    self.s.send_raw(pong.into());
                }
                Event::Pong(_) => {}
                Event::Close(_) => {
                    self.stop_reading(CloseReason::PeerClosed);
                    return true;
                }
                Event::TooBig { len, .. } => self.s.bad_frame(
                    ErrorCode::FrameTooLarge,
                    &format!("message of at least {len} bytes exceeds the maximum of {max}"),
                    None,
                ),
                ev => match decode_frame(self.s.encoding, ev, max) {
                    Ok(f) => match self.s.handle_now(f) {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => {
                            self.stop_reading(reason);
                            return true;
                        }
                        Err(f) => {
                            let s = self.s.clone();
                            self.job = Some(Box::pin(async move { s.handle_waiting(f).await }));
                            return true;
                        }
                    },
                    Err(e) if e.is_fatal() => {
                        let reason = self.s.broken_stream(e.code(), e.to_string());
                        self.stop_reading(reason);
                        return true;
                    }
                    Err(e) => self.s.bad_frame(e.code(), &e.to_string(), e.frame_type()),
                },
            }
        }
    }

    /// Reads what the socket has once it is readable.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // What is left is an unfinished frame. Only it stays with the
        // connection, in a buffer of its own; bytes that came in the core's
        // shared chunk (or with the hand-over) are copied out, so that an
        // idle connection pins no chunk and owns no buffer at all.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        } else if self.shared {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        self.shared = false;
        let want = self
            .decoder
            .pending_frame_len()
            .saturating_sub(self.buf.len())
            .clamp(4096, 1 << 20);
        let (stream, buf, shared) = (&self.stream, &mut self.buf, &mut self.shared);
        stream.poll_read_with(cx, || {
            if buf.is_empty() {
                // A new frame: read into the core's chunk.
                let got = buffers::read_into_chunk(|chunk| stream.try_read(chunk))?;
                let n = got.len();
                *buf = got;
                *shared = true;
                Ok(n)
            } else {
                buf.reserve(want);
                stream.try_read(buf)
            }
        })
    }

    /// Drives the write in flight, or starts one with everything the
    /// shard has queued for the connection.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(write) = &mut self.write {
            let Poll::Ready(ended) = write.as_mut().poll(cx) else {
                return false;
            };
            self.write = None;
            self.writing = !ended;
            return true;
        }
        if !self.writing {
            return false;
        }
        // Registers for the shard's next wake-up; what is queued is read
        // below either way.
        let _ = self.s.io.writer.poll_take(cx);
        let mut frames = Vec::new();
        let Some(close) = self.s.core.state().take_output(self.s.conn, &mut frames) else {
            // The shard no longer knows the connection.
            self.writing = false;
            return true;
        };
        if frames.is_empty() && close.is_none() && !self.stream.wants_flush() {
            return false;
        }
        let parts = writer::gather(self.s.encoding, frames, close.as_ref());
        let last = close.is_some();
        let stream = self.stream.clone();
        self.write = Some(Box::pin(async move {
            let ended = stream.write_parts(parts).await.is_err() || last;
            if ended {
                stream.close_write().await;
            }
            ended
        }));
        true
    }

    /// Whether the session is over: both sides are done, or the session
    /// has been closing for longer than the linger.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.reading && !self.writing {
            return true;
        }
        if self.linger.is_none() {
            // No timer runs while the session is open: only the shard's
            // word that it is closing (a missed heartbeat, a slow
            // consumer), or either side ending, starts one.
            let told = self.s.io.closing.poll_take(cx).is_ready();
            if told || !self.reading || !self.writing || self.s.is_closing() {
                self.linger = Some(Box::pin(tokio::time::sleep(CLOSE_LINGER)));
            }
        }
        match &mut self.linger {
            Some(linger) => linger.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}
